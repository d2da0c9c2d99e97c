package identity

// MigrationsFor exposes the migration steps of each engine to the tests
// of earlier schema versions.
var MigrationsFor = migrations

// FullLoads is how many times s loaded its whole state.
func (s *Service) FullLoads() int64 { return s.fullLoads.Load() }
