package tokenauth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/reqlog"
)

// Authorizer adapts the Service to the registry: it authenticates each /v2/
// request and asks auth about the operation of every access the route
// needs (auth.Permits, with the one operation table).
type Authorizer struct{ s *Service }

// Authorizer returns the registry's authorizer.
func (s *Service) Authorizer() *Authorizer { return &Authorizer{s} }

// caller is an identity as the registry asks about it after the route's
// own accesses were granted.
type caller struct {
	id auth.Identity
	s  *Service // records denials of tag rules; nil in callers made only for names
}

// policy is the identity without the access-token narrowing: the mount
// source check and the catalog filter ask what the identity may do now,
// under its current scope map, not what one access token happened to be
// scoped to (a client asks for a token per operation and cannot know which
// repositories a catalog listing will contain).
func (c caller) policy() auth.Identity {
	id := c.id
	id.Bearer = nil
	return id
}

func (c caller) Name() string {
	if c.id.Kind == auth.KindAnonymous {
		return "anonymous"
	}
	return c.id.Name
}

func (c caller) Can(repo string, op auth.Operation) bool {
	return auth.Permits(c.policy(), repo, op)
}

func (c caller) CanSee(repo string) bool { return auth.VisibleInCatalog(c.id, repo) }

// Identity is the caller's auth identity, for auth's messages.
func (c caller) Identity() auth.Identity { return c.id }

// RecordDenial records a request the registry refused by a tag rule
// (auth.CheckTag) in the audit log, as Authorize records its own.
func (c caller) RecordDenial(r *http.Request, err error) {
	if c.s == nil {
		return
	}
	var d *auth.DeniedError
	if !errors.As(err, &d) {
		return
	}
	missing := d.Missing.String()
	if d.Tag != "" {
		missing += " on tag " + d.Tag
	} else if d.Digest != "" {
		missing = d.Op.String() + " of " + d.Digest
	}
	c.s.recordDenial(r, c.id, d.Repository, d.Op.String(), missing)
}

func (c caller) TagCheck(repo string, op auth.Operation) func(string) error {
	return auth.TagCheck(c.id, repo, op)
}

func (c caller) CatalogTagFilter(repo string) func(string) bool {
	return auth.CatalogTagFilter(c.id, repo)
}

// Identity returns the auth identity behind a registry caller, for the audit log.
func Identity(c registry.Caller) (auth.Identity, bool) {
	cc, ok := c.(caller)
	return cc.id, ok
}

// Authorize implements registry.Authorizer.
func (a *Authorizer) Authorize(r *http.Request, need []registry.Access) (registry.Caller, error) {
	s := a.s
	id, f := s.identify(r)
	if f != nil {
		return nil, s.unauthorized(r, need, f)
	}
	reqlog.From(r.Context()).Identity = caller{id: id}.Name()
	if err := s.tokenAddress(r, id); err != nil {
		return nil, networkError(err)
	}
	if id.Kind == auth.KindAnonymous && (len(need) == 0 || !a.allows(id, need)) {
		// Without credentials, a refusal is a request to authenticate.
		return nil, s.unauthorized(r, need, nil)
	}
	// An access token is narrower than its identity. When it lacks what
	// the identity would be granted, the answer is 401 insufficient_scope
	// with the scope to ask for, as the token spec says, so that clients
	// that asked for too little (podman asks for none before listing the
	// catalog) fetch a new token and retry; 403 is only for what the
	// identity itself may not do.
	policy := caller{id: id}.policy()
	for _, acc := range need {
		switch acc.Type {
		case "registry":
			if auth.CanListCatalog(id) {
				continue
			}
			if auth.CanListCatalog(policy) {
				return nil, s.insufficientScope(r, need)
			}
			s.recordDenial(r, id, "", "catalog", "")
			return nil, &registry.Error{Code: registry.CodeDenied,
				Message: fmt.Sprintf("%s may not list the catalog", id)}
		default:
			if permitted(id, acc) {
				continue
			}
			if id.Bearer != nil && permitted(policy, acc) {
				return nil, s.insufficientScope(r, need)
			}
			if err := auth.CheckOperation(policy, acc.Name, acc.Op); err != nil {
				missing := ""
				var denied *auth.DeniedError
				if errors.As(err, &denied) {
					missing = denied.Missing.String()
					if denied.Or != auth.NoActions {
						missing += " (or " + denied.Or.String() + ")"
					}
				}
				s.recordDenial(r, id, acc.Name, string(acc.Action), missing)
				return nil, &registry.Error{Code: registry.CodeDenied, Message: "requested access to the resource is denied: " + err.Error(),
					Detail: []map[string]string{{"Type": "repository", "Name": acc.Name, "Action": string(acc.Action)}}}
			}
			// Not reached (Permits and CheckOperation agree); fail closed all the same.
			return nil, &registry.Error{Code: registry.CodeDenied}
		}
	}
	return caller{id: id, s: s}, nil
}

func (a *Authorizer) allows(id auth.Identity, need []registry.Access) bool {
	for _, acc := range need {
		if acc.Type != "repository" || !permitted(id, acc) {
			return false
		}
	}
	return true
}

// permitted reports whether id may perform the operation of the repository
// access acc.
func permitted(id auth.Identity, acc registry.Access) bool {
	return auth.Permits(id, acc.Name, acc.Op)
}

// unauthorized builds the 401 (or 429) with the Bearer challenge that
// sends clients to the token endpoint.
func (s *Service) unauthorized(r *http.Request, need []registry.Access, f *failure) error {
	if f != nil && f.unavailable {
		return &registry.Error{Code: registry.CodeUnavailable, Message: f.message,
			Header: http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(UnavailableRetryAfter), 10)}}}
	}
	if f != nil && f.retryAfter > 0 {
		return &registry.Error{Code: registry.CodeTooManyRequests, Message: f.message,
			Header: http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(f.retryAfter), 10)}}}
	}
	msg := "authentication required"
	if f != nil {
		msg = f.message
	}
	return &registry.Error{Code: registry.CodeUnauthorized, Message: msg,
		Header: http.Header{"Www-Authenticate": {s.challenge(r, need, f)}}}
}

// insufficientScope is the 401 for an access token that lacks a scope its
// identity would be granted: the challenge names the scope to ask for.
func (s *Service) insufficientScope(r *http.Request, need []registry.Access) error {
	sc := challengeScope(need)
	return &registry.Error{Code: registry.CodeUnauthorized,
		Message: "the access token lacks the scope this request needs: request a token for " + sc,
		Header:  http.Header{"Www-Authenticate": {s.challenge(r, need, nil) + `,error="insufficient_scope"`}}}
}

// challenge is the WWW-Authenticate value for a request needing need.
func (s *Service) challenge(r *http.Request, need []registry.Access, f *failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, `Bearer realm=%q,service=%q`, s.urls.Base(r)+"/oauth2/token", s.id.RegistryName())
	if sc := challengeScope(need); sc != "" {
		fmt.Fprintf(&b, `,scope=%q`, sc)
	}
	if f != nil && f.bearer {
		b.WriteString(`,error="invalid_token"`)
	}
	return b.String()
}

// challengeScope names what the route needs, as clients expect: pushing
// also asks for pull, because clients check for existing blobs; listing tags
// asks for pull, which the token endpoint widens to metadata_read where the
// identity has it, because clients (and the OCI conformance suite) reuse one
// token for every read of a repository.
func challengeScope(need []registry.Access) string {
	var parts []string
	for _, acc := range need {
		if acc.Type == "registry" {
			parts = append(parts, "registry:catalog:*")
			continue
		}
		actions := []string{string(acc.Action)}
		switch acc.Action {
		case registry.ActionPush:
			actions = []string{"pull", "push"}
		case registry.ActionMetadataRead:
			actions = []string{"pull"}
		}
		if acc.Or != "" && !slices.Contains(actions, string(acc.Or)) {
			actions = append(actions, string(acc.Or))
		}
		parts = append(parts, "repository:"+acc.Name+":"+strings.Join(actions, ","))
	}
	return strings.Join(parts, " ")
}

// recordDenial puts a request the access decision refused into the audit
// log, so that an owner can answer "why was this token refused?". It only
// queues the record: identical denials within audit.FoldWindow become one
// record with a count, so a flood of refused requests costs a row a
// minute per source, and retention bounds the rest.
func (s *Service) recordDenial(r *http.Request, id auth.Identity, repo, action, missing string) {
	if s.audit == nil {
		return
	}
	e := audit.Event{Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: caller{id: id}.Name(), IdentityKind: id.Kind.String(),
		Repository: repo, Action: action, Missing: missing, Reason: "denied",
		CallerIP: s.urls.ClientIP(r), UserAgent: r.UserAgent()}
	if id.Kind == auth.KindAnonymous {
		e.Identity = ""
	}
	s.audit.Record(e)
}
