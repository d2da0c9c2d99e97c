package identity

import (
	"fmt"

	"github.com/berth-registry/berth/internal/auth"
)

// Delegated administration: a user who holds a managing role on some
// patterns only (token-admin, contributor or owner on "team-a/*") sees and
// manages the scope maps and tokens inside those patterns, and nothing
// else. "Inside" is auth's containment of patterns: every rule of a scope
// map must lie inside a pattern where the user holds the right, and a
// token is inside when its scope map is. So nobody writes a rule, or binds
// a token to a scope map, granting more than they hold the right to hand
// out, and a built-in scope map (all on "*") is only for registry-wide
// managers.

// authorizeSome checks that actor holds what on some pattern; what it may
// then touch is checked per scope map and token.
func (s *Service) authorizeSome(actor auth.Identity, what auth.Permission) error {
	if !auth.CanManageSome(actor, what) {
		return errf(ErrForbidden, "%s is not allowed to do this: it needs a role with %s", actor, permissionName(what))
	}
	return nil
}

// mapInside reports whether every rule of m lies inside actor's patterns
// for what; outside is the first pattern that does not. A registry-wide
// manager needs no look at the rules.
func mapInside(actor auth.Identity, what auth.Permission, m *scopeMap) (outside string, ok bool) {
	if auth.CanManage(actor, what) {
		return "", true
	}
	if m == nil {
		// A token whose scope map was deleted grants nothing now, but its
		// passwords would carry whatever map a registry-wide manager binds
		// it to next: it lies inside no delegated patterns.
		return "*", false
	}
	return auth.CanManageRules(actor, what, m.def.Actions)
}

// checkMap refuses actor's what on scope map m unless it lies inside their
// patterns.
func checkMap(actor auth.Identity, what auth.Permission, m *scopeMap) error {
	if outside, ok := mapInside(actor, what, m); !ok {
		return errf(ErrForbidden, "%v", &auth.NotInsideError{Identity: actor, What: what, Pattern: outside, Subject: fmt.Sprintf("scope map %q", m.def.Name)})
	}
	return nil
}

// checkRules refuses actions (stored form, of a scope map named name being
// written) unless every rule lies inside actor's patterns for what.
func checkRules(actor auth.Identity, what auth.Permission, name string, actions []string) error {
	if auth.CanManage(actor, what) {
		return nil
	}
	if outside, ok := auth.CanManageRules(actor, what, actions); !ok {
		return errf(ErrForbidden, "%v", &auth.NotInsideError{Identity: actor, What: what, Pattern: outside, Subject: fmt.Sprintf("scope map %q", name)})
	}
	return nil
}

// checkToken refuses actor's what on token p unless its scope map lies
// inside their patterns. Call it with s.mu or s.writeMu held.
func (s *Service) checkToken(actor auth.Identity, what auth.Permission, p *principal) error {
	m := s.scopeMaps[p.scopeMap]
	if outside, ok := mapInside(actor, what, m); !ok {
		return errf(ErrForbidden, "%v", &auth.NotInsideError{Identity: actor, What: what, Pattern: outside,
			Subject: fmt.Sprintf("token %q, through scope map %q", p.name, p.scopeMap)})
	}
	return nil
}
