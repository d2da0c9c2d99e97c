package identity_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// The delegated-administration suite runs on both engines, as the
// conformance suite does.
var delegation = []struct {
	name string
	test func(*testing.T, backend)
}{
	{"Matrix", testDelegationMatrix},
	{"AssignmentsPersistAndFollow", testAssignmentsPersistAndFollow},
	{"RegistryWideRoleIsTheAssignmentOnAll", testRegistryWideRoleIsTheAssignmentOnAll},
}

func TestDelegationSQLite(t *testing.T) {
	b := backend{engine: sqldb.SQLite, place: func(t *testing.T) string { return t.TempDir() }}
	for _, c := range delegation {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

func TestDelegationPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	b := backend{engine: sqldb.Postgres, place: func(*testing.T) string { return pg.NewDatabase() }}
	for _, c := range delegation {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

// delegatedFixture: users with roles on team-a/* only, and scope maps and
// tokens of team-a and of team-b, made by the owner.
func delegatedFixture(t *testing.T, s *identity.Service) map[string]auth.Identity {
	t.Helper()
	ctx := context.Background()
	users := map[string]string{"alice": "token-admin", "carol": "contributor", "dave": "owner", "rita": "reader", "paul": "pull"}
	ids := map[string]auth.Identity{}
	for name, role := range users {
		if _, err := s.CreateUser(ctx, owner, identity.UserSpec{Name: name, Role: identity.RoleNone, Password: "a-long-password"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: name, Role: role, Repository: "team-a/*"}); err != nil {
			t.Fatal(err)
		}
		id, ok := s.UserIdentity(name)
		if !ok {
			t.Fatalf("no identity for %s", name)
		}
		ids[name] = id
	}
	for _, team := range []string{"team-a", "team-b"} {
		if _, err := s.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: team + "-map", Actions: grants(t, team+"/app", "content/read")}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: team + "-tok", ScopeMap: team + "-map"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "all-tok", ScopeMap: auth.ScopeMapPull}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// testDelegationMatrix is the matrix of delegated administration:
// (assignment, operation, target) → allowed, or the exact refusal.
func testDelegationMatrix(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	ids := delegatedFixture(t, s)
	str := func(v string) *string { return &v }
	rows := []struct {
		who  string // user, holding the fixture's role on team-a/*
		op   string
		do   func(id auth.Identity) error
		want string // "" = allowed
	}{
		{"alice", "create scope map on team-a/app", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "a-new-map", Actions: grants(t, "team-a/app", "content/write", "content/delete")})
			return err
		}, ""},
		{"alice", "create scope map on team-a/*", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "a-wide-map", Actions: grants(t, "team-a/*", "content/read")})
			return err
		}, ""},
		{"alice", "create scope map on team-b/x", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "b-map-2", Actions: append(grants(t, "team-a/app", "content/read"), grants(t, "team-b/x", "content/read")...)})
			return err
		}, `user "alice" may not manage "team-b/x" (scope map "b-map-2"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "create scope map on *", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "all-map", Actions: grants(t, "*", "content/read")})
			return err
		}, `user "alice" may not manage "*" (scope map "all-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "create scope map on team-a", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "bare-map", Actions: grants(t, "team-a", "content/read")})
			return err
		}, `user "alice" may not manage "team-a" (scope map "bare-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "add team-b/x to team-a-map", func(id auth.Identity) error {
			_, err := s.UpdateScopeMap(ctx, id, "team-a-map", identity.ScopeMapUpdate{Add: grants(t, "team-b/x", "content/read")})
			return err
		}, `user "alice" may not manage "team-b/x" (scope map "team-a-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "change team-b-map", func(id auth.Identity) error {
			_, err := s.UpdateScopeMap(ctx, id, "team-b-map", identity.ScopeMapUpdate{Description: str("mine now")})
			return err
		}, `user "alice" may not manage "team-b/app" (scope map "team-b-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "delete team-b-map", func(id auth.Identity) error {
			_, err := s.DeleteScopeMap(ctx, id, "team-b-map", true)
			return err
		}, `user "alice" may not manage "team-b/app" (scope map "team-b-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "see team-b-map", func(id auth.Identity) error {
			_, err := s.GetScopeMap(id, "team-b-map")
			return err
		}, `user "alice" may not manage "team-b/app" (scope map "team-b-map"): they see scope maps, tokens and users only on team-a/*`},
		{"alice", "bind a token to _repositories_admin", func(id auth.Identity) error {
			_, _, err := s.CreateToken(ctx, id, identity.TokenSpec{Name: "a-admin-tok", ScopeMap: auth.ScopeMapAdmin})
			return err
		}, `user "alice" may not manage "*" (scope map "_repositories_admin"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "bind a token to team-b-map", func(id auth.Identity) error {
			_, _, err := s.CreateToken(ctx, id, identity.TokenSpec{Name: "a-b-tok", ScopeMap: "team-b-map"})
			return err
		}, `user "alice" may not manage "team-b/app" (scope map "team-b-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "create a token with a rule on team-b/x", func(id auth.Identity) error {
			_, _, err := s.CreateToken(ctx, id, identity.TokenSpec{Name: "a-inline", Actions: grants(t, "team-b/x", "content/read")})
			return err
		}, `user "alice" may not manage "team-b/x" (scope map "a-inline-scope-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "create a token with a rule on team-a/app", func(id auth.Identity) error {
			_, _, err := s.CreateToken(ctx, id, identity.TokenSpec{Name: "a-inline-ok", Actions: grants(t, "team-a/app", "content/write")})
			return err
		}, ""},
		{"alice", "rebind team-a-tok to _repositories_pull", func(id auth.Identity) error {
			_, err := s.UpdateToken(ctx, id, "team-a-tok", identity.TokenUpdate{ScopeMap: str(auth.ScopeMapPull)})
			return err
		}, `user "alice" may not manage "*" (scope map "_repositories_pull"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "disable team-b-tok", func(id auth.Identity) error {
			_, err := s.UpdateToken(ctx, id, "team-b-tok", identity.TokenUpdate{Status: str(identity.StatusDisabled)})
			return err
		}, `user "alice" may not manage "team-b/app" (token "team-b-tok", through scope map "team-b-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "generate a password of all-tok", func(id auth.Identity) error {
			_, err := s.GenerateCredentials(ctx, id, "all-tok", nil, time.Time{})
			return err
		}, `user "alice" may not manage "*" (token "all-tok", through scope map "_repositories_pull"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "delete team-b-tok", func(id auth.Identity) error { return s.DeleteToken(ctx, id, "team-b-tok") },
			`user "alice" may not manage "team-b/app" (token "team-b-tok", through scope map "team-b-map"): they manage scope maps and tokens only on team-a/*`},
		{"alice", "see team-b-tok", func(id auth.Identity) error { _, err := s.GetToken(id, "team-b-tok"); return err },
			`user "alice" may not manage "team-b/app" (token "team-b-tok", through scope map "team-b-map"): they see scope maps, tokens and users only on team-a/*`},
		{"alice", "disable team-a-tok", func(id auth.Identity) error {
			_, err := s.UpdateToken(ctx, id, "team-a-tok", identity.TokenUpdate{Status: str(identity.StatusDisabled)})
			return err
		}, ""},
		{"alice", "generate a password of team-a-tok", func(id auth.Identity) error {
			_, err := s.GenerateCredentials(ctx, id, "team-a-tok", nil, time.Time{})
			return err
		}, ""},
		{"alice", "assign a role on team-a/app", func(id auth.Identity) error {
			_, err := s.CreateRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "paul", Role: "push", Repository: "team-a/app"})
			return err
		}, `user "alice" is not allowed to do this: it needs a role with the right to manage users (owner)`},
		{"carol", "create scope map on team-a/x", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "c-map", Actions: grants(t, "team-a/x", "content/read")})
			return err
		}, ""},
		{"carol", "bind a token to _repositories_admin", func(id auth.Identity) error {
			_, _, err := s.CreateToken(ctx, id, identity.TokenSpec{Name: "c-admin-tok", ScopeMap: auth.ScopeMapAdmin})
			return err
		}, `user "carol" may not manage "*" (scope map "_repositories_admin"): they manage scope maps and tokens only on team-a/*`},
		{"carol", "create a user", func(id auth.Identity) error {
			_, err := s.CreateUser(ctx, id, identity.UserSpec{Name: "eve", Role: "none", Password: "a-long-password"})
			return err
		}, `user "carol" is not allowed to do this: it needs a role with the right to manage users (owner)`},
		{"rita", "create scope map on team-a/x", func(id auth.Identity) error {
			_, err := s.CreateScopeMap(ctx, id, identity.ScopeMapSpec{Name: "r-map", Actions: grants(t, "team-a/x", "content/read")})
			return err
		}, `user "rita" is not allowed to do this: it needs a role with the right to manage tokens and scope maps (token-admin, contributor or owner)`},
		{"rita", "see team-a-tok", func(id auth.Identity) error { _, err := s.GetToken(id, "team-a-tok"); return err }, ""},
		{"paul", "list tokens", func(id auth.Identity) error { _, err := s.ListTokens(id); return err },
			`user "paul" is not allowed to do this: it needs a role with read access to the registry's settings (reader, token-admin, contributor or owner)`},
		{"dave", "assign push on team-a/app", func(id auth.Identity) error {
			_, err := s.CreateRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "paul", Role: "push", Repository: "team-a/app"})
			return err
		}, ""},
		{"dave", "assign owner on team-a/sub/*", func(id auth.Identity) error {
			_, err := s.CreateRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "paul", Role: "owner", Repository: "team-a/sub/*"})
			return err
		}, ""},
		{"dave", "assign push on team-b/*", func(id auth.Identity) error {
			_, err := s.CreateRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "paul", Role: "push", Repository: "team-b/*"})
			return err
		}, `user "dave" may not manage "team-b/*" (role assignment push on team-b/*): they manage role assignments only on team-a/*`},
		{"dave", "assign reader on *", func(id auth.Identity) error {
			_, err := s.CreateRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "paul", Role: "reader", Repository: "*"})
			return err
		}, `user "dave" may not manage "*" (role assignment reader on *): they manage role assignments only on team-a/*`},
		{"dave", "take the registry-wide owner role from owner", func(id auth.Identity) error {
			return s.DeleteRoleAssignment(ctx, id, identity.RoleAssignment{Assignee: "owner", Role: "owner", Repository: "*"})
		}, `user "dave" may not manage "*" (role assignment owner on *): they manage role assignments only on team-a/*`},
		{"dave", "change a user's registry-wide role", func(id auth.Identity) error {
			_, err := s.UpdateUser(ctx, id, "paul", identity.UserUpdate{Role: str("owner")})
			return err
		}, `user "dave" is not allowed to do this: it needs a role with the right to manage users (owner)`},
	}
	for _, row := range rows {
		err := row.do(ids[row.who])
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != row.want {
			t.Errorf("%s (%s on team-a/*): %s:\n got  %q\n want %q", row.who, ids[row.who].Assignments[0].Role, row.op, got, row.want)
		}
		if err != nil && !errors.Is(err, identity.ErrForbidden) {
			t.Errorf("%s: %s: %v is not ErrForbidden", row.who, row.op, err)
		}
	}

	// Delegated users see only their part.
	toks, err := s.ListTokens(ids["alice"])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tk := range toks {
		names = append(names, tk.Name)
	}
	if want := []string{"a-inline-ok", "team-a-tok"}; !slices.Equal(names, want) {
		t.Errorf("alice lists tokens %v, want %v", names, want)
	}
	maps, err := s.ListScopeMaps(ids["alice"])
	if err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, m := range maps {
		names = append(names, m.Name)
	}
	if want := []string{"a-inline-ok-scope-map", "a-new-map", "a-wide-map", "c-map", "team-a-map"}; !slices.Equal(names, want) {
		t.Errorf("alice lists scope maps %v, want %v", names, want)
	}
	users, err := s.ListUsers(ids["rita"])
	if err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, u := range users {
		names = append(names, u.Name)
		for _, a := range u.Assignments {
			if !strings.HasPrefix(a.Repository, "team-a/") {
				t.Errorf("rita sees %s's assignment %v", u.Name, a)
			}
		}
	}
	if want := []string{"alice", "carol", "dave", "paul", "rita"}; !slices.Equal(names, want) {
		t.Errorf("rita lists users %v, want %v (not the owner, who holds nothing inside team-a/*)", names, want)
	}
	if _, err := s.GetUser(ids["rita"], "owner"); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("rita sees the owner: %v", err)
	}
}

func testAssignmentsPersistAndFollow(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	s2 := b.service(t, place, clk)
	if _, err := s1.CreateUser(ctx, owner, identity.UserSpec{Name: "alice", Role: identity.RoleNone, Password: "a-long-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "alice", Role: "contributor", Repository: "team-a/*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "alice", Role: "contributor", Repository: "team-a/*"}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("the same assignment twice: %v", err)
	}
	// The other node sees the change on its next request: on PostgreSQL
	// its feed has applied it before the change returned; on SQLite, where
	// one process makes every change, Sync stands in for it.
	sync := func() {
		if b.engine == sqldb.Postgres {
			return
		}
		if err := s2.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	login, err := s2.Authenticate("alice", "a-long-password")
	if err != nil {
		t.Fatal(err)
	}
	if got := auth.Allowed(login.Identity, "team-a/app"); got != auth.AllActions {
		t.Errorf("alice on team-a/app on the other node: %v", got)
	}
	if got := auth.Allowed(login.Identity, "team-b/app"); got != auth.NoActions {
		t.Errorf("alice on team-b/app: %v", got)
	}
	if err := s1.DeleteRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "alice", Role: "contributor", Repository: "team-a/*"}); err != nil {
		t.Fatal(err)
	}
	sync()
	if id, _ := s2.UserIdentity("alice"); auth.Allowed(id, "team-a/app") != auth.NoActions {
		t.Errorf("the other node keeps a deleted assignment: %v", id.Assignments)
	}
	// Assignments survive a restart, and go with a deleted user.
	if _, err := s1.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "alice", Role: "pull", Repository: "shared/base"}); err != nil {
		t.Fatal(err)
	}
	s3 := b.service(t, place, clk)
	got, err := s3.ListRoleAssignments(owner, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := []identity.RoleAssignment{{Assignee: "alice", Role: "pull", Repository: "shared/base"}}; !slices.Equal(got, want) {
		t.Errorf("after a restart: %v, want %v", got, want)
	}
	if err := s1.DeleteUser(ctx, owner, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateUser(ctx, owner, identity.UserSpec{Name: "alice", Role: identity.RoleNone, Password: "a-long-password"}); err != nil {
		t.Fatal(err)
	}
	s4 := b.service(t, place, clk)
	if got, _ := s4.ListRoleAssignments(owner, "alice"); len(got) != 0 {
		t.Errorf("a new user inherits a deleted one's assignments: %v", got)
	}
}

// testRegistryWideRoleIsTheAssignmentOnAll: the role of users is the
// assignment on "*", with the last-owner rule on it.
func testRegistryWideRoleIsTheAssignmentOnAll(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	got, err := s.ListRoleAssignments(owner, "owner")
	if err != nil {
		t.Fatal(err)
	}
	if want := []identity.RoleAssignment{{Assignee: "owner", Role: "owner", Repository: "*"}}; !slices.Equal(got, want) {
		t.Errorf("the first owner's assignments: %v, want %v", got, want)
	}
	if err := s.DeleteRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "owner", Role: "owner", Repository: "*"}); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("deleted the last owner's owner role on *: %v", err)
	}
	if _, err := s.CreateUser(ctx, owner, identity.UserSpec{Name: "bob", Role: "reader", Password: "a-long-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "bob", Role: "owner", Repository: "*"}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("a second role on *: %v", err)
	}
	if err := s.DeleteRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "bob", Role: "reader", Repository: "*"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUser(owner, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != identity.RoleNone || len(u.Assignments) != 0 {
		t.Errorf("bob after losing reader on *: role %q, %v", u.Role, u.Assignments)
	}
	if _, err := s.CreateRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "bob", Role: "owner", Repository: "*"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.GetUser(owner, "bob"); u.Role != "owner" {
		t.Errorf("bob's role after owner on *: %q", u.Role)
	}
	// Now two owners: one may go.
	if err := s.DeleteRoleAssignment(ctx, owner, identity.RoleAssignment{Assignee: "owner", Role: "owner", Repository: "*"}); err != nil {
		t.Errorf("with two owners: %v", err)
	}
	bob, _ := s.UserIdentity("bob")
	if !auth.CanManage(bob, auth.ManageUsers) {
		t.Error("bob, owner on *, cannot manage users")
	}
	for _, bad := range []identity.RoleAssignment{
		{Assignee: "bob", Role: "admin", Repository: "x"},
		{Assignee: "bob", Role: "pull", Repository: "team-*"},
		{Assignee: "bob", Role: "pull", Repository: ""},
	} {
		if _, err := s.CreateRoleAssignment(ctx, bob, bad); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%v: %v, want invalid", bad, err)
		}
	}
	if _, err := s.CreateRoleAssignment(ctx, bob, identity.RoleAssignment{Assignee: "nobody", Role: "pull", Repository: "x"}); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("assignment for a missing user: %v", err)
	}
}
