package config

// NewLoadFunc returns Load with the schema compiled once, so that FuzzLoad
// spends its time on inputs rather than on compiling the schema (Load
// compiles it on every call to keep no package-level state).
func NewLoadFunc() (func(files, environ []string) (Config, error), error) {
	sch, err := compileSchema()
	if err != nil {
		return nil, err
	}
	return func(files, environ []string) (Config, error) { return load(sch, files, environ, (*Config).Validate) }, nil
}
