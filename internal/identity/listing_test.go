package identity

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/meta"
)

// seedIdentities stores n tokens, each with its own scope map, straight
// into a new database in one transaction (much faster than n changes),
// and opens the service on it.
func seedIdentities(tb testing.TB, n int) *Service {
	tb.Helper()
	ctx := context.Background()
	store, err := meta.OpenSQLite(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for i := range n {
		name := fmt.Sprintf("token-%06d", i)
		if _, err := tx.Exec(`INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES (?, '', ?, ?, ?)`,
			name+"-scope-map", fmt.Sprintf(`["repositories/app%d/content/read"]`, i), now, now); err != nil {
			tb.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES (?, ?, 1, ?, ?)`,
			name, name+"-scope-map", i+1, now); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(ctx, store.Database(), Options{OwnerPassword: "owner-password-1", Console: io.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// TestListingScopeMapsIsLinear checks that listing every scope map looks
// at each token once, not once per map, and still names each map's tokens.
func TestListingScopeMapsIsLinear(t *testing.T) {
	const n = 300
	s := seedIdentities(t, n)
	before := s.tokensScanned.Load()
	list, err := s.ListScopeMaps(owner)
	if err != nil {
		t.Fatal(err)
	}
	if scanned := s.tokensScanned.Load() - before; scanned > n {
		t.Errorf("listing %d scope maps looked at tokens %d times, want at most %d (once each)", len(list), scanned, n)
	}
	users := 0
	for _, m := range list {
		users += len(m.Tokens)
		if m.Type == "UserDefined" && (len(m.Tokens) != 1 || m.Tokens[0]+"-scope-map" != m.Name) {
			t.Errorf("scope map %s is listed with tokens %v", m.Name, m.Tokens)
		}
	}
	if len(list) < n || users != n {
		t.Errorf("listed %d scope maps used by %d tokens, want at least %d maps and %d tokens", len(list), users, n, n)
	}
}

func BenchmarkListScopeMaps50000(b *testing.B) {
	s := seedIdentities(b, 50000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ListScopeMaps(owner); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListTokens50000(b *testing.B) {
	s := seedIdentities(b, 50000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ListTokens(owner); err != nil {
			b.Fatal(err)
		}
	}
}
