package meta

// PostgresMigrations are the PostgreSQL schema's steps, for tests that build
// a database at an earlier version.
var PostgresMigrations = postgresMigrations

// CacheTrusted reports whether reads may come from the read cache now.
func (s *Store) CacheTrusted() bool { return s.readCache() != nil }

// Cached reports whether the read cache holds ref of repo.
func (s *Store) Cached(repo, ref string) bool {
	_, ok := s.readCache().manifest(repo, ref)
	return ok
}

// ListenerPID is the PostgreSQL server process that listens for other
// nodes' changes, 0 on SQLite.
func (s *Store) ListenerPID() uint32 {
	if s.feed == nil {
		return 0
	}
	return s.feed.listenPID.Load()
}

// HoldListen keeps the feed from listening again, once its connection is
// lost, until hold is closed.
func (s *Store) HoldListen(hold chan struct{}) { s.feed.holdListen.Store(&hold) }
