package meta

import "sync"

// readCache keeps recently read manifests and repositories in memory, so a
// busy pull path costs no query. Every write to a repository bumps that
// repository's generation; an entry read under an older generation is a
// miss. A reader takes the generation before it queries and stores its
// result only if the generation has not moved, so a write that commits
// during the read can never leave stale data marked current.
//
// The cache is per process. On PostgreSQL, where several nodes share one
// database, each node hears of the others' writes through its feed
// (feed.go), which bumps the repositories they wrote, or all of them after
// it may have missed some. A nil *readCache caches nothing.
type readCache struct {
	mu        sync.RWMutex
	all       uint64 // bumped by bumpAll
	gens      map[string]uint64
	manifests map[string]map[string]Manifest // repository → reference → manifest
	count     int                            // manifests held
	repos     map[string]Repository
	max       int
}

func newReadCache(max int) *readCache {
	return &readCache{gens: map[string]uint64{}, manifests: map[string]map[string]Manifest{}, repos: map[string]Repository{}, max: max}
}

// cacheGen is a repository's generation, with the whole cache's.
type cacheGen struct{ all, repo uint64 }

// gen returns repo's generation, to be passed back to a put.
func (c *readCache) gen(repo string) cacheGen {
	if c == nil {
		return cacheGen{}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return cacheGen{c.all, c.gens[repo]}
}

// bumpAll invalidates everything cached.
func (c *readCache) bumpAll() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.all++
	clear(c.manifests)
	c.count = 0
	clear(c.repos)
	c.mu.Unlock()
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

func (c *readCache) putManifest(repo, ref string, gen cacheGen, m Manifest) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (cacheGen{c.all, c.gens[repo]}) != gen {
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

func (c *readCache) putRepository(name string, gen cacheGen, r Repository) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (cacheGen{c.all, c.gens[name]}) != gen {
		return
	}
	if len(c.repos) >= c.max {
		clear(c.repos)
	}
	c.repos[name] = r
}
