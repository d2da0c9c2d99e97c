package auth

import (
	"fmt"
	"strings"
)

// Assignment is a role held on the repositories a pattern matches, after
// Azure's role assignments: {contributor, "team-a/*"} makes a user a
// contributor for team-a's repositories only. A user's registry-wide role
// (Identity.Role) is the assignment on "*".
type Assignment struct {
	Role    Role
	Pattern Pattern
}

// ParseAssignment parses a role and a repository pattern, with the messages
// of ParseRole and ParsePattern.
func ParseAssignment(role, pattern string) (Assignment, error) {
	r, err := ParseRole(role)
	if err != nil {
		return Assignment{}, err
	}
	p, err := ParsePattern(pattern)
	if err != nil {
		return Assignment{}, err
	}
	return Assignment{Role: r, Pattern: p}, nil
}

// String returns "contributor on team-a/*".
func (a Assignment) String() string { return string(a.Role) + " on " + a.Pattern.String() }

// Contains reports whether every repository that inner matches is also
// matched by outer, for every possible repository name, so that a right
// held on outer covers all of inner:
//
//   - "*" contains every pattern;
//   - "team/*" contains "team/app", "team/a/b" and "team/*" itself, and
//     "team/sub/*"; it does not contain "team" (a prefix pattern matches
//     only names strictly below its prefix) nor "*";
//   - an exact name contains only itself; in particular "team/app" does
//     not contain "team/app/*".
//
// Overlapping is not enough: "team/*" and "*" overlap but "*" is not inside
// "team/*". The invalid zero Pattern contains nothing and is inside nothing.
//
// Contains is exact for this pattern grammar: when it is false there is a
// repository name inner matches and outer does not.
func (outer Pattern) Contains(inner Pattern) bool {
	if inner.kind == PatternInvalid {
		return false
	}
	switch outer.kind {
	case PatternAll:
		return true
	case PatternExact:
		return inner.kind == PatternExact && inner.name == outer.name
	case PatternPrefix:
		switch inner.kind {
		case PatternExact:
			return outer.Matches(inner.name)
		case PatternPrefix:
			// Every name strictly below inner.name is strictly below
			// outer.name iff inner.name is outer.name or below it.
			return inner.name == outer.name || outer.Matches(inner.name)
		}
	}
	return false
}

// delegable are the management rights that mean something on part of the
// registry: seeing and managing scope maps and tokens, role assignments
// and the audit log of some repositories. The others (registry settings,
// the admin user, bulk repository changes) are held on "*" or not at all.
const delegable = ViewManagement | ManageTokens | ManageUsers | ReadAudit

// assignments calls fn for each role id holds and the pattern it holds it
// on: the registry-wide role on "*" first, then the assignments.
func (id Identity) assignments(fn func(Role, Pattern)) {
	if id.Role != "" {
		fn(id.Role, Pattern{kind: PatternAll})
	}
	for _, a := range id.Assignments {
		fn(a.Role, a.Pattern)
	}
}

// CanManageIn reports whether id holds every right in what for all of the
// repositories p matches: whether the rights of the roles id holds on
// patterns containing p add up to what. Only users hold management rights.
// CanManage(id, what) is CanManageIn on "*".
func CanManageIn(id Identity, what Permission, p Pattern) bool {
	if id.Kind != KindUser || what == 0 || p.kind == PatternInvalid {
		return false
	}
	var have Permission
	id.assignments(func(r Role, on Pattern) {
		if on.Contains(p) {
			have |= r.Permissions()
		}
	})
	return have&what == what
}

// CanManageSome reports whether id holds every right in what on some
// pattern (registry-wide or delegated): whether the pages and routes for
// what are open to id at all. What id then sees and changes is narrowed to
// its patterns by CanManageIn.
func CanManageSome(id Identity, what Permission) bool {
	if id.Kind != KindUser || what == 0 {
		return false
	}
	if what&^delegable != 0 {
		return CanManage(id, what)
	}
	ok := false
	id.assignments(func(r Role, on Pattern) {
		ok = ok || r.Permissions()&what == what
	})
	return ok
}

// ManagedPatterns lists the patterns on which id holds every right in
// what, in the order held, for messages ("alice manages tokens on
// team-a/*").
func ManagedPatterns(id Identity, what Permission) []Pattern {
	if id.Kind != KindUser || what == 0 {
		return nil
	}
	var out []Pattern
	id.assignments(func(r Role, on Pattern) {
		if r.Permissions()&what == what {
			out = append(out, on)
		}
	})
	return out
}

// ManagedScope returns, as strings, the patterns on which id holds what,
// for filters of what a delegated user may see (the audit log); nil when
// id holds what registry-wide, meaning everything, and an empty list when
// nowhere.
func ManagedScope(id Identity, what Permission) []string {
	if CanManage(id, what) {
		return nil
	}
	out := []string{}
	for _, p := range ManagedPatterns(id, what) {
		out = append(out, p.String())
	}
	return out
}

// PatternsString joins patterns for messages: "team-a/*, team-c/app", or
// "no repositories" for none.
func PatternsString(ps []Pattern) string {
	if len(ps) == 0 {
		return "no repositories"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// CanManageRules reports whether id may write a scope map with the stored
// actions (ScopeMap.Actions) under the right what: whether every rule's
// repository pattern lies inside a pattern where id holds what. outside is
// the first pattern that does not, for the refusal. Only the repository
// pattern of a rule decides: whatever else a rule carries narrows it.
// An action that does not parse is outside. An empty list is inside
// everywhere: it grants nothing.
func CanManageRules(id Identity, what Permission, actions []string) (outside string, ok bool) {
	for _, s := range actions {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			return s, false
		}
		if !CanManageIn(id, what, a.Pattern) {
			return a.Pattern.String(), false
		}
	}
	return "", true
}

// assignedActions returns the data-plane actions of id's assignments whose
// pattern matches repo.
func (id Identity) assignedActions(repo string) Actions {
	var a Actions
	for _, as := range id.Assignments {
		if as.Pattern.Matches(repo) {
			a |= as.Role.Actions()
		}
	}
	return a
}

// NotInsideError is a refusal to let a user manage something outside the
// patterns where they hold the right.
type NotInsideError struct {
	Identity Identity
	What     Permission
	// Pattern is the repository pattern outside the user's.
	Pattern string
	// Subject names what was refused, as in `scope map "team-b-push"`.
	Subject string
}

func (e *NotInsideError) Error() string {
	subject := e.Subject
	if subject != "" {
		subject = " (" + subject + ")"
	}
	return fmt.Sprintf("%s may not manage %q%s: %s only on %s", e.Identity, e.Pattern, subject, e.What.Verb(), PatternsString(ManagedPatterns(e.Identity, e.What)))
}

// Verb says what holding p lets one do, in the form "they manage scope maps
// and tokens", for refusals.
func (p Permission) Verb() string {
	switch p {
	case ViewManagement:
		return "they see scope maps, tokens and users"
	case ManageTokens:
		return "they manage scope maps and tokens"
	case ManageUsers:
		return "they manage role assignments"
	case ReadAudit:
		return "they read the audit log"
	}
	return "they hold these rights"
}
