package meta

import "sync"

// readCache keeps recently read manifests and repositories in memory, so a
// busy pull path costs no query. Every write to a repository bumps that
// repository's generation; an entry read under an older generation is a
// miss. A reader takes the generation before it queries and stores its
// result only if the generation has not moved, so a write that commits
// during the read can never leave stale data marked current.
//
// The cache is per process: several berth nodes sharing one database would
// each need to hear of the others' writes, so it is only used by the
// embedded SQLite store, which one process owns. A nil *readCache caches
// nothing.
type readCache struct {
	mu        sync.RWMutex
	gens      map[string]uint64
	manifests map[string]map[string]Manifest // repository → reference → manifest
	count     int                            // manifests held
	repos     map[string]Repository
	max       int
}

func newReadCache(max int) *readCache {
	return &readCache{gens: map[string]uint64{}, manifests: map[string]map[string]Manifest{}, repos: map[string]Repository{}, max: max}
}

// gen returns repo's generation, to be passed back to a put.
func (c *readCache) gen(repo string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gens[repo]
}

// bump invalidates everything cached for repo.
func (c *readCache) bump(repo string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.gens[repo]++
	c.count -= len(c.manifests[repo])
	delete(c.manifests, repo)
	delete(c.repos, repo)
	c.mu.Unlock()
}

func (c *readCache) manifest(repo, ref string) (Manifest, bool) {
	if c == nil {
		return Manifest{}, false
	}
	c.mu.RLock()
	m, ok := c.manifests[repo][ref]
	c.mu.RUnlock()
	return m, ok
}

func (c *readCache) putManifest(repo, ref string, gen uint64, m Manifest) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[repo] != gen {
		return
	}
	if c.count >= c.max {
		clear(c.manifests) // crude but bounded; hot entries come back at once
		c.count = 0
	}
	refs := c.manifests[repo]
	if refs == nil {
		refs = map[string]Manifest{}
		c.manifests[repo] = refs
	}
	if _, ok := refs[ref]; !ok {
		c.count++
	}
	refs[ref] = m
}

func (c *readCache) repository(name string) (Repository, bool) {
	if c == nil {
		return Repository{}, false
	}
	c.mu.RLock()
	r, ok := c.repos[name]
	c.mu.RUnlock()
	return r, ok
}

func (c *readCache) putRepository(name string, gen uint64, r Repository) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[name] != gen {
		return
	}
	if len(c.repos) >= c.max {
		clear(c.repos)
	}
	c.repos[name] = r
}
