package auth

import (
	"strings"
)

// Resource types of the Docker token-auth scope grammar that berth knows.
const (
	ScopeTypeRepository = "repository"
	ScopeTypeRegistry   = "registry"
	// CatalogName is the resource name of "registry:catalog:*".
	CatalogName = "catalog"
)

// MaxScopes is the most distinct resources one token request may name;
// further scopes are dropped. It keeps every access token that Signer issues
// below the verifier's MaxTokenSize even with the longest repository names.
// Real clients ask for one to three (a push with a cross-repository mount
// asks for two).
const MaxScopes = 20

// maxClassLength bounds the resource class, as in "repository(plugin)".
const maxClassLength = 32

// Scope is one parsed resource scope of a token request, such as
// "repository:team/app:pull,push".
type Scope struct {
	Type  string // ScopeTypeRepository or ScopeTypeRegistry
	Class string // the optional resource class, "plugin" in "repository(plugin):..."
	Name  string // a valid repository name, or CatalogName
	// Actions are the requested actions of a repository scope, with unknown
	// action names left out and "*" read as all five. It is empty for the
	// catalog scope, whose only action is "*".
	Actions Actions
}

// ParseScope parses one scope of the Docker token-auth grammar:
//
//	repository:<name>:<action>[,<action>...]
//	repository(<class>):<name>:<actions>
//	registry:catalog:*
//
// The type ends at the first ':' and the actions start after the last one,
// so a name that a client sent with a "host:port/" part still parses; such
// a name is not a valid repository name, though, and is dropped like any
// other invalid name (including "..", "%2e" and upper case). Unknown actions
// are ignored, as the spec asks. ok is false for anything that is not a
// well-formed scope of a type berth knows; the caller drops it. It never
// panics, whatever the input.
func ParseScope(s string) (sc Scope, ok bool) {
	i := strings.IndexByte(s, ':')
	k := strings.LastIndexByte(s, ':')
	if i <= 0 || k <= i {
		return Scope{}, false
	}
	typ, name, actions := s[:i], s[i+1:k], s[k+1:]
	if open := strings.IndexByte(typ, '('); open >= 0 {
		class := typ[open+1:]
		typ = typ[:open]
		var closed bool
		class, closed = strings.CutSuffix(class, ")")
		if !closed || !validClass(class) {
			return Scope{}, false
		}
		sc.Class = class
	}
	switch typ {
	case ScopeTypeRepository:
		if checkName(name) != "" {
			return Scope{}, false
		}
		sc.Type, sc.Name, sc.Actions = typ, name, ParseTokenActions(actions)
		return sc, true
	case ScopeTypeRegistry:
		// The catalog is the only registry resource; its action is "*".
		if sc.Class != "" || name != CatalogName || !hasItem(actions, "*") {
			return Scope{}, false
		}
		sc.Type, sc.Name = typ, name
		return sc, true
	}
	return Scope{}, false
}

func validClass(c string) bool {
	if c == "" || len(c) > maxClassLength {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isLowerAlnum(c[i]) {
			return false
		}
	}
	return true
}

// hasItem reports whether the comma-separated list contains item.
func hasItem(list, item string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == item {
			return true
		}
	}
	return false
}

// String formats the scope in the token-auth grammar, the form the registry
// puts into a WWW-Authenticate challenge: "repository:team/app:pull,push" or
// "registry:catalog:*".
func (s Scope) String() string {
	if s.Type == ScopeTypeRegistry {
		return ScopeTypeRegistry + ":" + s.Name + ":*"
	}
	typ := s.Type
	if s.Class != "" {
		typ += "(" + s.Class + ")"
	}
	return typ + ":" + s.Name + ":" + strings.Join(s.Actions.TokenNames(), ",")
}

// ParseScopes parses the scope parameters of a token request. Each parameter
// may hold several scopes separated by spaces, and the parameter may be
// repeated (POST /oauth2/token). Malformed scopes are dropped; scopes naming
// the same resource are merged; at most MaxScopes resources are kept, in the
// order first named.
func ParseScopes(params ...string) []Scope {
	var out []Scope
	for _, p := range params {
		for _, f := range strings.Fields(p) {
			s, ok := ParseScope(f)
			if !ok {
				continue
			}
			merged := false
			for i := range out {
				if out[i].Type == s.Type && out[i].Class == s.Class && out[i].Name == s.Name {
					out[i].Actions |= s.Actions
					merged = true
					break
				}
			}
			if !merged && len(out) < MaxScopes {
				out = append(out, s)
			}
		}
	}
	return out
}

// Access is one entry of the "access" claim of an access token, in the
// shape of the Docker token-auth spec.
type Access struct {
	Type    string   `json:"type"`
	Class   string   `json:"class,omitempty"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Intersect decides what an access token for id may carry: for each
// requested repository scope, the requested actions that id is allowed on
// that repository; for the catalog, "*" for any authenticated caller,
// because the registry filters the catalog per caller anyway. Resources with
// nothing granted are left out. Partial access is not an error: the client
// gets a token for what it may do and the registry refuses the rest with 403.
func Intersect(requested []Scope, id Identity) []Access {
	out := make([]Access, 0, len(requested))
	for _, s := range requested {
		switch s.Type {
		case ScopeTypeRepository:
			if g := s.Actions & Allowed(id, s.Name); g != NoActions {
				out = append(out, Access{Type: s.Type, Class: s.Class, Name: s.Name, Actions: g.TokenNames()})
			}
		case ScopeTypeRegistry:
			if s.Name == CatalogName && CanListCatalog(id) {
				out = append(out, Access{Type: s.Type, Name: s.Name, Actions: []string{"*"}})
			}
		}
	}
	return out
}

// CanListCatalog reports whether id may call the catalog endpoint at all.
// Any authenticated caller may; what it sees is then filtered with
// VisibleInCatalog.
// A caller presenting an access token also needs the catalog in the token's
// access claim, as the token-auth spec requires.
func CanListCatalog(id Identity) bool {
	if id.Kind == KindAnonymous {
		return false
	}
	return id.Bearer == nil || id.Bearer.CatalogGranted()
}

// Granted returns the actions the token's access claim lists for repository
// repo. The resource class is ignored: "repository(plugin)" names the same
// repository namespace.
func (c *Claims) Granted(repo string) Actions {
	var g Actions
	for i := range c.Access {
		a := &c.Access[i]
		if a.Type != ScopeTypeRepository || a.Name != repo {
			continue
		}
		for _, n := range a.Actions {
			if b, ok := ParseTokenAction(n); ok {
				g |= b
			}
		}
	}
	return g
}

// CatalogGranted reports whether the token's access claim lists
// "registry:catalog:*".
func (c *Claims) CatalogGranted() bool {
	for _, a := range c.Access {
		if a.Type == ScopeTypeRegistry && a.Name == CatalogName {
			for _, n := range a.Actions {
				if n == "*" {
					return true
				}
			}
		}
	}
	return false
}
