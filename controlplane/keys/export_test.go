package keys

// SetDummyCompareHook makes s call f on every dummy secret comparison.
func SetDummyCompareHook(s *Service, f func()) { s.onDummyCompare = f }
