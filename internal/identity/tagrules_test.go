package identity_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

func init() {
	conformance = append(conformance, struct {
		name string
		test func(*testing.T, backend)
	}{"ScopeMapTagRules", testScopeMapTagRules})
}

// testScopeMapTagRules: tag limits are stored with the scope map, survive a
// restart, reach another node through the change feed, add up with later
// grants, and are refused with the valid forms when invalid.
func testScopeMapTagRules(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	s2 := b.service(t, place, clk)
	const write = "repositories/team/app/content/write"
	spec := identity.ScopeMapSpec{Name: "ci-tags", Actions: grants(t, "team/app", "content/read", "content/write"),
		Tags: map[string][]string{write: {"pr-*", "dev-*", "dev-*"}}}
	m, err := s1.CreateScopeMap(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Tags[write], []string{"dev-*", "pr-*"}) || len(m.Tags) != 1 {
		t.Errorf("created map has tags %q", m.Tags)
	}
	_, creds, err := s1.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "ci-tags", Passwords: []string{identity.SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	pw := creds.Passwords[0].Value
	check := func(s *identity.Service, when string, want map[string]bool) {
		t.Helper()
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		login, err := s.Authenticate("ci-token", pw)
		if err != nil {
			t.Fatal(err)
		}
		for tag, ok := range want {
			if got := auth.PermitsTag(login.Identity, "team/app", auth.OpPush, tag); got != ok {
				t.Errorf("%s: pushing tag %q allowed=%t, want %t", when, tag, got, ok)
			}
		}
	}
	check(s1, "created", map[string]bool{"dev-1": true, "pr-2": true, "v1": false})
	check(s2, "other node", map[string]bool{"dev-1": true, "pr-2": true, "v1": false})
	check(b.service(t, place, clk), "restarted", map[string]bool{"dev-1": true, "pr-2": true, "v1": false})

	// Adding tags widens the limit; the change reaches the other node.
	if _, err := s1.UpdateScopeMap(ctx, owner, "ci-tags", identity.ScopeMapUpdate{Add: []string{write}, AddTags: map[string][]string{write: {"v*"}}}); err != nil {
		t.Fatal(err)
	}
	check(s2, "widened", map[string]bool{"dev-1": true, "v1": true, "latest": false})
	// Removing and adding again in one change narrows it.
	u := identity.ScopeMapUpdate{Remove: []string{write}, Add: []string{write}, AddTags: map[string][]string{write: {"release-*"}}}
	if m, err = s1.UpdateScopeMap(ctx, owner, "ci-tags", u); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Tags[write], []string{"release-*"}) {
		t.Errorf("narrowed map has tags %q", m.Tags)
	}
	check(s2, "narrowed", map[string]bool{"dev-1": false, "release-1": true})
	// The same action without tags grants it on every tag: grants add up.
	if m, err = s1.UpdateScopeMap(ctx, owner, "ci-tags", identity.ScopeMapUpdate{Add: []string{write}}); err != nil {
		t.Fatal(err)
	}
	if len(m.Tags) != 0 {
		t.Errorf("after granting on every tag the map has tags %q", m.Tags)
	}
	check(s2, "unlimited", map[string]bool{"dev-1": true, "latest": true})

	for name, bad := range map[string]identity.ScopeMapSpec{
		"bad pattern":      {Name: "bad-tags", Actions: []string{write}, Tags: map[string][]string{write: {"v1/x"}}},
		"tags of no grant": {Name: "bad-tags", Actions: grants(t, "team/app", "content/read"), Tags: map[string][]string{write: {"v*"}}},
		"empty patterns":   {Name: "bad-tags", Actions: []string{write}, Tags: map[string][]string{write: {}}},
	} {
		if _, err := s1.CreateScopeMap(ctx, owner, bad); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
