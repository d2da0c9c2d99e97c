package api

import (
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
)

// The JSON documents of the API. Resources follow the shape of Azure
// Container Registry's ARM resources: {id, name, type, properties}. The CLI
// decodes the same types.

// ProvisioningSucceeded is the provisioningState of every resource: berth
// applies changes synchronously.
const ProvisioningSucceeded = "Succeeded"

// Resource types, as in the "type" field and the ids ("/scopeMaps/NAME").
const (
	TypeScopeMaps = "scopeMaps"
	TypeTokens    = "tokens"
	TypeUsers     = "users"
)

// List is the answer of the list routes, as ARM lists resources.
type List[T any] struct {
	Value []T `json:"value"`
}

// ScopeMap is a scope map resource.
type ScopeMap struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Properties ScopeMapProperties `json:"properties"`
}

// ScopeMapProperties are a scope map's properties.
type ScopeMapProperties struct {
	Description string `json:"description"`
	// Type is UserDefined or SystemDefined (the five built-in maps).
	Type string `json:"type"`
	// Actions are in ACR's stored form "repositories/<pattern>/<action>".
	Actions []string `json:"actions"`
	// Tags limits actions to tag patterns (a berth addition): for an entry
	// of Actions, the literal tags or globs with '*' it applies to. An
	// action without an entry applies to every tag.
	Tags map[string][]string `json:"tags,omitempty"`
	// CreationDate is absent for the built-in scope maps.
	CreationDate      *time.Time `json:"creationDate,omitempty"`
	ProvisioningState string     `json:"provisioningState"`
	// Tokens lists the tokens that use the scope map (a berth addition).
	Tokens []string `json:"tokens"`
}

// ScopeMapCreate is the body of PUT /api/v1/scopeMaps/{name}.
type ScopeMapCreate struct {
	Properties struct {
		Description string              `json:"description"`
		Actions     []string            `json:"actions"`
		Tags        map[string][]string `json:"tags"`
	} `json:"properties"`
}

// ScopeMapPatch is the body of PATCH /api/v1/scopeMaps/{name}. Absent fields
// are left alone. Actions replaces the whole list (ACR's update); berth's
// AddActions and RemoveActions change it in place, atomically, so that two
// clients adding different repositories at once both succeed. When several
// are given they apply in the order actions, removeActions, addActions.
type ScopeMapPatch struct {
	Properties struct {
		Description *string   `json:"description"`
		Actions     *[]string `json:"actions"`
		// Tags goes with Actions: the tag limits of the new list.
		Tags       map[string][]string `json:"tags"`
		AddActions []string            `json:"addActions"`
		// AddTags limits actions of AddActions to tag patterns; grants add
		// up with what the map already has.
		AddTags       map[string][]string `json:"addTags"`
		RemoveActions []string            `json:"removeActions"`
	} `json:"properties"`
}

// ScopeMapDeleted is the answer to DELETE /api/v1/scopeMaps/{name}.
type ScopeMapDeleted struct {
	ID string `json:"id"`
	// TokensWithoutPermissions lists the tokens that used the scope map and
	// now have no permissions (only with force=true).
	TokensWithoutPermissions []string `json:"tokensWithoutPermissions"`
}

// Token is a token resource.
type Token struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties TokenProperties `json:"properties"`
}

// TokenProperties are a token's properties.
type TokenProperties struct {
	ScopeMapID        string           `json:"scopeMapId"`
	Status            string           `json:"status"`
	CreationDate      time.Time        `json:"creationDate"`
	LastUsed          *time.Time       `json:"lastUsed,omitempty"`
	ProvisioningState string           `json:"provisioningState"`
	Credentials       TokenCredentials `json:"credentials"`
}

// TokenCredentials are a token's password slots. Username and the
// passwords' values are present only in the answer that generated them.
type TokenCredentials struct {
	Username  string     `json:"username,omitempty"`
	Passwords []Password `json:"passwords"`
}

// Password is one password slot.
type Password struct {
	Name         string     `json:"name"`
	Value        string     `json:"value,omitempty"`
	CreationTime time.Time  `json:"creationTime"`
	Expiry       *time.Time `json:"expiry,omitempty"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
}

// TokenCreate is the body of PUT /api/v1/tokens/{name}.
type TokenCreate struct {
	Properties struct {
		// ScopeMapID names an existing scope map: "/scopeMaps/NAME" or "NAME".
		ScopeMapID string `json:"scopeMapId"`
		// ScopeMapActions (a berth extension) creates the scope map
		// "<token>-scope-map" with these actions, in the same transaction.
		ScopeMapActions []string `json:"scopeMapActions"`
		// ScopeMapTags limits some of ScopeMapActions to tag patterns,
		// as a scope map's tags do.
		ScopeMapTags map[string][]string `json:"scopeMapTags"`
		Status       string              `json:"status"`
		// Credentials.Passwords (a berth extension) lists the slots to
		// generate now; their values are in the answer, once.
		Credentials struct {
			Passwords []PasswordRequest `json:"passwords"`
		} `json:"credentials"`
	} `json:"properties"`
}

// PasswordRequest asks for a password to be generated.
type PasswordRequest struct {
	Name   string     `json:"name"`
	Expiry *time.Time `json:"expiry"`
}

// TokenPatch is the body of PATCH /api/v1/tokens/{name}.
type TokenPatch struct {
	Properties struct {
		ScopeMapID *string `json:"scopeMapId"`
		Status     *string `json:"status"`
	} `json:"properties"`
}

// GenerateCredentialsRequest is the body of POST /api/v1/generateCredentials.
type GenerateCredentialsRequest struct {
	// TokenID is "/tokens/NAME" or "NAME".
	TokenID string `json:"tokenId"`
	// Name is password1 or password2; both are generated when it is empty.
	Name   string     `json:"name"`
	Expiry *time.Time `json:"expiry"`
}

// Credentials are freshly generated passwords, with their values, shown once.
type Credentials struct {
	Username  string     `json:"username"`
	Passwords []Password `json:"passwords"`
}

// Admin is the admin user.
type Admin struct {
	AdminUserEnabled bool   `json:"adminUserEnabled"`
	Username         string `json:"username"`
	// Passwords carry values only in the answer that generated them.
	Passwords []Password `json:"passwords"`
}

// AdminPatch is the body of PATCH /api/v1/admin.
type AdminPatch struct {
	AdminUserEnabled *bool `json:"adminUserEnabled"`
}

// RegenerateCredentialRequest is the body of POST /api/v1/admin/regenerateCredential.
type RegenerateCredentialRequest struct {
	// Name is "password" or "password2".
	Name string `json:"name"`
}

// User is a user resource.
type User struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Properties UserProperties `json:"properties"`
}

// UserProperties are a user's properties.
type UserProperties struct {
	// Role is the registry-wide role (the assignment on "*"), or "none".
	Role         string     `json:"role"`
	Status       string     `json:"status"`
	CreationDate time.Time  `json:"creationDate"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
	// RoleAssignments are the user's assignments the caller may see.
	RoleAssignments []RoleAssignment `json:"roleAssignments"`
}

// UserCreate is the body of PUT /api/v1/users/{name}.
type UserCreate struct {
	Properties struct {
		Role     string `json:"role"`
		Password string `json:"password"`
	} `json:"properties"`
}

// UserPatch is the body of PATCH /api/v1/users/{name}.
type UserPatch struct {
	Properties struct {
		Role     *string `json:"role"`
		Password *string `json:"password"`
		Status   *string `json:"status"`
		// CurrentPassword is required when users change their own password.
		CurrentPassword *string `json:"currentPassword"`
	} `json:"properties"`
}

// Attributes are ACR's changeableAttributes of a repository or a manifest.
type Attributes struct {
	DeleteEnabled bool `json:"deleteEnabled"`
	WriteEnabled  bool `json:"writeEnabled"`
	ReadEnabled   bool `json:"readEnabled"`
	ListEnabled   bool `json:"listEnabled"`
}

// AttributesPatch is the body of PATCH on a repository or a manifest: the
// attributes to change, as in ACR's PATCH /acr/v1/{name}.
type AttributesPatch struct {
	DeleteEnabled *bool `json:"deleteEnabled"`
	WriteEnabled  *bool `json:"writeEnabled"`
	ReadEnabled   *bool `json:"readEnabled"`
	ListEnabled   *bool `json:"listEnabled"`
}

// RepositoryList is the answer of GET /api/v1/repositories.
type RepositoryList struct {
	Repositories []string `json:"repositories"`
	// Next, when set, is the ?last= value that fetches the next page.
	Next string `json:"next,omitempty"`
	// With sort, page or pageSize: the detailed page, its number, the
	// number of pages and of repositories.
	Items []RepositoryItem `json:"items,omitempty"`
	Total *int             `json:"total,omitempty"`
	Page  int              `json:"page,omitempty"`
	Pages int              `json:"pages,omitempty"`
}

// RepositoryItem is a repository in the detailed list.
type RepositoryItem struct {
	Name        string     `json:"name"`
	CreatedTime time.Time  `json:"createdTime"`
	LastPushed  *time.Time `json:"lastPushed,omitempty"`
	SizeBytes   int64      `json:"sizeBytes"`
	Manifests   int        `json:"manifestCount"`
	// Pulls counts the manifest pulls in the audit log (within its
	// retention); absent without an audit log.
	Pulls *int64 `json:"pullCount,omitempty"`
}

// Repository is one repository.
type Repository struct {
	Registry             string     `json:"registry"`
	ImageName            string     `json:"imageName"`
	CreatedTime          time.Time  `json:"createdTime"`
	TagCount             int        `json:"tagCount"`
	ChangeableAttributes Attributes `json:"changeableAttributes"`
}

// TagList is the answer of GET /api/v1/repositories/{name}/_tags.
type TagList struct {
	Registry  string `json:"registry"`
	ImageName string `json:"imageName"`
	Tags      []Tag  `json:"tags"`
	// Next, when set, is the ?last= value that fetches the next page.
	Next string `json:"next,omitempty"`
}

// Tag is one tag and the manifest it points at.
type Tag struct {
	Name                 string        `json:"name"`
	Digest               digest.Digest `json:"digest"`
	CreatedTime          time.Time     `json:"createdTime"`
	ChangeableAttributes Attributes    `json:"changeableAttributes"`
}

// ManifestInfo is the answer of GET /api/v1/repositories/{name}/_manifests/{reference}.
type ManifestInfo struct {
	Registry  string           `json:"registry"`
	ImageName string           `json:"imageName"`
	Manifest  ManifestMetadata `json:"manifest"`
}

// ManifestMetadata describes one manifest.
type ManifestMetadata struct {
	Digest               digest.Digest     `json:"digest"`
	MediaType            string            `json:"mediaType"`
	ArtifactType         string            `json:"artifactType,omitempty"`
	Subject              digest.Digest     `json:"subject,omitempty"`
	ImageSize            int64             `json:"imageSize"`
	CreatedTime          time.Time         `json:"createdTime"`
	Annotations          map[string]string `json:"annotations,omitempty"`
	ChangeableAttributes Attributes        `json:"changeableAttributes"`
	// Platforms are an image's platform, from its config, or the platforms
	// of an index's children (the first 16), as the portal shows them.
	Platforms []string `json:"platforms,omitempty"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func scopeMapID(name string) string { return "/" + TypeScopeMaps + "/" + name }
func tokenID(name string) string    { return "/" + TypeTokens + "/" + name }
func userID(name string) string     { return "/" + TypeUsers + "/" + name }

func scopeMapJSON(m identity.ScopeMap) ScopeMap {
	actions := m.Actions
	if actions == nil {
		actions = []string{}
	}
	tokens := m.Tokens
	if tokens == nil {
		tokens = []string{}
	}
	return ScopeMap{ID: scopeMapID(m.Name), Name: m.Name, Type: TypeScopeMaps, Properties: ScopeMapProperties{
		Description: m.Description, Type: m.Type, Actions: actions, Tags: m.Tags, CreationDate: optTime(m.CreatedAt),
		ProvisioningState: ProvisioningSucceeded, Tokens: tokens,
	}}
}

func tokenJSON(t identity.Token, creds *identity.Credentials) Token {
	out := Token{ID: tokenID(t.Name), Name: t.Name, Type: TypeTokens, Properties: TokenProperties{
		ScopeMapID: scopeMapID(t.ScopeMap), Status: t.Status, CreationDate: t.CreationDate.UTC(), LastUsed: utcPtr(t.LastUsed),
		ProvisioningState: ProvisioningSucceeded, Credentials: TokenCredentials{Passwords: passwordsJSON(t.Passwords)},
	}}
	if creds != nil {
		out.Properties.Credentials.Username = creds.Username
		withValues(out.Properties.Credentials.Passwords, creds)
	}
	return out
}

// withValues copies freshly generated values into the matching slots.
func withValues(pws []Password, creds *identity.Credentials) {
	for _, c := range creds.Passwords {
		for i := range pws {
			if pws[i].Name == c.Name {
				pws[i].Value = c.Value
			}
		}
	}
}

func passwordsJSON(in []identity.Password) []Password {
	out := make([]Password, 0, len(in))
	for _, p := range in {
		out = append(out, Password{Name: p.Name, Value: p.Value, CreationTime: p.CreationTime.UTC(), Expiry: utcPtr(p.Expiry), LastUsed: utcPtr(p.LastUsed)})
	}
	return out
}

func credentialsJSON(c *identity.Credentials) Credentials {
	if c == nil {
		return Credentials{Passwords: []Password{}}
	}
	return Credentials{Username: c.Username, Passwords: passwordsJSON(c.Passwords)}
}

func adminJSON(a identity.Admin, creds *identity.Credentials) Admin {
	out := Admin{AdminUserEnabled: a.Enabled, Username: a.Username, Passwords: passwordsJSON(a.Passwords)}
	if creds != nil {
		withValues(out.Passwords, creds)
	}
	return out
}

func userJSON(u identity.User) User {
	return User{ID: userID(u.Name), Name: u.Name, Type: TypeUsers, Properties: UserProperties{
		Role: u.Role, Status: u.Status, CreationDate: u.CreationDate.UTC(), LastUsed: utcPtr(u.LastUsed),
		RoleAssignments: roleAssignmentsJSON(u.Assignments),
	}}
}

func attributesJSON(a meta.Attributes) Attributes {
	return Attributes{DeleteEnabled: a.DeleteEnabled, WriteEnabled: a.WriteEnabled, ReadEnabled: a.ReadEnabled, ListEnabled: a.ListEnabled}
}

// apply returns a with the patch's fields changed.
func (p AttributesPatch) apply(a meta.Attributes) meta.Attributes {
	set := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	set(&a.DeleteEnabled, p.DeleteEnabled)
	set(&a.WriteEnabled, p.WriteEnabled)
	set(&a.ReadEnabled, p.ReadEnabled)
	set(&a.ListEnabled, p.ListEnabled)
	return a
}

func (p AttributesPatch) empty() bool {
	return p.DeleteEnabled == nil && p.WriteEnabled == nil && p.ReadEnabled == nil && p.ListEnabled == nil
}

func manifestJSON(m meta.Manifest) ManifestMetadata {
	return ManifestMetadata{Digest: m.Digest, MediaType: m.MediaType, ArtifactType: m.ArtifactType, Subject: m.Subject,
		ImageSize: m.Size, CreatedTime: m.CreatedAt.UTC(), Annotations: m.Annotations, ChangeableAttributes: attributesJSON(m.Attributes),
		Platforms: m.Summary.Platforms}
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return optTime(*t)
}

// auditEvents keeps the audit package's JSON shape for the API.
type auditEvents = List[audit.Event]
