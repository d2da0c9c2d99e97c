package auth

import (
	"fmt"
)

// Kind says what sort of credential an identity authenticated with.
type Kind uint8

const (
	// KindAnonymous is a caller without credentials. It is the zero value,
	// so an Identity nobody filled in is granted nothing.
	KindAnonymous Kind = iota
	// KindToken is a repository-scoped token; its Policy is its scope map.
	KindToken
	// KindAdmin is the registry-wide admin user: all five actions on every
	// repository, and no management rights (as in ACR, where the admin user
	// is a data-plane credential only).
	KindAdmin
	// KindUser is a person or automation account with a Role.
	KindUser
)

var kindNames = [...]string{KindAnonymous: "anonymous", KindToken: "token", KindAdmin: "admin", KindUser: "user"}

// String returns "anonymous", "token", "admin" or "user".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// MarshalText implements encoding.TextMarshaler; kinds travel by name in
// access tokens and audit records.
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) {
		return nil, fmt.Errorf("invalid identity kind %d", k)
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. An unknown name is an
// error, so a token carrying one fails verification instead of becoming
// anonymous.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if string(b) == n {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("invalid identity kind %q", b)
}

// Role is a user's role, after ACR's built-in roles.
type Role string

// The roles. Data-plane actions and management rights apply to the
// repositories the assignment's pattern matches ("*" for the registry-wide
// role).
const (
	// RoleOwner: all five actions, and all management including users and roles.
	RoleOwner Role = "owner"
	// RoleContributor: all five actions, and all management except users and roles.
	RoleContributor Role = "contributor"
	// RoleReader: content/read and metadata/read, and read-only management views.
	RoleReader Role = "reader"
	// RolePull: content/read.
	RolePull Role = "pull"
	// RolePush: content/read and content/write.
	RolePush Role = "push"
	// RoleDelete: content/delete.
	RoleDelete Role = "delete"
	// RoleTokenAdmin: no data-plane actions; sees and manages scope maps
	// and tokens (within the pattern it is assigned on).
	RoleTokenAdmin Role = "token-admin"
)

// Roles returns every role, most powerful first.
func Roles() []Role {
	return []Role{RoleOwner, RoleContributor, RoleReader, RolePull, RolePush, RoleDelete, RoleTokenAdmin}
}

// ParseRole parses a role name exactly as listed by Roles.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("invalid role %q: must be one of owner, contributor, reader, pull, push, delete, token-admin", s)
}

// Actions returns the data-plane actions the role grants on each
// repository. An unknown role grants nothing.
func (r Role) Actions() Actions {
	switch r {
	case RoleOwner, RoleContributor:
		return AllActions
	case RoleReader:
		return ContentRead | MetadataRead
	case RolePull:
		return ContentRead
	case RolePush:
		// Pushing has always replaced tags; content/overwrite keeps that.
		return ContentRead | ContentWrite | ContentOverwrite
	case RoleDelete:
		return ContentDelete
	}
	return NoActions
}

// Identity is an authenticated (or anonymous) caller, as the service layer
// builds it for one request from current state: a disabled token or an
// expired password never becomes an Identity, and Policy is the current
// compiled scope map. Decide trusts it.
type Identity struct {
	Kind Kind
	// Name is the token name, the admin username, or the user name; empty
	// for anonymous callers.
	Name string
	// Role is a user's registry-wide role, the assignment on "*"; empty
	// for none. Ignored for other kinds.
	Role Role
	// Assignments are a user's other role assignments, each on a
	// repository pattern; their data-plane actions and management rights
	// apply only where the pattern matches. Never changed once built.
	Assignments []Assignment
	// Policy is a token's scope map. For anonymous callers it may be set to
	// offer anonymous pull (compile a scope map granting content/read);
	// nil grants nothing. Ignored for the admin and users.
	Policy *Policy
	// Bearer is the verified access token the request carried, if it
	// carried one. Decide never grants more than its "access" claim lists,
	// and never more than the identity is allowed now, so shrinking a scope
	// map narrows tokens that were issued before the change.
	Bearer *Claims
}

// String names the identity for messages, as in `token "ci-push"`.
func (id Identity) String() string {
	switch id.Kind {
	case KindAnonymous:
		return "anonymous caller"
	case KindAdmin:
		return fmt.Sprintf("admin user %q", id.Name)
	}
	return fmt.Sprintf("%s %q", id.Kind, id.Name)
}

// Allowed returns every action id may perform on repository repo: nothing
// for an invalid repository name; everything for the admin; the role's
// actions for a user; the scope map's for a token (and for an anonymous
// caller with a Policy); in each case narrowed to the access claim of
// id.Bearer when there is one.
func Allowed(id Identity, repo string) Actions {
	if checkName(repo) != "" {
		return NoActions
	}
	var a Actions
	switch id.Kind {
	case KindAdmin:
		a = AllActions
	case KindUser:
		a = id.Role.Actions() | id.assignedActions(repo)
	case KindToken, KindAnonymous:
		a = id.Policy.Allowed(repo)
	}
	if id.Bearer != nil {
		a &= bearerGranted(id.Bearer, repo)
	}
	return a
}

// bearerGranted is what an access token's claim allows on repo. The token
// grammar has no name for content/overwrite, so "push" carries it: whether a
// tag may be moved is decided against the scope map, on the data plane.
func bearerGranted(c *Claims, repo string) Actions {
	g := c.Granted(repo)
	if g&ContentWrite != 0 {
		g |= ContentOverwrite
	}
	return g
}

// VisibleInCatalog reports whether the catalog lists repository repo for id:
// whether id may currently do anything at all on it. It ignores id.Bearer,
// because an access token for "registry:catalog:*" names no repositories;
// CanListCatalog has already checked the token. Filtering by any action,
// not only metadata/read, follows issue 3: a push-only CI token still sees
// the repositories it pushes to.
func VisibleInCatalog(id Identity, repo string) bool {
	id.Bearer = nil
	return Allowed(id, repo) != NoActions
}

// Decide is the one access decision of berth: may id perform every action
// in want on repository repo? ok is true only if want is non-empty and all
// of it is allowed; missing lists the actions of want that are not, for the
// denial message. An empty want is denied rather than trivially allowed, so
// that a request the registry forgot to map to an action fails closed.
//
// It allocates nothing and costs a few map probes, so it runs on every
// request.
func Decide(id Identity, repo string, want Actions) (missing Actions, ok bool) {
	missing = want &^ Allowed(id, repo)
	return missing, want != NoActions && missing == NoActions
}

// Check is Decide returning an error for the handlers: nil, or a
// *DeniedError whose message names the identity, the repository and the
// missing actions.
func Check(id Identity, repo string, want Actions) error {
	missing, ok := Decide(id, repo, want)
	if ok {
		return nil
	}
	return &DeniedError{Identity: id, Repository: repo, Missing: missing}
}

// DeniedError is a denied access decision. The registry answers 401 with a
// challenge when Identity.Kind is KindAnonymous, and 403 DENIED otherwise.
type DeniedError struct {
	Identity   Identity
	Repository string
	Missing    Actions // empty if no action was asked for
	// Or, when set, is the alternative that would have been allowed as
	// well (an untag takes metadata/write or content/delete).
	Or Actions
	// Tag, when set, is the tag the operation Op was denied on (CheckTag),
	// and TagPatterns the patterns the scope map allows that operation on.
	Tag         string
	Op          Operation
	TagPatterns []string
	// SomeTags are actions of Missing the identity holds on some tags
	// only, which an operation on the whole repository does not accept.
	SomeTags Actions
	// Digest, when set, is the manifest that Op was denied on because of
	// tag rules: one the tags it may see do not reach (OpPull,
	// OpReadMetadata), or one a tag it may not delete reaches.
	Digest string
}

func (e *DeniedError) Error() string {
	if e.Tag != "" {
		return e.tagMessage()
	}
	if e.Digest != "" {
		return e.digestMessage()
	}
	if reason := checkName(e.Repository); reason != "" {
		return fmt.Sprintf("%s: invalid repository name %q: %s", e.Identity, e.Repository, reason)
	}
	if e.Missing == NoActions {
		return fmt.Sprintf("%s: no action requested on repository %q", e.Identity, e.Repository)
	}
	var some string
	if e.SomeTags != NoActions {
		some = fmt.Sprintf(" (its scope map grants %s on some tags only, and this acts on the whole repository)", e.SomeTags)
	}
	if e.Or != NoActions {
		return fmt.Sprintf("%s lacks %s (or %s) on repository %q%s", e.Identity, e.Missing, e.Or, e.Repository, some)
	}
	return fmt.Sprintf("%s lacks %s on repository %q%s", e.Identity, e.Missing, e.Repository, some)
}

// Permission is a set of management-API rights. Management is decided by
// role alone: only users manage the registry. Tokens, the admin user and
// anonymous callers have no management rights, as in ACR, where tokens and
// the admin user are data-plane credentials and management goes through ARM.
type Permission uint8

const (
	// ViewManagement reads tokens, scope maps, users, repositories and
	// settings through the API; never a secret (those are shown once, at
	// generation, to whoever had ManageTokens or ManageRegistry).
	ViewManagement Permission = 1 << iota
	// ManageTokens creates, updates and deletes tokens and scope maps, and
	// generates and deletes token passwords.
	ManageTokens
	// ManageUsers creates, updates and deletes users and assigns roles.
	// Only owners have it, so nobody below owner can raise their own role.
	ManageUsers
	// ManageRegistry changes registry settings and the admin user (enable,
	// disable, renew its passwords).
	ManageRegistry
	// ReadAudit lists the audit log.
	ReadAudit
	// WriteRepositories performs repository operations that are not scoped
	// to one repository through the API (bulk delete, changing attributes
	// across repositories). Routes that act on one repository should call
	// Decide instead, so that the API and /v2/ give the same answer.
	WriteRepositories
)

// Permissions returns the management rights of the role.
func (r Role) Permissions() Permission {
	const everything = ViewManagement | ManageTokens | ManageUsers | ManageRegistry | ReadAudit | WriteRepositories
	switch r {
	case RoleOwner:
		return everything
	case RoleContributor:
		return everything &^ ManageUsers
	case RoleReader:
		return ViewManagement | ReadAudit
	case RoleTokenAdmin:
		return ViewManagement | ManageTokens
	}
	// pull, push and delete are data-plane roles.
	return 0
}

// CanManage reports whether id holds every right in what registry-wide,
// on "*" (CanManageIn narrows it to a pattern). It is false for an empty
// what, for the same fail-closed reason as Decide.
func CanManage(id Identity, what Permission) bool {
	return CanManageIn(id, what, Pattern{kind: PatternAll})
}
