package ui

import (
	"context"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
)

// TestTokenActivityOfADelegatedReader: the activity on a token's page
// shows a user who reads the audit log of team-a/* only the token's events
// on those repositories, as the audit page does, and not its events on
// team-b (from before it was rebound, or of a deleted token of that name).
func TestTokenActivityOfADelegatedReader(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.ids.CreateUser(ctx, owner, identity.UserSpec{Name: "alice", Role: identity.RoleNone, Password: "alice-password-for-tests"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "alice", Role: "owner", Repository: "team-a/*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "team-a-pull", Actions: []string{"repositories/team-a/app/content/read"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "team-a-pull"}); err != nil {
		t.Fatal(err)
	}
	f.audit.Record(audit.Event{Kind: audit.KindPull, Result: audit.ResultSuccess, Identity: "ci-token", Repository: "team-b/secret-plans", Tag: "v1"})
	f.audit.Record(audit.Event{Kind: audit.KindPull, Result: audit.ResultSuccess, Identity: "ci-token", Repository: "team-a/app", Tag: "v2"})
	f.audit.Flush()

	for _, c := range []struct {
		user, password string
		seesTeamB      bool
	}{
		{"owner", ownerPassword, true},
		{"alice", "alice-password-for-tests", false},
	} {
		page := c.user
		body := f.signIn(c.user, c.password).get("/tokens/ci-token").body
		if !strings.Contains(body, "team-a/app") {
			t.Errorf("%s: the token page lacks the token's event on team-a/app", page)
		}
		if got := strings.Contains(body, "team-b/secret-plans"); got != c.seesTeamB {
			t.Errorf("%s: the token page shows its event on team-b/secret-plans: %v, want %v", page, got, c.seesTeamB)
		}
	}
}
