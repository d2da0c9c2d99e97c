package auth

import (
	"fmt"
	"math/bits"
	"strings"
)

// Actions is a set of the data-plane actions of a scope map: ACR's five and
// berth's content/overwrite. It is a
// bitset so that a grant, a request and the difference between them are each a
// single machine word: the decision on the request path is a few OR and
// AND-NOT operations, with nothing to allocate.
type Actions uint8

// The five scope-map actions. Their order is fixed: it is the order in which
// sets are printed, and the order of the access-token action names in a JWT.
const (
	// ContentRead pulls manifests and blobs (token action "pull").
	ContentRead Actions = 1 << iota
	// ContentWrite pushes manifests and blobs (token action "push"). Clients
	// always pair it with ContentRead, because a push starts with HEAD requests.
	ContentWrite
	// ContentDelete deletes manifests, tags and whole repositories (token
	// action "delete").
	ContentDelete
	// MetadataRead lists tags and manifests (token action "metadata_read").
	MetadataRead
	// MetadataWrite untags and changes repository and manifest attributes
	// such as writeEnabled (token action "metadata_write").
	MetadataWrite
	// ContentOverwrite moves an existing tag to another manifest. It is
	// berth's, not ACR's, and has no access-token name: the Docker token
	// grammar cannot say it, so it rides along with "push" in access
	// tokens and is decided on the data plane against the scope map. Without
	// it a token may create tags but never replace what one points at.
	ContentOverwrite

	// NoActions is the empty set.
	NoActions Actions = 0
	// AllActions is the set of all six actions, what "_repositories_admin"
	// and the admin user have.
	AllActions = ContentRead | ContentWrite | ContentDelete | MetadataRead | MetadataWrite | ContentOverwrite
)

// actionNames is the one table linking the bits to both spellings. It is an
// array (not a map) so it cannot be modified and iterates in bit order.
var actionNames = [...]struct {
	bit      Actions
	scopeMap string // the form inside "repositories/<pattern>/<action>"
	token    string // the form inside a Docker token scope and JWT "access" claim
}{
	{ContentRead, "content/read", "pull"},
	{ContentWrite, "content/write", "push"},
	{ContentDelete, "content/delete", "delete"},
	{MetadataRead, "metadata/read", "metadata_read"},
	{MetadataWrite, "metadata/write", "metadata_write"},
	{ContentOverwrite, "content/overwrite", ""}, // no token name: see ContentOverwrite
}

// Has reports whether a contains every action in b.
func (a Actions) Has(b Actions) bool { return a&b == b }

// Len returns the number of actions in the set.
func (a Actions) Len() int { return bits.OnesCount8(uint8(a & AllActions)) }

// String lists the scope-map names of the actions, comma-separated, in a
// fixed order ("content/read,content/write"), or "none" for the empty set.
// It is the form used in denial messages, which speak the scope-map language
// that users configured.
func (a Actions) String() string {
	if a&AllActions == 0 {
		return "none"
	}
	return strings.Join(a.ScopeMapNames(), ",")
}

// ScopeMapNames returns the scope-map names of the actions in a, such as
// "content/read", in a fixed order.
func (a Actions) ScopeMapNames() []string {
	out := make([]string, 0, a.Len())
	for _, n := range actionNames {
		if a&n.bit != 0 {
			out = append(out, n.scopeMap)
		}
	}
	return out
}

// TokenNames returns the access-token names of the actions in a, such as
// "pull", in a fixed order. This is the form that goes into the "actions" of
// a JWT access claim. It never returns "*": a token lists what it grants.
func (a Actions) TokenNames() []string {
	out := make([]string, 0, a.Len())
	for _, n := range actionNames {
		if a&n.bit != 0 && n.token != "" {
			out = append(out, n.token)
		}
	}
	return out
}

// actionList names every scope-map action, for messages.
const actionList = "content/read, content/write, content/delete, metadata/read, metadata/write, content/overwrite"

// ParseAction parses one scope-map action name such as "content/read". The
// match is exact: scope maps are stored in canonical lower-case form, so an
// unknown or differently-spelled name is a configuration error to report.
func ParseAction(s string) (Actions, error) {
	for _, n := range actionNames {
		if s == n.scopeMap {
			return n.bit, nil
		}
	}
	return NoActions, fmt.Errorf("invalid action %q: must be one of "+actionList, s)
}

// ParseTokenAction parses one action of a Docker token scope or JWT access
// entry: "pull", "push", "delete", "metadata_read", "metadata_write", or "*"
// for all of them. ok is false for any other name; the token-auth spec has
// servers ignore actions they do not know, so this is not an error.
func ParseTokenAction(s string) (a Actions, ok bool) {
	if s == "*" {
		return AllActions &^ ContentOverwrite, true // "push" carries overwrite
	}
	for _, n := range actionNames {
		if s == n.token && s != "" {
			return n.bit, true
		}
	}
	return NoActions, false
}

// ParseTokenActions parses a comma-separated action list as found in a scope
// such as "repository:team/app:pull,push". Unknown and empty items are
// skipped, so the result may be empty.
func ParseTokenActions(list string) Actions {
	var a Actions
	for list != "" {
		item := list
		if i := strings.IndexByte(list, ','); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			list = ""
		}
		if b, ok := ParseTokenAction(item); ok {
			a |= b
		}
	}
	return a
}
