// Package api serves berth's management REST API under /api/v1/: scope maps,
// tokens and their passwords, the admin user, users, repositories and the
// audit log. Resources have the shape of Azure Container Registry's ARM
// resources. The API is a thin face over the identity service, which checks
// management rights itself, and the repository service (package
// repository), which asks auth about each operation with the same
// operation table as the registry on /v2/ and the portal.
//
// The routes are listed in routes, and described in openapi.json, which is
// served at GET /api/v1/openapi.json.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/overview"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/repository"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/trust"
)

// Prefix is where the API lives; the server mounts the Handler there.
const Prefix = "/api/v1/"

// MaxBodySize bounds request bodies.
const MaxBodySize = 1 << 20

//go:embed openapi.json
var openAPIDocument []byte

// Authenticator identifies the caller of a request: Basic credentials of a
// user, or a Bearer access token from /oauth2/token. An error means the
// request is not authenticated; the API answers 401 (or 429, see
// Options.RetryAfter) and never shows the error's text to the client.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Identity, error)
}

// Metadata is what the API needs of the metadata store: what the
// repository service works on.
type Metadata = repository.Metadata

// AuditLog is what the API needs of the audit log.
type AuditLog interface {
	Record(e audit.Event)
	// Write returns once e is committed, for changes.
	Write(ctx context.Context, e audit.Event) error
	List(ctx context.Context, f audit.Filter) ([]audit.Event, error)
	// ListAll is List over every page, for exports.
	ListAll(ctx context.Context, f audit.Filter, max int) ([]audit.Event, error)
}

// Options configure a Handler.
type Options struct {
	Identity      *identity.Service // required
	Metadata      Metadata          // required
	Authenticator Authenticator     // required
	// Audit, when set, records repository changes and serves GET /api/v1/audit.
	Audit  AuditLog
	Logger *slog.Logger
	// RetryAfter, when set, tells a rate-limited authentication failure
	// apart: the API then answers 429 with Retry-After instead of 401.
	RetryAfter func(error) (time.Duration, bool)
	// ClientIP gives the caller's address for audit records; by default
	// the peer address.
	ClientIP func(*http.Request) string
	// GC, when set, serves POST /api/v1/gc.
	GC Collector
	// Fsck, when set, serves POST /api/v1/fsck.
	Fsck Checker
	// Encryption, when set, serves /api/v1/encryption.
	Encryption Encryption
	// PublicURL gives the registry's base URL for a request, which names
	// the token endpoint in the challenge of an access token that lacks a
	// scope; by default it is derived from the request's Host.
	PublicURL func(*http.Request) string
	// Network, when set, serves the network rules (/networkRuleSet, a
	// token's /allowedAddresses).
	Network NetworkRules
	// Limits, when set, serves the limits of tokens and scope maps.
	Limits *ratelimit.Settings
	// Trust, when set, serves /api/v1/trustPolicies.
	Trust *trust.Service
}

// Handler is the management API.
type Handler struct {
	ids        *identity.Service
	repos      *repository.Service
	authn      Authenticator
	audit      AuditLog
	log        *slog.Logger
	retryAfter func(error) (time.Duration, bool)
	clientIP   func(*http.Request) string
	gc         Collector
	fsck       Checker
	enc        Encryption
	publicURL  func(*http.Request) string
	network    NetworkRules
	limits     *ratelimit.Settings
	trust      *trust.Service
	overview   *overview.Service
	mux        *http.ServeMux
}

// New returns the API handler. Mount it at Prefix; it serves paths that
// start with it.
func New(o Options) (*Handler, error) {
	if o.Identity == nil || o.Metadata == nil || o.Authenticator == nil {
		return nil, errors.New("api: Identity, Metadata and Authenticator are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryAfter == nil {
		o.RetryAfter = func(error) (time.Duration, bool) { return 0, false }
	}
	if o.ClientIP == nil {
		o.ClientIP = peerIP
	}
	if o.PublicURL == nil {
		o.PublicURL = requestBase
	}
	var rec repository.AuditLog
	if o.Audit != nil {
		rec = o.Audit
	}
	h := &Handler{ids: o.Identity, repos: repository.New(o.Metadata, rec), authn: o.Authenticator, audit: o.Audit, log: o.Logger,
		retryAfter: o.RetryAfter, clientIP: o.ClientIP, gc: o.GC, fsck: o.Fsck, publicURL: o.PublicURL, network: o.Network, limits: o.Limits, trust: o.Trust, mux: http.NewServeMux()}
	h.enc = o.Encryption
	h.overview = newOverview(h, o.Metadata)
	h.mux.HandleFunc("GET "+Prefix+"openapi.json", serveOpenAPI)
	for _, rt := range h.allRoutes() {
		h.mux.Handle(rt.pattern, h.authenticated(rt))
	}
	return h, nil
}

// route is one entry of the route table: a ServeMux pattern, its handler
// and the credentials it accepts.
type route struct {
	pattern string
	handle  func(*call) error
	accepts credentials
}

// credentials says whether a route accepts access tokens issued for
// registry access.
type credentials int

const (
	// managementOnly routes take Basic credentials or an access token
	// issued without a scope: a token issued for registry access (a docker
	// pull, say) must not double as a management credential.
	managementOnly credentials = iota
	// registryScoped routes also take access tokens issued for registry
	// access, because the repository service checks each of their
	// operations against the token's access, as /v2/ does.
	registryScoped
)

// routes is the table of every authenticated route. Repository names
// contain '/', so every route below /repositories/ goes to one dispatcher
// per method, which splits the path at its "_tags" or "_manifests" segment
// (see repositoryRoutes).
func (h *Handler) routes() []route {
	return []route{
		{"GET /api/v1/scopeMaps", h.listScopeMaps, managementOnly},
		{"GET /api/v1/scopeMaps/{name}", h.getScopeMap, managementOnly},
		{"PUT /api/v1/scopeMaps/{name}", h.createScopeMap, managementOnly},
		{"PATCH /api/v1/scopeMaps/{name}", h.updateScopeMap, managementOnly},
		{"DELETE /api/v1/scopeMaps/{name}", h.deleteScopeMap, managementOnly},

		{"GET /api/v1/tokens", h.listTokens, managementOnly},
		{"GET /api/v1/tokens/{name}", h.getToken, managementOnly},
		{"PUT /api/v1/tokens/{name}", h.createToken, managementOnly},
		{"PATCH /api/v1/tokens/{name}", h.updateToken, managementOnly},
		{"DELETE /api/v1/tokens/{name}", h.deleteToken, managementOnly},
		{"DELETE /api/v1/tokens/{name}/passwords/{password}", h.deletePassword, managementOnly},
		{"POST /api/v1/generateCredentials", h.generateCredentials, managementOnly},
		{"GET /api/v1/tokens/{name}/federatedCredentials", h.listFederatedCredentials, managementOnly},
		{"GET /api/v1/tokens/{name}/federatedCredentials/{credential}", h.getFederatedCredential, managementOnly},
		{"PUT /api/v1/tokens/{name}/federatedCredentials/{credential}", h.createFederatedCredential, managementOnly},
		{"DELETE /api/v1/tokens/{name}/federatedCredentials/{credential}", h.deleteFederatedCredential, managementOnly},

		{"GET /api/v1/admin", h.getAdmin, managementOnly},
		{"PATCH /api/v1/admin", h.updateAdmin, managementOnly},
		{"POST /api/v1/admin/regenerateCredential", h.regenerateAdminCredential, managementOnly},
		{"GET /api/v1/signingKeys", h.listSigningKeys, managementOnly},
		{"POST /api/v1/signingKeys", h.rotateSigningKey, managementOnly},
		{"DELETE /api/v1/signingKeys/{kid}", h.retireSigningKey, managementOnly},

		{"GET /api/v1/tokens/{name}/limits", h.getTokenLimits, managementOnly},
		{"PATCH /api/v1/tokens/{name}/limits", h.updateTokenLimits, managementOnly},
		{"GET /api/v1/scopeMaps/{name}/limits", h.getScopeMapLimits, managementOnly},
		{"PATCH /api/v1/scopeMaps/{name}/limits", h.updateScopeMapLimits, managementOnly},

		{"GET /api/v1/users", h.listUsers, managementOnly},
		{"GET /api/v1/users/{name}", h.getUser, managementOnly},
		{"PUT /api/v1/users/{name}", h.createUser, managementOnly},
		{"PATCH /api/v1/users/{name}", h.updateUser, managementOnly},
		{"DELETE /api/v1/users/{name}", h.deleteUser, managementOnly},

		{"GET /api/v1/roleAssignments", h.listRoleAssignments, managementOnly},
		{"POST /api/v1/roleAssignments", h.createRoleAssignment, managementOnly},
		{"DELETE /api/v1/roleAssignments", h.deleteRoleAssignment, managementOnly},

		{"GET /api/v1/repositories", h.listRepositories, registryScoped},
		{"GET /api/v1/repositories/{path...}", h.repository, registryScoped},
		{"PATCH /api/v1/repositories/{path...}", h.repository, registryScoped},
		{"DELETE /api/v1/repositories/{path...}", h.repository, registryScoped},

		{"GET /api/v1/audit", h.listAudit, managementOnly},
		{"GET /api/v1/overview", h.getOverview, managementOnly},
		{"GET /api/v1/patternMatches", h.matchPattern, managementOnly},

		{"POST /api/v1/gc", h.collectGarbage, managementOnly},
		{"POST /api/v1/fsck", h.checkContent, managementOnly},

		{"GET /api/v1/encryption", h.encryptionStatus, managementOnly},
		{"POST /api/v1/encryption/rotateKey", h.rotateEncryptionKey, managementOnly},

		{"GET /api/v1/trustPolicies", h.listTrustPolicies, managementOnly},
		{"GET /api/v1/trustPolicies/{name}", h.getTrustPolicy, managementOnly},
		{"PUT /api/v1/trustPolicies/{name}", h.createTrustPolicy, managementOnly},
		{"PATCH /api/v1/trustPolicies/{name}", h.updateTrustPolicy, managementOnly},
		{"DELETE /api/v1/trustPolicies/{name}", h.deleteTrustPolicy, managementOnly},
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.notRouted(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// notRouted answers a request that matches no route, in the API's JSON
// error shape rather than the ServeMux's plain text: 404, or 405 with Allow
// when the path exists for other methods.
func (h *Handler) notRouted(w http.ResponseWriter, r *http.Request) {
	probe := &statusRecorder{header: http.Header{}}
	fallback, _ := h.mux.Handler(r)
	fallback.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeJSONError(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)})
		return
	}
	writeJSONError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("no such route: %s %s; the routes are listed at %sopenapi.json", r.Method, r.URL.Path, Prefix)})
}

// statusRecorder keeps the status and headers a fallback handler writes.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	w.Write(openAPIDocument)
}

// call is one authenticated request.
type call struct {
	w  http.ResponseWriter
	r  *http.Request
	id auth.Identity
}

func (c *call) ctx() context.Context { return c.r.Context() }

// authenticated wraps a route: it authenticates the caller, runs the route
// and writes its error, if any.
func (h *Handler) authenticated(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := reqlog.From(r.Context())
		info.Route = "api " + r.Pattern
		id, err := h.authn.Authenticate(r)
		if err != nil {
			h.unauthenticated(w, r, err)
			return
		}
		info.Identity = id.Name
		if id.Bearer != nil && len(id.Bearer.Access) > 0 && rt.accepts != registryScoped {
			h.writeError(w, r, forbidden("this access token was issued for registry access; for management, request one without a scope (or use Basic credentials)"))
			return
		}
		if err := rt.handle(&call{w: w, r: r, id: id}); err != nil {
			h.writeError(w, r, err)
		}
	})
}

func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, identity.ErrUnavailable) {
		// Never answered as if the credentials were wrong: they may be right.
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()})
		return
	}
	if networkDenied(w, err) {
		return
	}
	if wait, ok := h.retryAfter(err); ok {
		secs := int64((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		writeJSONError(w, &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyRequests,
			Message: fmt.Sprintf("too many failed logins: retry in %d seconds", secs)})
		return
	}
	msg := "authentication required: send a user's Basic credentials, or a Bearer access token from /oauth2/token"
	if r.Header.Get("Authorization") != "" {
		msg = "invalid credentials: the username, password or access token is wrong, disabled or expired"
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
	writeJSONError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: msg})
}

// Error codes of the API's error body.
const (
	CodeBadRequest       = "BadRequest"
	CodeUnauthorized     = "Unauthorized"
	CodeForbidden        = "Forbidden"
	CodeNotFound         = "NotFound"
	CodeMethodNotAllowed = "MethodNotAllowed"
	CodeConflict         = "Conflict"
	CodeInUse            = "InUse"
	CodeTooLarge         = "RequestTooLarge"
	CodeTooManyRequests  = "TooManyRequests"
	CodeInternal         = "InternalError"
	CodeStorage          = "InsufficientStorage"
	CodeUnavailable      = "ServiceUnavailable"
)

// Error is an API error with its HTTP status.
type Error struct {
	Status  int
	Code    string
	Message string
	Header  http.Header // sent with the answer, if set
}

func (e *Error) Error() string { return e.Message }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: fmt.Sprintf(format, args...)}
}

// toAPIError maps the errors of the layers below to API errors: identity's
// kinds, meta's not-found and locked errors, and denied access decisions.
// Anything else is an internal error.
func toAPIError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var denied *auth.DeniedError
	var catalog *repository.CatalogDeniedError
	var locked *meta.LockedError
	switch {
	case errors.As(err, &denied):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: denied.Error()}
	case errors.As(err, &catalog):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: catalog.Error()}
	case errors.Is(err, identity.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, identity.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, identity.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, identity.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error()}
	case errors.Is(err, identity.ErrInUse):
		return &Error{Status: http.StatusConflict, Code: CodeInUse, Message: err.Error()}
	case errors.As(err, &locked):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: locked.Error() + ": unlock it first"}
	case errors.Is(err, meta.ErrRepositoryNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "repository not found"}
	case errors.Is(err, meta.ErrManifestNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "manifest not found"}
	case errors.Is(err, meta.ErrTagNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "tag not found"}
	}
	return nil
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := h.insufficientScope(r, err)
	if e == nil {
		e = toAPIError(err)
	}
	if e == nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		h.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; the server log has the details"}
		switch cause := meta.Unwritable(err); {
		case errors.Is(cause, meta.ErrNoSpace):
			e = &Error{Status: http.StatusInsufficientStorage, Code: CodeStorage, Message: "the registry's database is full: nothing can be changed until space is freed"}
		case errors.Is(cause, meta.ErrReadOnly):
			e = &Error{Status: http.StatusInsufficientStorage, Code: CodeStorage, Message: "the registry's database is read-only: nothing can be changed until it is writable again"}
		}
	}
	writeJSONError(w, e)
}

// insufficientScope answers a refusal whose only cause is that the access
// token lacks a scope its identity would be granted as on /v2/: 401 with the
// Bearer challenge that names the scope to ask for and
// error="insufficient_scope", so that a client fetches a token with that
// scope instead of taking the refusal for a denial (403), which is only for
// what the identity itself may not do. Anything else gives nil.
func (h *Handler) insufficientScope(r *http.Request, err error) *Error {
	var denied *auth.DeniedError
	var catalog *repository.CatalogDeniedError
	var scope string
	switch {
	case errors.As(err, &denied) && denied.Identity.Bearer != nil && denied.Missing != auth.NoActions:
		policy := denied.Identity
		policy.Bearer = nil
		allowed := auth.Allowed(policy, denied.Repository)
		if !allowed.Has(denied.Missing) && (denied.Or == auth.NoActions || !allowed.Has(denied.Or)) {
			return nil
		}
		scope = "repository:" + denied.Repository + ":" + strings.Join((denied.Missing|denied.Or).TokenNames(), ",")
	case errors.As(err, &catalog) && catalog.Identity.Bearer != nil:
		policy := catalog.Identity
		policy.Bearer = nil
		if !auth.CanListCatalog(policy) {
			return nil
		}
		scope = "registry:catalog:*"
	default:
		return nil
	}
	challenge := fmt.Sprintf(`Bearer realm=%q,service=%q,scope=%q,error="insufficient_scope"`,
		h.publicURL(r)+"/oauth2/token", h.ids.RegistryName(), scope)
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Message: "the access token lacks the scope this request needs: request a token for " + scope,
		Header:  http.Header{"Www-Authenticate": {challenge}}}
}

// requestBase is the base URL a request was sent to, as far as the request
// tells.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeJSONError(w http.ResponseWriter, e *Error) {
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	writeJSON(w, e.Status, ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

func (c *call) ok(v any) error      { return writeJSON(c.w, http.StatusOK, v) }
func (c *call) created(v any) error { return writeJSON(c.w, http.StatusCreated, v) }

func (c *call) noContent() error {
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// decode reads the JSON request body into v: at most MaxBodySize bytes, one
// JSON value, no fields that v does not have.
func (c *call) decode(v any) error {
	body := http.MaxBytesReader(c.w, c.r.Body, MaxBodySize)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return badRequest("request body: unexpected data after the JSON object; send exactly one object")
	}
	return nil
}

func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var badTime *time.ParseError
	switch {
	case errors.As(err, &tooBig):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is not valid JSON: it ends too early")
	case errors.As(err, &syntax):
		return badRequest("request body is not valid JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &badTime):
		return badRequest("request body: invalid time %q: use RFC 3339, as in 2030-12-31T00:00:00Z", badTime.Value)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return badRequest("request body must be a JSON object, not a %s", typ.Value)
		}
		return badRequest("request body: field %q must be %s, not a %s", field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest("request body: unknown field %s; the fields of each route are in %sopenapi.json", f, Prefix)
	}
	return badRequest("request body: %v", err)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a number"
}

// resourceName takes a name from an id such as "/scopeMaps/NAME" (or a full
// ARM id ending so), or a bare name.
func resourceName(kind, field, s string) (string, error) {
	if i := strings.LastIndex(s, "/"+kind+"/"); i >= 0 {
		s = s[i+len(kind)+2:]
	}
	if s == "" || strings.Contains(s, "/") {
		return "", badRequest("invalid %s %q: use \"/%s/NAME\" or a bare name", field, s, kind)
	}
	return s, nil
}

// record writes an audit event about a change made through the API, and
// returns once it is committed, before the change is acknowledged.
func (h *Handler) record(c *call, e audit.Event) {
	if h.audit == nil {
		return
	}
	e.Result = audit.ResultSuccess
	e.Identity, e.IdentityKind = c.id.Name, c.id.Kind.String()
	e.CallerIP, e.UserAgent = h.clientIP(c.r), c.r.UserAgent()
	if c.id.Bearer != nil {
		e.Slot, e.JwtID = c.id.Bearer.Slot, c.id.Bearer.ID
	}
	if err := h.audit.Write(c.ctx(), e); err != nil {
		h.log.Error("audit record of a change", "err", err, "kind", e.Kind, "target", e.Target)
	}
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
