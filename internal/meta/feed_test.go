package meta_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// twoNodes opens two stores on one PostgreSQL database: two nodes.
func twoNodes(t *testing.T) (a, b *meta.Store) {
	t.Helper()
	url := testutil.StartPostgres(t).NewDatabase()
	open := func() *meta.Store {
		db, err := sqldb.OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		s, err := meta.Open(context.Background(), db)
		if err != nil {
			db.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b = open(), open()
	waitFor(t, "node B to trust its cache", b.CacheTrusted)
	return a, b
}

// waitFor polls cond until it holds; a state, not a timing, is asserted.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pushN pushes a distinct manifest n to repo through s, tagged tags.
func pushN(t *testing.T, s *meta.Store, repo string, n int, tags ...string) meta.Manifest {
	t.Helper()
	ctx := context.Background()
	cfg := digest.FromString(fmt.Sprint("cfg", n))
	doc := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":1},"layers":[]}`
	m := meta.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", ArtifactType: "application/vnd.oci.image.config.v1+json", Content: []byte(doc)}
	m.Digest, m.Size = digest.FromBytes(m.Content), int64(len(m.Content))
	if err := s.LinkBlob(ctx, repo, cfg, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Manifest: m, Tags: tags, Requires: []digest.Digest{cfg}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// readOn reads ref through s twice (the second from its cache when it is
// trusted) and reports whether the cache then held it.
func readOn(t *testing.T, s *meta.Store, repo, ref string) (meta.Manifest, bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Manifest(ctx, repo, ref); err != nil {
		t.Fatalf("read %s:%s: %v", repo, ref, err)
	}
	m, err := s.Manifest(ctx, repo, ref)
	if err != nil {
		t.Fatalf("read %s:%s: %v", repo, ref, err)
	}
	return m, s.Cached(repo, ref)
}

// TestCacheAcrossNodes: whatever node A changes is what node B serves on
// its very next read after A's call returned, although B caches.
func TestCacheAcrossNodes(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	const repo = "team/app"
	prev := pushN(t, a, repo, 0, "t")
	cached := 0
	for i := 1; i <= 100; i++ {
		// Tag moved.
		if _, ok := readOn(t, b, repo, "t"); ok {
			cached++
		}
		m := pushN(t, a, repo, i, "t")
		if got, _ := b.Manifest(ctx, repo, "t"); got.Digest != m.Digest {
			t.Fatalf("round %d: B serves t at %s after A moved it to %s", i, got.Digest, m.Digest)
		}
		// Manifest attributes.
		readOn(t, b, repo, m.Digest.String())
		if _, err := a.UpdateManifestAttributes(ctx, repo, m.Digest, func(x meta.Attributes) meta.Attributes { x.ReadEnabled = false; return x }); err != nil {
			t.Fatal(err)
		}
		if got, _ := b.Manifest(ctx, repo, m.Digest.String()); got.Attributes.ReadEnabled {
			t.Fatalf("round %d: B still has the manifest readable", i)
		}
		// Tag and manifest deleted.
		readOn(t, b, repo, prev.Digest.String())
		if err := a.DeleteManifest(ctx, repo, prev.Digest); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Manifest(ctx, repo, prev.Digest.String()); !errors.Is(err, meta.ErrManifestNotFound) {
			t.Fatalf("round %d: B reads deleted manifest: %v", i, err)
		}
		pushN(t, a, repo, -i, "gone")
		readOn(t, b, repo, "gone")
		if err := a.DeleteTag(ctx, repo, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Manifest(ctx, repo, "gone"); !errors.Is(err, meta.ErrManifestNotFound) {
			t.Fatalf("round %d: B reads deleted tag: %v", i, err)
		}
		// Repository attributes, both ways.
		for _, enabled := range []bool{false, true} {
			b.Repository(ctx, repo)
			b.Repository(ctx, repo)
			if _, err := a.UpdateRepositoryAttributes(ctx, repo, func(x meta.Attributes) meta.Attributes { x.ReadEnabled = enabled; return x }); err != nil {
				t.Fatal(err)
			}
			if r, err := b.Repository(ctx, repo); err != nil || r.Attributes.ReadEnabled != enabled {
				t.Fatalf("round %d: B has readEnabled=%v (%v) after A set %v", i, r.Attributes.ReadEnabled, err, enabled)
			}
		}
		prev = m
	}
	// The loop proves nothing if B never served from its cache.
	if cached == 0 {
		t.Fatal("B never cached")
	}
}

// TestCacheWithoutNotifications: when B's listening connection is cut, B
// stops trusting its cache until it listens again, is never stale
// meanwhile, and afterwards forgets what it may have missed.
func TestCacheWithoutNotifications(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	const repo = "app"
	pushN(t, a, repo, 0, "t")
	for i := 1; i <= 10; i++ {
		waitFor(t, "B to cache t", func() bool { _, ok := readOn(t, b, repo, "t"); return ok })
		pid := b.ListenerPID()
		if _, err := a.DB().ExecContext(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
			t.Fatal(err)
		}
		// A change B cannot hear: A's call waits for B (at most a
		// second), and B, not confirmed by then, reads the database.
		m := pushN(t, a, repo, i, "t")
		if got, _ := b.Manifest(ctx, repo, "t"); got.Digest != m.Digest {
			t.Fatalf("round %d: B serves t at %s while cut off, want %s", i, got.Digest, m.Digest)
		}
		waitFor(t, "B to listen again", func() bool { return b.CacheTrusted() && b.ListenerPID() != pid })
		if got, _ := b.Manifest(ctx, repo, "t"); got.Digest != m.Digest {
			t.Fatalf("round %d: B serves t at %s after listening again, want %s", i, got.Digest, m.Digest)
		}
	}
}

// TestCacheForgetsWhatItMissed: a change committed while B listens to
// nothing (its connection lost, the new one not yet listening) is never
// heard by B; B, which read the database meanwhile, forgets everything it
// cached when it listens again.
func TestCacheForgetsWhatItMissed(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	const repo = "app"
	pushN(t, a, repo, 0, "t")
	for i := 1; i <= 3; i++ {
		waitFor(t, "B to cache t", func() bool { _, ok := readOn(t, b, repo, "t"); return ok })
		hold := make(chan struct{})
		b.HoldListen(hold)
		pid := b.ListenerPID()
		if _, err := a.DB().ExecContext(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "B to stop trusting its cache", func() bool { return !b.CacheTrusted() })
		m := pushN(t, a, repo, i, "t")
		if got, _ := b.Manifest(ctx, repo, "t"); got.Digest != m.Digest {
			t.Fatalf("round %d: B serves t at %s while not listening, want %s", i, got.Digest, m.Digest)
		}
		close(hold)
		waitFor(t, "B to listen again", func() bool { return b.CacheTrusted() && b.ListenerPID() != pid })
		if got, _ := b.Manifest(ctx, repo, "t"); got.Digest != m.Digest {
			t.Fatalf("round %d: B serves t at %s after listening again, want %s", i, got.Digest, m.Digest)
		}
	}
}
