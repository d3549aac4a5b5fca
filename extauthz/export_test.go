package extauthz

// Internals under test in package extauthz_test.
var (
	NormalizePath = normalizePath
	PathWithin    = pathWithin
	ParseCost     = parseCost
)

// ConditionsHold is conditionsHold.
func ConditionsHold(conds map[string]string, req *Request) bool { return conditionsHold(conds, req) }
