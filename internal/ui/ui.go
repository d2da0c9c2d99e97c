// Package ui is berth's web portal: the pages of the ACR portal's
// "Repository permissions" over the same service layer as the REST API and
// the CLI. It serves HTML rendered on the server with html/template, a
// style sheet and a small script, all embedded in the binary; every read
// page works without JavaScript.
//
// Only users sign in (tokens and the admin user are data-plane
// credentials). Sessions live in memory, keyed by the SHA-256 of a random
// 256-bit ID; every form carries a per-session CSRF token and every POST is
// also checked for a cross-origin request. What a user may see and change
// is decided by the identity service (management rights by role) and by
// the repository service (repositories, with auth's operation table), the
// same services the REST API calls; pages hide the forms a user may not
// use, and the services refuse them anyway.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/overview"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/repository"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/trust"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Metadata is what the portal needs of the metadata store
// (*meta.Store has it): what the repository service works on.
type Metadata = repository.Metadata

// Options configure the portal. Identity and Meta are required.
type Options struct {
	Identity *identity.Service
	Meta     Metadata
	// Audit records sign-ins and repository changes and serves the audit
	// page; nil leaves both out.
	Audit *audit.Log
	// PublicURL gives the base URL clients use ("https://registry.example"),
	// for the docker login and pull commands the pages show. Nil derives
	// it from the request.
	PublicURL func(*http.Request) string
	Logger    *slog.Logger
	// Secure marks cookies Secure (and names the session cookie with the
	// __Host- prefix): set it when berth serves TLS or sits behind a proxy
	// that does.
	Secure bool

	// Limiter slows down password guessing at sign-in; nil gives the
	// portal a limiter of its own. Pass the token endpoint's to count
	// failures across both.
	Limiter *auth.Limiter
	// SessionTTL bounds a session's life from sign-in (12h by default);
	// IdleTimeout ends it after that long without a request (1h).
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ClientIP gives the caller's address for the sign-in limiter and
	// audit records; nil means the peer address.
	ClientIP func(*http.Request) string
	// SharedSessions, when set, keeps sessions (and their CSRF tokens and
	// form nonces) in that database, so that several nodes serve one
	// portal; nil keeps them in memory, for a single node.
	SharedSessions *sqldb.DB
	// Network, when set, serves the network page and the allowed
	// addresses on tokens' pages.
	Network NetworkRules
	// Limits, when set, shows and changes tokens' limits on their pages.
	Limits *ratelimit.Settings
	// Trust, when set, serves the signature policies page (/trust).
	Trust *trust.Service
}

// Handler is the portal. Mount it at "/": it serves every path the
// registry, the token endpoint, the API and the health checks do not.
type Handler struct {
	clientIP  func(*http.Request) string
	ids       *identity.Service
	repos     *repository.Service
	audit     *audit.Log
	publicURL func(*http.Request) string
	log       *slog.Logger
	secure    bool
	limiter   *auth.Limiter
	now       func() time.Time
	sessions  *sessions
	pages     map[string]*pageTemplate
	overview  *overview.Service
	static    fs.FS
	version   string // of the static files, for cache busting
	cop       *http.CrossOriginProtection
	mux       *http.ServeMux
	limits    *ratelimit.Settings
	network   NetworkRules
	trust     *trust.Service
}

// New returns the portal handler. It panics if Identity or Meta is nil, or
// if an embedded template does not parse: both are programming errors.
func New(o Options) *Handler {
	if o.Identity == nil || o.Meta == nil {
		panic("ui: Options.Identity and Options.Meta are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PublicURL == nil {
		o.PublicURL = requestBase
	}
	if o.Limiter == nil {
		o.Limiter = auth.NewLimiter(auth.LimiterConfig{Now: o.Now})
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Hour
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	if o.ClientIP == nil {
		o.ClientIP = peerIP
	}
	var rec repository.AuditLog
	if o.Audit != nil {
		rec = o.Audit
	}
	h := &Handler{
		clientIP: o.ClientIP,
		ids:      o.Identity, repos: repository.New(o.Meta, rec), audit: o.Audit, publicURL: o.PublicURL, log: o.Logger,
		secure: o.Secure, limiter: o.Limiter, now: o.Now,
		sessions: newSessions(o.SessionTTL, o.IdleTimeout, o.Now),
		static:   static,
		version:  staticVersion(static),
		cop:      http.NewCrossOriginProtection(),
		mux:      http.NewServeMux(),
		limits:   o.Limits,
		network:  o.Network,
		trust:    o.Trust,
	}
	if o.SharedSessions != nil {
		h.sessions.shared = &sharedSessions{db: o.SharedSessions, log: o.Logger}
	}
	h.overview = &overview.Service{IDs: o.Identity, Repos: h.repos}
	if st, ok := o.Meta.(overview.Storage); ok {
		h.overview.Store = st
	}
	if o.Audit != nil {
		h.overview.Audit = o.Audit
	}
	h.pages = mustParsePages()
	h.routes()
	return h
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /{$}", h.home)
	m.HandleFunc("GET /signin", h.signinPage)
	m.HandleFunc("POST /signin", h.signin)
	m.HandleFunc("POST /signout", h.action(h.signout))
	m.HandleFunc("GET /account", h.page(h.accountPage))
	m.HandleFunc("POST /account", h.action(h.accountPassword))

	m.HandleFunc("GET /overview", h.page(h.overviewPage))
	m.HandleFunc("GET /repositories", h.page(h.repositoriesPage))
	m.HandleFunc("GET /repositories/{path...}", h.page(h.repositoryRoute))
	m.HandleFunc("POST /repositories/{path...}", h.action(h.repositoryAction))

	m.HandleFunc("GET /scope-maps", h.page(h.scopeMapsPage))
	m.HandleFunc("GET /repository-suggestions", h.page(h.repositorySuggestions))
	m.HandleFunc("GET /repository-matches", h.page(h.repositoryMatches))
	m.HandleFunc("GET /scope-maps/new", h.page(h.newScopeMapPage))
	m.HandleFunc("POST /scope-maps", h.action(h.createScopeMap))
	m.HandleFunc("GET /scope-maps/{name}", h.page(h.scopeMapPage))
	m.HandleFunc("POST /scope-maps/{name}", h.action(h.updateScopeMap))
	m.HandleFunc("GET /scope-maps/{name}/delete", h.page(h.deleteScopeMapPage))
	m.HandleFunc("POST /scope-maps/{name}/delete", h.action(h.deleteScopeMap))

	m.HandleFunc("GET /tokens", h.page(h.tokensPage))
	m.HandleFunc("GET /tokens/new", h.page(h.newTokenPage))
	m.HandleFunc("POST /tokens", h.action(h.createToken))
	m.HandleFunc("GET /tokens/{name}", h.page(h.tokenPage))
	m.HandleFunc("POST /tokens/{name}", h.action(h.tokenAction))
	m.HandleFunc("GET /tokens/{name}/delete", h.page(h.deleteTokenPage))
	m.HandleFunc("POST /tokens/{name}/delete", h.action(h.deleteToken))
	m.HandleFunc("POST /tokens/{name}/limits", h.action(h.updateTokenLimits))

	m.HandleFunc("GET /access-keys", h.page(h.accessKeysPage))
	m.HandleFunc("POST /access-keys", h.action(h.accessKeysAction))

	m.HandleFunc("GET /users", h.page(h.usersPage))
	m.HandleFunc("POST /users", h.action(h.createUser))
	m.HandleFunc("GET /users/{name}", h.page(h.userPage))
	m.HandleFunc("POST /users/{name}", h.action(h.userAction))
	m.HandleFunc("POST /users/{name}/assignments", h.action(h.userAssignment))
	m.HandleFunc("GET /users/{name}/delete", h.page(h.deleteUserPage))
	m.HandleFunc("POST /users/{name}/delete", h.action(h.deleteUser))

	m.HandleFunc("GET /audit", h.page(h.auditPage))
	m.HandleFunc("GET /audit/export", h.page(h.auditExport))
	h.networkRoutes()
	h.federationRoutes()

	m.HandleFunc("GET /trust", h.page(h.trustPage))
	m.HandleFunc("POST /trust", h.action(h.createTrustPolicy))
	m.HandleFunc("POST /trust/{name}", h.action(h.trustPolicyAction))

	m.HandleFunc("GET /static/{file}", h.serveStatic)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg?v="+h.version, http.StatusMovedPermanently)
	})
	m.HandleFunc("/", h.notFound)
}

// csp allows nothing but the portal's own style sheet, script and images:
// no inline script or style, no framing, forms only to the portal.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/overview", http.StatusSeeOther)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	rq, _ := h.currentRequest(w, r)
	h.renderError(w, r, rq, http.StatusNotFound, "Page not found", "There is no page at "+r.URL.Path+".")
}

// serveStatic serves the embedded style sheet, script and icon. The pages
// link them with ?v=<hash of the files>, so they may be cached for long.
func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(h.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if r.URL.Query().Get("v") == h.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(b)
}

func staticVersion(fsys fs.FS) string {
	sum := sha256.New()
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum.Write([]byte(p))
		sum.Write(b)
		return nil
	})
	return hex.EncodeToString(sum.Sum(nil))[:12]
}

// requestBase is the base URL of r as the client addressed it.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// registryHost is the host[:port] clients put in image references and in
// docker login, from the public URL.
func (h *Handler) registryHost(r *http.Request) string {
	base := h.publicURL(r)
	if i := strings.Index(base, "://"); i >= 0 {
		base = base[i+3:]
	}
	return strings.TrimSuffix(base, "/")
}
