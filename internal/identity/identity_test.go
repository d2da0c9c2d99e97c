package identity

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T, dir string, clk *clock) *Service {
	t.Helper()
	store, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), store.Database(), Options{OwnerPassword: "owner-password-1", Now: clk.now, Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); store.Close() })
	return s
}

func grants(t *testing.T, pattern string, acts ...string) []string {
	out, err := auth.RepositoryActions(pattern, acts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
