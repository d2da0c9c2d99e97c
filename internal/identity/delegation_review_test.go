package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/sqldb"
)

// TestDelegationDetachedTokensSQLite: a token left without a scope map
// (its map was deleted with force) lies inside nobody's patterns, so a
// delegated token-admin of team-a/* can neither see it nor take it over:
// a password it generated for team-b's token would give it team-b's
// access the moment team-b's owner binds the token to a map again.
func TestDelegationDetachedTokensSQLite(t *testing.T) {
	b := backend{engine: sqldb.SQLite, place: func(t *testing.T) string { return t.TempDir() }}
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	ids := delegatedFixture(t, s)
	if _, err := s.DeleteScopeMap(ctx, owner, "team-b-map", true); err != nil {
		t.Fatal(err)
	}
	str := func(v string) *string { return &v }
	alice := ids["alice"]
	rows := []struct {
		op string
		do func() error
	}{
		{"see", func() error { _, err := s.GetToken(alice, "team-b-tok"); return err }},
		{"generate a password", func() error {
			_, err := s.GenerateCredentials(ctx, alice, "team-b-tok", nil, time.Time{})
			return err
		}},
		{"bind to team-a-map", func() error {
			_, err := s.UpdateToken(ctx, alice, "team-b-tok", identity.TokenUpdate{ScopeMap: str("team-a-map")})
			return err
		}},
		{"enable", func() error {
			_, err := s.UpdateToken(ctx, alice, "team-b-tok", identity.TokenUpdate{Status: str(identity.StatusEnabled)})
			return err
		}},
		{"delete", func() error { return s.DeleteToken(ctx, alice, "team-b-tok") }},
	}
	for _, r := range rows {
		if err := r.do(); err == nil {
			t.Errorf("alice (token-admin on team-a/*) may %s team-b's detached token", r.op)
		}
	}
	toks, err := s.ListTokens(alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if tk.Name == "team-b-tok" {
			t.Errorf("ListTokens shows alice team-b's detached token")
		}
	}
	// The registry-wide owner still manages it.
	if _, err := s.UpdateToken(ctx, owner, "team-b-tok", identity.TokenUpdate{ScopeMap: str(auth.ScopeMapPull)}); err != nil {
		t.Errorf("owner rebinding the detached token: %v", err)
	}
}
