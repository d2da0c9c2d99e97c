package auth

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func scopeMap(name string, actions ...string) ScopeMap {
	return ScopeMap{Name: name, Type: UserDefined, Actions: actions}
}

func TestPolicyAdditive(t *testing.T) {
	p := MustCompile(scopeMap("additive",
		"repositories/samples/*/content/read",
		"repositories/samples/teama/*/content/write",
		"repositories/samples/teama/app/content/delete",
		"repositories/samples/metadata/read", // exact "samples", not below it
		"repositories/other/content/read",
		"repositories/other/metadata/read", // two rules on one exact pattern
	))
	tests := []struct {
		repo string
		want Actions
	}{
		{"samples/x", ContentRead},
		{"samples/teama", ContentRead},
		{"samples/teama/x", ContentRead | ContentWrite},
		{"samples/teama/x/y/z", ContentRead | ContentWrite},
		{"samples/teama/app", ContentRead | ContentWrite | ContentDelete},
		{"samples/teamb/x", ContentRead},
		{"samples", MetadataRead},
		{"samplesx/y", NoActions},
		{"other", ContentRead | MetadataRead},
		{"other/x", NoActions},
		{"unrelated", NoActions},
	}
	for _, tt := range tests {
		if got := p.Allowed(tt.repo); got != tt.want {
			t.Errorf("Allowed(%q) = %v, want %v", tt.repo, got, tt.want)
		}
	}
	star := MustCompile(scopeMap("star-plus", "repositories/*/content/read", "repositories/team/*/content/write"))
	if got := star.Allowed("team/app"); got != ContentRead|ContentWrite {
		t.Errorf("* + team/*: Allowed(team/app) = %v", got)
	}
	if got := star.Allowed("elsewhere"); got != ContentRead {
		t.Errorf("* + team/*: Allowed(elsewhere) = %v", got)
	}
	var nilPolicy *Policy
	if nilPolicy.Allowed("x") != NoActions || nilPolicy.Name() != "" {
		t.Error("a nil Policy must grant nothing")
	}
	if _, err := Compile(scopeMap("broken", "repositories/a/*/b/content/read")); err == nil {
		t.Error("Compile accepted an invalid action")
	}
}

// TestDecide is the permission matrix of DESIGN.md as a table: each row is
// one identity, one repository, the actions wanted and whether it is allowed.
func TestDecide(t *testing.T) {
	teamPolicy := MustCompile(scopeMap("team-scope-map",
		"repositories/team/app/content/read",
		"repositories/team/app/content/write",
		"repositories/samples/*/content/read",
		"repositories/samples/teama/*/content/write",
		"repositories/samples/teama/*/metadata/read",
	))
	builtin := func(name string) *Policy {
		m, ok := BuiltinScopeMap(name)
		if !ok {
			t.Fatalf("no built-in %s", name)
		}
		return MustCompile(m)
	}
	tok := func(p *Policy) Identity { return Identity{Kind: KindToken, Name: "ci-token", Policy: p} }
	user := func(r Role) Identity { return Identity{Kind: KindUser, Name: "alice", Role: r} }
	admin := Identity{Kind: KindAdmin, Name: "berth"}
	anon := Identity{}
	anonPull := Identity{Policy: builtin(ScopeMapPull)}

	const (
		R  = ContentRead
		W  = ContentWrite
		D  = ContentDelete
		MR = MetadataRead
		MW = MetadataWrite
	)
	tests := []struct {
		name    string
		id      Identity
		repo    string
		want    Actions
		missing Actions
		ok      bool
	}{
		// A token with a user scope map.
		{"token pull exact", tok(teamPolicy), "team/app", R, 0, true},
		{"token push exact", tok(teamPolicy), "team/app", R | W, 0, true},
		{"token delete exact", tok(teamPolicy), "team/app", D, D, false},
		{"token tags exact", tok(teamPolicy), "team/app", MR, MR, false},
		{"token other repo", tok(teamPolicy), "team/other", R, R, false},
		{"token exact is not a prefix", tok(teamPolicy), "team/app/sub", R, R, false},
		{"token wildcard read", tok(teamPolicy), "samples/x", R, 0, true},
		{"token wildcard no write", tok(teamPolicy), "samples/x", R | W, W, false},
		{"token additive read+write", tok(teamPolicy), "samples/teama/x", R | W, 0, true},
		{"token additive deep", tok(teamPolicy), "samples/teama/x/y", R | W | MR, 0, true},
		{"token prefix itself", tok(teamPolicy), "samples", R, R, false},
		{"token prefix sibling", tok(teamPolicy), "samplesx/y", R, R, false},
		{"token partial missing", tok(teamPolicy), "samples/teama/x", AllActions, D | MW | ContentOverwrite, false},
		{"token nil policy", tok(nil), "team/app", R, R, false},

		// Built-in scope maps.
		{"admin map all", tok(builtin(ScopeMapAdmin)), "any/repo", AllActions, 0, true},
		{"pull map read", tok(builtin(ScopeMapPull)), "any/repo", R, 0, true},
		{"pull map no tags", tok(builtin(ScopeMapPull)), "any/repo", MR, MR, false},
		{"pull_metadata_read tags", tok(builtin(ScopeMapPullMetadataRead)), "x", R | MR, 0, true},
		{"pull_metadata_read no push", tok(builtin(ScopeMapPullMetadataRead)), "x", W, W, false},
		{"push map push", tok(builtin(ScopeMapPush)), "x", R | W, 0, true},
		{"push map no delete", tok(builtin(ScopeMapPush)), "x", D, D, false},
		{"push_metadata_write untag", tok(builtin(ScopeMapPushMetadataWrite)), "x", MW, 0, true},
		{"push_metadata_write no delete", tok(builtin(ScopeMapPushMetadataWrite)), "x", D, D, false},

		// Users by role.
		{"owner all", user(RoleOwner), "x/y", AllActions, 0, true},
		{"contributor all", user(RoleContributor), "x/y", AllActions, 0, true},
		{"reader read", user(RoleReader), "x", R | MR, 0, true},
		{"reader no push", user(RoleReader), "x", R | W, W, false},
		{"reader no untag", user(RoleReader), "x", MW, MW, false},
		{"pull role", user(RolePull), "x", R, 0, true},
		{"pull role no tags", user(RolePull), "x", MR, MR, false},
		{"push role", user(RolePush), "x", R | W, 0, true},
		{"push role no delete", user(RolePush), "x", D, D, false},
		{"delete role", user(RoleDelete), "x", D, 0, true},
		{"delete role no pull", user(RoleDelete), "x", R, R, false},
		{"unknown role", user("superuser"), "x", R, R, false},
		{"user ignores policy", Identity{Kind: KindUser, Role: RolePull, Policy: builtin(ScopeMapAdmin)}, "x", W, W, false},

		// Admin and anonymous.
		{"admin all", admin, "x/y/z", AllActions, 0, true},
		{"admin ignores policy", Identity{Kind: KindAdmin, Policy: teamPolicy}, "x", D, 0, true},
		{"anonymous nothing", anon, "x", R, R, false},
		{"anonymous pull", anonPull, "x", R, 0, true},
		{"anonymous pull no push", anonPull, "x", W, W, false},
		{"unknown kind", Identity{Kind: 99, Policy: builtin(ScopeMapAdmin)}, "x", R, R, false},

		// Fail closed.
		{"empty want", admin, "x", 0, 0, false},
		{"invalid repo", admin, "../etc", R, R, false},
		{"upper-case repo", admin, "Team/app", R, R, false},
		{"encoded repo", admin, "%2e%2e/x", R, R, false},
		{"wildcard as repo", tok(builtin(ScopeMapAdmin)), "*", R, R, false},
	}
	for _, tt := range tests {
		missing, ok := Decide(tt.id, tt.repo, tt.want)
		if missing != tt.missing || ok != tt.ok {
			t.Errorf("%s: Decide(%v, %q, %v) = %v, %v; want %v, %v", tt.name, tt.id, tt.repo, tt.want, missing, ok, tt.missing, tt.ok)
		}
		err := Check(tt.id, tt.repo, tt.want)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestDecideBearer(t *testing.T) {
	p := MustCompile(scopeMap("team-scope-map", "repositories/team/*/content/read", "repositories/team/*/content/write"))
	claims := &Claims{Access: []Access{
		{Type: "repository", Name: "team/app", Actions: []string{"pull"}},
		{Type: "repository", Name: "team/other", Actions: []string{"pull", "push", "delete"}},
		{Type: "repository", Class: "plugin", Name: "team/plugin", Actions: []string{"pull"}},
		{Type: "registry", Name: "team/fake", Actions: []string{"pull"}}, // wrong type: ignored
	}}
	id := Identity{Kind: KindToken, Name: "ci-token", Policy: p, Bearer: claims}
	tests := []struct {
		repo string
		want Actions
		ok   bool
	}{
		{"team/app", ContentRead, true},
		{"team/app", ContentWrite, false},     // the policy allows it, the token does not carry it
		{"team/other", ContentWrite, true},    // both agree
		{"team/other", ContentDelete, false},  // the token lists it, the policy no longer allows it
		{"team/plugin", ContentRead, true},    // class does not matter
		{"team/unlisted", ContentRead, false}, // not in the token
		{"team/fake", ContentRead, false},
	}
	for _, tt := range tests {
		if _, ok := Decide(id, tt.repo, tt.want); ok != tt.ok {
			t.Errorf("Decide(bearer, %q, %v) = %v, want %v", tt.repo, tt.want, ok, tt.ok)
		}
	}
}

func TestDeniedError(t *testing.T) {
	id := Identity{Kind: KindToken, Name: "ci-token", Policy: MustCompile(scopeMap("ro-scope-map", "repositories/team/app/content/read"))}
	err := Check(id, "team/app", ContentRead|ContentWrite)
	var de *DeniedError
	if !errors.As(err, &de) || de.Missing != ContentWrite {
		t.Fatalf("Check = %v", err)
	}
	if want := `token "ci-token" lacks content/write on repository "team/app"`; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	for _, tt := range []struct {
		id   Identity
		repo string
		want Actions
		msg  string
	}{
		{Identity{}, "x", ContentRead, `anonymous caller lacks content/read on repository "x"`},
		{Identity{Kind: KindUser, Name: "bob", Role: RolePull}, "x", ContentDelete, `user "bob" lacks content/delete`},
		{Identity{Kind: KindAdmin, Name: "berth"}, "Bad", ContentRead, `admin user "berth": invalid repository name "Bad"`},
		{Identity{Kind: KindAdmin, Name: "berth"}, "x", 0, "no action requested"},
	} {
		if err := Check(tt.id, tt.repo, tt.want); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Check(%v, %q, %v) = %v, want %q", tt.id, tt.repo, tt.want, err, tt.msg)
		}
	}
}

func TestCanManage(t *testing.T) {
	user := func(r Role) Identity { return Identity{Kind: KindUser, Name: "alice", Role: r} }
	all := []Permission{ViewManagement, ManageTokens, ManageUsers, ManageRegistry, ReadAudit, WriteRepositories}
	tests := []struct {
		id   Identity
		can  Permission // every other permission must be refused
		name string
	}{
		{user(RoleOwner), ViewManagement | ManageTokens | ManageUsers | ManageRegistry | ReadAudit | WriteRepositories, "owner"},
		{user(RoleContributor), ViewManagement | ManageTokens | ManageRegistry | ReadAudit | WriteRepositories, "contributor"},
		{user(RoleReader), ViewManagement | ReadAudit, "reader"},
		{user(RolePull), 0, "pull"},
		{user(RolePush), 0, "push"},
		{user(RoleDelete), 0, "delete"},
		{user("nobody"), 0, "unknown role"},
		{Identity{Kind: KindAdmin, Name: "berth", Role: RoleOwner}, 0, "admin user"},
		{Identity{Kind: KindToken, Name: "ci-token", Role: RoleOwner, Policy: MustCompile(BuiltinScopeMaps()[0])}, 0, "token"},
		{Identity{Role: RoleOwner}, 0, "anonymous"},
	}
	for _, tt := range tests {
		for _, p := range all {
			if got, want := CanManage(tt.id, p), tt.can&p != 0; got != want {
				t.Errorf("%s: CanManage(%d) = %v, want %v", tt.name, p, got, want)
			}
		}
		if CanManage(tt.id, 0) {
			t.Errorf("%s: CanManage(0) = true", tt.name)
		}
	}
	if CanManage(user(RoleContributor), ManageTokens|ManageUsers) {
		t.Error("CanManage must require every permission asked for")
	}
}

func TestRoles(t *testing.T) {
	for _, r := range Roles() {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Owner", "admin", "acrpush"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
}

func TestKindText(t *testing.T) {
	for k := KindAnonymous; k <= KindUser; k++ {
		b, err := k.MarshalText()
		var back Kind
		if err != nil || back.UnmarshalText(b) != nil || back != k {
			t.Errorf("kind %v does not round-trip: %q %v", k, b, err)
		}
	}
	var k Kind
	if k.UnmarshalText([]byte("root")) == nil {
		t.Error("UnmarshalText accepted an unknown kind")
	}
	if _, err := Kind(9).MarshalText(); err == nil {
		t.Error("MarshalText accepted an unknown kind")
	}
}

// TestPolicyAgreesWithNaive compares the compiled Policy with the obvious
// definition (OR of every rule whose pattern matches) on random scope maps
// over a small namespace, where overlaps are frequent.
func TestPolicyAgreesWithNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	segs := []string{"a", "b", "a-b", "c.d"}
	randName := func() string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = segs[r.IntN(len(segs))]
		}
		return strings.Join(parts, "/")
	}
	names := []string{"content/read", "content/write", "content/delete", "metadata/read", "metadata/write"}
	for range 300 {
		var actions []string
		for range r.IntN(20) {
			var pattern string
			switch r.IntN(5) {
			case 0:
				pattern = "*"
			case 1, 2:
				pattern = randName() + "/*"
			default:
				pattern = randName()
			}
			actions = append(actions, "repositories/"+pattern+"/"+names[r.IntN(len(names))])
		}
		p := MustCompile(scopeMap("random", actions...))
		for range 50 {
			repo := randName()
			var want Actions
			for _, s := range actions {
				a, _ := ParseScopeMapAction(s)
				if a.Pattern.Matches(repo) {
					want |= a.Action
				}
			}
			if got := p.Allowed(repo); got != want {
				t.Fatalf("rules %q: Allowed(%q) = %v, naive %v", actions, repo, got, want)
			}
		}
	}
}

func TestDecideAllocs(t *testing.T) {
	p := MustCompile(scopeMap("alloc-map", "repositories/team/*/content/read", "repositories/team/app/content/write", "repositories/*/metadata/read"))
	id := Identity{Kind: KindToken, Name: "ci-token", Policy: p, Bearer: &Claims{Access: []Access{{Type: "repository", Name: "team/a/b/app", Actions: []string{"pull"}}}}}
	if n := testing.AllocsPerRun(100, func() { Decide(id, "team/a/b/app", ContentRead) }); n != 0 {
		t.Errorf("Decide allocates %v times per call", n)
	}
}
