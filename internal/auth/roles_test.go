package auth

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPatternContains(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"*", "*", true},
		{"*", "team-a/*", true},
		{"*", "team-a/app", true},
		{"team-a/*", "team-a/app", true},
		{"team-a/*", "team-a/*", true},
		{"team-a/*", "team-a/sub/*", true},
		{"team-a/*", "team-a/sub/app", true},
		{"team-a/*", "team-a", false},   // "team-a/*" matches only names below team-a
		{"team-a/*", "*", false},        // overlapping is not containing
		{"team-a/*", "team-b/x", false}, // disjoint
		{"team-a/*", "team-b/*", false},
		{"team-a/*", "team-ab/x", false}, // a prefix of the name is not a path prefix
		{"team-a/*", "team-ab/*", false},
		{"team-a/*", "team/*", false}, // team-a/* is inside team/*? no: team/* is wider
		{"team/*", "team-a/*", false}, // "team-a" is not below "team"
		{"team/*", "team/a/*", true},
		{"team-a/app", "team-a/app", true},
		{"team-a/app", "team-a/app/*", false},
		{"team-a/app", "team-a/*", false},
		{"team-a/app", "*", false},
		{"team-a/app", "team-a/app2", false},
		{"team-a/app/*", "team-a/app", false},
		{"team-a/sub/*", "team-a/*", false},
	}
	for _, tt := range tests {
		outer, inner := MustParsePattern(tt.outer), MustParsePattern(tt.inner)
		if got := outer.Contains(inner); got != tt.want {
			t.Errorf("%q.Contains(%q) = %t, want %t", tt.outer, tt.inner, got, tt.want)
		}
	}
	// "team-*" is no repository pattern at all: it cannot be assigned or
	// used in a rule, so it is never inside anything.
	if _, err := ParsePattern("team-*"); err == nil {
		t.Error(`ParsePattern("team-*") succeeded`)
	}
	var zero Pattern
	if MustParsePattern("*").Contains(zero) || zero.Contains(MustParsePattern("a")) {
		t.Error("the zero pattern must contain nothing and be inside nothing")
	}
}

// randomPattern draws patterns over a small namespace, where containment
// and overlap are frequent.
func randomPattern(r *rand.Rand) Pattern {
	if r.IntN(8) == 0 {
		return MustParsePattern("*")
	}
	name := randomRepo(r)
	if r.IntN(2) == 0 {
		return MustParsePattern(name + "/*")
	}
	return MustParsePattern(name)
}

func randomRepo(r *rand.Rand) string {
	segs := []string{"a", "b", "a-b", "ab"}
	parts := make([]string, 1+r.IntN(3))
	for i := range parts {
		parts[i] = segs[r.IntN(len(segs))]
	}
	return strings.Join(parts, "/")
}

// witness returns a repository that inner matches and outer does not, if
// one of a few candidates is; Contains must be false exactly when one
// exists.
func witness(outer, inner Pattern) (string, bool) {
	var cands []string
	switch inner.Kind() {
	case PatternExact:
		cands = []string{inner.Name()}
	case PatternPrefix:
		cands = []string{inner.Name() + "/zz", inner.Name() + "/zz/zz"}
	case PatternAll:
		cands = []string{"zz", "zz/zz"}
	}
	if outer.Kind() != PatternInvalid {
		// Names just beside outer's: matched by a wide inner, not by outer.
		cands = append(cands, outer.Name()+"zz", outer.Name())
	}
	for _, c := range cands {
		if checkName(c) == "" && inner.Matches(c) && !outer.Matches(c) {
			return c, true
		}
	}
	return "", false
}

// TestContainsProperty: containment implies that every name the inner
// pattern matches the outer one matches too (checked on random names and
// on names built to tell them apart), and non-containment has a witness.
func TestContainsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 20000 {
		outer, inner := randomPattern(r), randomPattern(r)
		got := outer.Contains(inner)
		if got {
			for range 20 {
				n := randomRepo(r)
				if inner.Matches(n) && !outer.Matches(n) {
					t.Fatalf("%q contains %q, but %q matches only the inner", outer, inner, n)
				}
			}
			if w, ok := witness(outer, inner); ok {
				t.Fatalf("%q contains %q, but %q matches only the inner", outer, inner, w)
			}
			continue
		}
		if _, ok := witness(outer, inner); !ok {
			t.Fatalf("%q does not contain %q, but no name tells them apart", outer, inner)
		}
	}
}

func FuzzPatternContains(f *testing.F) {
	f.Add("team-a/*", "team-a/app", "team-a/app")
	f.Add("team-a/*", "*", "team-b/x")
	f.Add("team/*", "team-a/*", "team-a/x")
	f.Add("a", "a/*", "a/b")
	f.Fuzz(func(t *testing.T, o, i, name string) {
		outer, err1 := ParsePattern(o)
		inner, err2 := ParsePattern(i)
		if err1 != nil || err2 != nil || checkName(name) != "" {
			return
		}
		if outer.Contains(inner) && inner.Matches(name) && !outer.Matches(name) {
			t.Fatalf("%q contains %q, but %q matches only the inner", o, i, name)
		}
		if !outer.Contains(inner) {
			if _, ok := witness(outer, inner); !ok {
				t.Fatalf("%q does not contain %q, but no name tells them apart", o, i)
			}
		}
		if outer.Contains(inner) && inner.Contains(outer) && outer != inner {
			t.Fatalf("%q and %q contain each other but differ", o, i)
		}
	})
}

func TestAssignmentsAllowed(t *testing.T) {
	alice := Identity{Kind: KindUser, Name: "alice", Assignments: []Assignment{
		{RoleContributor, MustParsePattern("team-a/*")},
		{RolePull, MustParsePattern("shared/base")},
		{RoleDelete, MustParsePattern("shared/*")},
		{RoleTokenAdmin, MustParsePattern("team-t/*")},
	}}
	tests := []struct {
		repo string
		want Actions
	}{
		{"team-a/app", AllActions},
		{"team-a/x/y", AllActions},
		{"team-a", NoActions},
		{"team-b/app", NoActions},
		{"shared/base", ContentRead | ContentDelete}, // roles add up
		{"shared/other", ContentDelete},
		{"team-t/app", NoActions}, // token-admin has no data-plane rights
	}
	for _, tt := range tests {
		if got := Allowed(alice, tt.repo); got != tt.want {
			t.Errorf("Allowed(alice, %q) = %v, want %v", tt.repo, got, tt.want)
		}
	}
	// The registry-wide role adds to them.
	alice.Role = RoleReader
	if got := Allowed(alice, "team-b/app"); got != ContentRead|MetadataRead {
		t.Errorf("with reader on *: Allowed(team-b/app) = %v", got)
	}
	if got := Allowed(alice, "team-a/app"); got != AllActions {
		t.Errorf("with reader on *: Allowed(team-a/app) = %v", got)
	}
	// The tag-level decision follows the assignments as well: users have
	// no tag rules, so every tag has the repository's actions.
	for _, tt := range tests {
		if got, want := AllowedOnTag(alice, tt.repo, "v1"), Allowed(alice, tt.repo); got != want {
			t.Errorf("AllowedOnTag(alice, %q, v1) = %v, want %v", tt.repo, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Decide(alice, "shared/base", ContentRead) }); n != 0 {
		t.Errorf("Decide with assignments allocates %v times per call", n)
	}
}

func TestCanManageIn(t *testing.T) {
	delegated := Identity{Kind: KindUser, Name: "alice", Assignments: []Assignment{
		{RoleTokenAdmin, MustParsePattern("team-a/*")},
		{RoleReader, MustParsePattern("team-r/*")},
		{RoleOwner, MustParsePattern("team-o/*")},
	}}
	tests := []struct {
		id      Identity
		what    Permission
		pattern string
		want    bool
	}{
		{delegated, ManageTokens, "team-a/app", true},
		{delegated, ManageTokens, "team-a/*", true},
		{delegated, ManageTokens, "team-a/sub/*", true},
		{delegated, ManageTokens, "team-b/x", false},
		{delegated, ManageTokens, "*", false},
		{delegated, ManageTokens, "team-a", false},
		{delegated, ViewManagement, "team-a/app", true},
		{delegated, ReadAudit, "team-a/app", false}, // token-admin: scope maps and tokens only
		{delegated, ManageUsers, "team-a/app", false},
		{delegated, ManageTokens, "team-r/app", false}, // reader manages nothing
		{delegated, ViewManagement | ReadAudit, "team-r/app", true},
		{delegated, ManageUsers, "team-o/app", true},
		{delegated, ManageRegistry, "*", false},
		{delegated, 0, "team-a/app", false},
		{Identity{Kind: KindUser, Name: "o", Role: RoleOwner}, ManageUsers | ManageRegistry, "*", true},
		{Identity{Kind: KindUser, Name: "c", Role: RoleContributor}, ManageTokens, "team-b/x", true},
		{Identity{Kind: KindUser, Name: "c", Role: RoleContributor}, ManageUsers, "team-b/x", false},
		{Identity{Kind: KindToken, Name: "t", Assignments: delegated.Assignments}, ManageTokens, "team-a/app", false},
	}
	for _, tt := range tests {
		if got := CanManageIn(tt.id, tt.what, MustParsePattern(tt.pattern)); got != tt.want {
			t.Errorf("CanManageIn(%s with %v, %d, %q) = %t, want %t", tt.id, tt.id.Assignments, tt.what, tt.pattern, got, tt.want)
		}
	}
	// Rights on one pattern add up over the assignments containing it.
	both := Identity{Kind: KindUser, Name: "bob", Assignments: []Assignment{
		{RoleTokenAdmin, MustParsePattern("team-a/*")}, {RoleReader, MustParsePattern("team-a/app")},
	}}
	if !CanManageIn(both, ManageTokens|ReadAudit, MustParsePattern("team-a/app")) {
		t.Error("rights of two assignments containing one pattern do not add up")
	}
	if CanManage(delegated, ManageTokens) || !CanManageSome(delegated, ManageTokens) || CanManageSome(delegated, ManageRegistry) {
		t.Error("CanManage must be registry-wide and CanManageSome anywhere")
	}
	if got := PatternsString(ManagedPatterns(delegated, ManageTokens)); got != "team-a/*, team-o/*" {
		t.Errorf("ManagedPatterns = %q", got)
	}
}

func TestCanManageRules(t *testing.T) {
	alice := Identity{Kind: KindUser, Name: "alice", Assignments: []Assignment{{RoleTokenAdmin, MustParsePattern("team-a/*")}}}
	tests := []struct {
		actions []string
		outside string
	}{
		{nil, ""},
		{[]string{"repositories/team-a/app/content/read", "repositories/team-a/*/content/delete"}, ""},
		{[]string{"repositories/team-a/app/content/read", "repositories/team-b/x/content/read"}, "team-b/x"},
		{[]string{"repositories/*/content/read"}, "*"},
		{[]string{"repositories/team-a/content/read"}, "team-a"},
		{[]string{"repositories/team-ab/x/content/read"}, "team-ab/x"},
	}
	for _, tt := range tests {
		outside, ok := CanManageRules(alice, ManageTokens, tt.actions)
		if ok != (tt.outside == "") || outside != tt.outside {
			t.Errorf("CanManageRules(%q) = %q, %t; want %q", tt.actions, outside, ok, tt.outside)
		}
	}
	// A built-in scope map is on "*": never inside a delegated user's patterns.
	for _, b := range BuiltinScopeMaps() {
		if _, ok := CanManageRules(alice, ManageTokens, b.Actions); ok {
			t.Errorf("built-in %s is inside team-a/*", b.Name)
		}
	}
	err := &NotInsideError{Identity: alice, What: ManageTokens, Pattern: "team-b/x", Subject: `scope map "team-b-push"`}
	if want := `user "alice" may not manage "team-b/x" (scope map "team-b-push"): they manage scope maps and tokens only on team-a/*`; err.Error() != want {
		t.Errorf("message = %q\nwant      %q", err.Error(), want)
	}
}
