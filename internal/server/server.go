// Package server wires berth's parts into one HTTP server and runs it: TLS,
// timeouts that stop stalled clients without cutting slow uploads, and a
// graceful shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/publicurl"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/tokenauth"
	"github.com/berth-registry/berth/internal/ui"
)

// Server is a configured berth server.
type Server struct {
	gcMu    sync.Mutex
	metrics *metrics.Metrics
	// integrity counts damaged blobs and the scrub's work.
	integrity *metrics.Integrity
	fsckMu    sync.Mutex // one check at a time
	cfg       config.Config
	log       *slog.Logger
	blobs     contentStore
	// enc is the encrypting content store, when encryption is on (blobs
	// is then enc); rewrapNow starts its rewrap after a rotation.
	enc       *encryption.Blobs
	rewrapNow chan struct{}
	meta      *meta.Store
	audit     *audit.Log
	identity  *identity.Service
	urls      *publicurl.Resolver
	handler   http.Handler
	// adminHandler serves the management API and the portal on the admin
	// listener (AdminAddr); nil when they are served by handler.
	adminHandler http.Handler
	rules        *netrule.Service
	// limits applies the tokens' limits; limitSettings is its faces' side.
	limits        *ratelimit.Limiter
	limitSettings *ratelimit.Settings
	// writes remembers writes that failed on full or read-only storage.
	writes writeFailures
	// conns is the connection limiter of the listener being served.
	conns atomic.Pointer[connLimiter]
	// networkDenials counts requests the network rules refused; denials
	// folds their audit records.
	networkDenials atomic.Int64
	denials        *denialFolder

	// holder names this process in job leases; leaseRenewal is how often
	// they are renewed (0: a third of leaseTTL).
	holder       string
	leaseRenewal time.Duration
}

// Secrets are settings that never come from the configuration file.
type Secrets struct {
	// OwnerPassword is the first owner's password (BERTH_OWNER_PASSWORD).
	OwnerPassword string
}

// New opens the stores and builds the handler.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, secrets Secrets) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	md, err := openMeta(ctx, cfg)
	if err != nil {
		return nil, err
	}
	urls, err := publicurl.New(cfg.PublicURL, cfg.TrustedProxies)
	if err != nil {
		md.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, meta: md, urls: urls, metrics: metrics.New(), holder: newHolder(), rewrapNow: make(chan struct{}, 1)}
	s.integrity = s.metrics.NewIntegrity()
	redirect, err := s.openContent(ctx)
	if err != nil {
		md.Close()
		return nil, err
	}
	if err := s.openEncryption(ctx); err != nil {
		md.Close()
		return nil, err
	}
	if s.enc != nil && redirect != nil {
		md.Close()
		return nil, errors.New("storage redirect: the object store would send clients encrypted content; drop redirect from --storage or turn encryption off")
	}
	s.metrics.Gauge("berth_uploads_in_progress", "Upload sessions open in the content store.", func() float64 { return float64(s.blobs.ActiveUploads()) })
	s.metrics.Gauge("berth_connections_open", "Client connections held.", func() float64 {
		if l := s.conns.Load(); l != nil {
			n, _ := l.counts()
			return float64(n)
		}
		return 0
	})
	s.metrics.Gauge("berth_connections_max", "The bound on client connections held (maxConnections).", func() float64 {
		if l := s.conns.Load(); l != nil {
			return float64(l.max)
		}
		return 0
	})
	s.metrics.CounterFunc("berth_connections_shed_total", "Connections closed to make room at the bound.", func() float64 {
		if l := s.conns.Load(); l != nil {
			_, n := l.counts()
			return float64(n)
		}
		return 0
	})
	if err := audit.Migrate(ctx, md.Database()); err != nil {
		md.Close()
		return nil, err
	}
	s.audit = audit.Open(md.Database(), audit.Options{Logger: log, MaxAge: cfg.AuditRetention, MaxRecords: int64(cfg.AuditMaxRecords)})
	// The network rules' tables follow the identity tables (a trigger on
	// tokens), and the identity service carries their changes.
	err = identity.Migrate(ctx, md.Database())
	if err == nil {
		s.denials = newDenialFolder(s.audit.Record)
		s.rules, err = netrule.Open(ctx, md.Database(), netrule.Options{OnDenied: s.networkDenied})
	}
	if err != nil {
		s.audit.Close()
		md.Close()
		return nil, err
	}
	// The signature policies are kept in memory beside the identities and
	// change as they do, so that a pull reads no policy state from the
	// database and a change reaches every node by the identity feed.
	signatures, err := s.openTrust(ctx)
	if err != nil {
		s.audit.Close()
		md.Close()
		return nil, err
	}
	var wrapper identity.SecretWrapper
	if s.enc != nil {
		wrapper = s.enc.Keyring()
	}
	s.identity, err = identity.Open(ctx, md.Database(), identity.Options{
		Secrets:       wrapper,
		Extensions:    []identity.Extension{s.rules, signatures},
		RegistryName:  cfg.Name,
		OwnerUsername: cfg.OwnerUsername,
		OwnerPassword: secrets.OwnerPassword,
		AccessTTL:     cfg.AccessTokenTTL,
		RefreshTTL:    cfg.RefreshTokenTTL,
		Audit:         s.audit,
		Logger:        log,

		FederationAllowHTTPLoopback: cfg.FederationAllowHTTPLoopback,
	})
	if err != nil {
		s.audit.Close()
		md.Close()
		return nil, err
	}
	s.rules.Attach(s.identity)
	signatures.Attach(s.identity)
	s.metrics.CounterFunc("berth_network_denied_total", "Requests refused by the network rules (registry-wide or a token's allowed addresses).", func() float64 { return float64(s.networkDenials.Load()) })
	fed, err := federationVerifier(cfg, log)
	if err != nil {
		s.identity.Close()
		s.audit.Close()
		md.Close()
		return nil, err
	}
	if err := s.openLimits(ctx); err != nil {
		s.identity.Close()
		s.audit.Close()
		md.Close()
		return nil, err
	}
	// One limiter for every place a password is checked (token endpoint,
	// Basic on /v2/ and the API, portal sign-in).
	lcfg := auth.LimiterConfig{Threshold: cfg.LoginFailureThreshold}
	if db := sharedIf(md.Database()); db != nil {
		// Several nodes count failures together.
		lcfg.Store = identity.NewLimiterStore(db)
	}
	limiter := auth.NewLimiter(lcfg)
	tokens := tokenauth.New(tokenauth.Options{
		Identity:      s.identity,
		Audit:         s.audit,
		URLs:          urls,
		Logger:        log,
		AnonymousPull: cfg.AnonymousPull,
		Limiter:       limiter,
		ObserveAuth:   s.metrics.ObserveAuth,
		Network:       s.rules,
		Federation:    fed,
	})
	reg := registry.New(registry.Options{
		Blobs:        s.blobs,
		Redirect:     redirect,
		Meta:         md,
		Authorizer:   grantingAuthorizer{tokens.Authorizer()},
		Logger:       log,
		BaseURL:      cfg.PublicURL,
		OnEvent:      s.recordEvent,
		OnUnwritable: s.writes.record,
		// Slots held by sessions that never received bytes free up at the
		// next purge.
		UploadRetryAfter: min(s.purgeInterval(), time.Minute),
		OnDamage:         func(d storage.Damage) { s.integrity.Damaged(d.FoundBy) },
		Limiter:          s.limits,
		CheckPull:        checkPull(signatures),
	})

	mgmt, err := api.New(api.Options{
		Identity:      s.identity,
		Metadata:      md,
		Authenticator: grantingAuthenticator{tokens},
		Audit:         s.audit,
		Logger:        log,
		RetryAfter:    tokenauth.RetryAfter,
		GC:            s.collect,
		Fsck:          s.check,
		Encryption:    encryptionAPI{s},
		ClientIP:      urls.ClientIP,
		PublicURL:     urls.Base,
		Network:       s.rules,
		Limits:        s.limitSettings,
		Trust:         signatures,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	portal := named("portal", ui.New(ui.Options{
		Identity:  s.identity,
		Meta:      md,
		Audit:     s.audit,
		PublicURL: urls.Base,
		Logger:    log,
		// Behind a TLS-terminating proxy the public URL says https.
		Secure:   cfg.TLSCert != "" || strings.HasPrefix(cfg.PublicURL, "https://"),
		Limiter:  limiter,
		ClientIP: urls.ClientIP,
		// Several nodes on PostgreSQL share one portal.
		SharedSessions: sharedIf(md.Database()),
		Network:        s.rules,
		Limits:         s.limitSettings,
		Trust:          signatures,
	}))
	// Every listener answers the probes and the token endpoint (the CLI
	// logs in through it); the management API, the portal and the metrics
	// are served on the admin listener when there is one, else here.
	common := func() *http.ServeMux {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		})
		mux.HandleFunc("GET /readyz", s.ready)
		mux.Handle("/oauth2/token", named("token", tokens))
		return mux
	}
	management := func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", named("metrics", s.metrics.Handler()))
		mux.Handle(api.Prefix, mgmt)
		mux.Handle("/", portal)
	}
	mux := common()
	if cfg.AdminAddr == "" {
		management(mux)
	} else {
		mux.Handle("/", named("admin elsewhere", http.HandlerFunc(adminElsewhere)))
		admin := common()
		management(admin)
		s.adminHandler = bodyProgress(cfg.BodyIdleTimeout, reqlog.Middleware(log, func(i *reqlog.Info, method string, status int, in, out int64, d time.Duration) {
			s.metrics.ObserveRequest(i.Route, method, status, in, out, d)
		}, admin))
	}
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /v2/ skips the mux: the mux would "clean" a path with ".." by
		// redirecting, where a registry must answer NAME_INVALID.
		if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
			if r.URL.Path == "/v2" {
				r.URL.Path = "/v2/"
			}
			// Refused before anything else is looked at: a denied client
			// costs a binary search.
			if err := s.rules.CheckRegistry(r, urls.ClientIP(r)); err != nil {
				reqlog.From(r.Context()).Route = "network denied"
				registry.WriteError(w, networkRegistryError(err))
				return
			}
			reg.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	observe := func(i *reqlog.Info, method string, status int, in, out int64, d time.Duration) {
		s.metrics.ObserveRequest(i.Route, method, status, in, out, d)
	}
	s.handler = bodyProgress(cfg.BodyIdleTimeout, reqlog.Middleware(log, observe, root))
	return s, nil
}

// Handler returns the server's HTTP handler (for tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases the stores, after writing what is pending.
func (s *Server) Close() error {
	s.limits.Close()
	s.identity.Close()
	s.denials.close()
	s.audit.Close()
	return s.meta.Close()
}

// recordEvent writes a registry event to the audit log: a push or delete
// durably before the registry answers; a manifest pull, which changes
// nothing and comes in floods, within the log's batch window.
func (s *Server) recordEvent(e registry.Event) error {
	ev := audit.Event{Kind: e.Kind, Result: audit.ResultSuccess, Repository: e.Repository, Tag: e.Tag, Digest: e.Digest.String()}
	if id, ok := tokenauth.Identity(e.Caller); ok {
		ev.Identity, ev.IdentityKind = id.Name, id.Kind.String()
		if id.Bearer != nil {
			ev.Slot, ev.JwtID = id.Bearer.Slot, id.Bearer.ID
		}
	}
	if e.Request != nil {
		ev.UserAgent = e.Request.UserAgent()
		ev.CallerIP = s.urls.ClientIP(e.Request)
	}
	if e.Kind == registry.EventTrust {
		trustEvent(e, &ev)
	}
	if ev.Kind == audit.KindPull || ev.Kind == audit.KindTrust {
		s.audit.Record(ev)
		return nil
	}
	ctx := context.Background()
	if e.Request != nil {
		ctx = e.Request.Context()
	}
	return s.audit.Write(ctx, ev)
}

// Run serves until ctx is cancelled, then shuts down gracefully: it stops
// accepting connections and waits (up to ShutdownTimeout) for requests in
// flight.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	var admin net.Listener
	if s.cfg.AdminAddr != "" {
		if admin, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen on admin address %s: %w", s.cfg.AdminAddr, err)
		}
	}
	return s.ServeAdmin(ctx, ln, admin)
}

// Serve is Run on a given listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.ServeAdmin(ctx, ln, nil)
}

// ServeAdmin is Run on given listeners: ln for the registry, admin (with
// AdminAddr set) for the management API and the portal.
func (s *Server) ServeAdmin(ctx context.Context, ln, admin net.Listener) error {
	if (admin != nil) != (s.adminHandler != nil) {
		if admin != nil {
			admin.Close()
		}
		ln.Close()
		return errors.New("serve: an admin listener is needed exactly when the admin address is set")
	}
	maxConns := s.cfg.MaxConnections
	if maxConns == 0 {
		maxConns = defaultMaxConnections(openFileLimit())
	}
	main := s.newListener(ln, s.handler, maxConns)
	s.conns.Store(main.limited)
	served := []*served{main}
	if admin != nil {
		// Its own bound, of the same size: a flood on the registry's
		// address must not shut the operators out.
		served = append(served, s.newListener(admin, s.adminHandler, maxConns))
	}
	// Start-up (migrations, the first owner's argon2id hash) leaves garbage
	// that would otherwise stay resident until the scavenger gets to it.
	runtime.GC()
	debug.FreeOSMemory()
	go s.purgeUploads(ctx)
	go func() {
		if err := registry.FillPlatforms(ctx, s.blobs, s.meta); err != nil && ctx.Err() == nil {
			s.log.Warn("filling in the platforms of images stored before they were recorded", "err", err)
		}
	}()
	if s.cfg.GCInterval > 0 {
		go s.collectEvery(ctx, s.cfg.GCInterval)
	}
	if s.cfg.ScrubRate > 0 {
		go s.scrub(ctx)
	}
	if s.enc != nil {
		go s.encryptionJobs(ctx)
	}
	if s.cfg.DebugAddr != "" {
		if err := s.serveDebug(ctx); err != nil {
			return err
		}
	}

	errc := make(chan error, len(served))
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	for i, l := range served {
		if i == 0 {
			s.log.Info("serving", "addr", l.ln.Addr().String(), "scheme", scheme, "data", absPath(s.cfg.Data), "name", s.cfg.Name, "max_connections", maxConns)
		} else {
			s.log.Info("serving the management API and the portal", "addr", l.ln.Addr().String(), "scheme", scheme)
		}
		go func() {
			if s.cfg.TLSCert != "" {
				errc <- l.srv.ServeTLS(l.ln, s.cfg.TLSCert, s.cfg.TLSKey)
			} else {
				errc <- l.srv.Serve(l.ln)
			}
		}()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(served))
	for i, l := range served {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.shutdown(sctx)
		}()
	}
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// served is one listener being served, with its HTTP server.
type served struct {
	ln      net.Listener
	limited *connLimiter
	srv     *http.Server
	mu      sync.Mutex
	fresh   map[net.Conn]struct{}
}

// newListener prepares ln to serve h with the server's limits: timeouts,
// header size, TLS settings and a bound of maxConns connections.
func (s *Server) newListener(ln net.Listener, h http.Handler, maxConns int) *served {
	srv := &http.Server{
		Handler: h,
		// Headers must arrive promptly; bodies are policed by bodyProgress
		// instead of a whole-request timeout that would cut big uploads.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.TLSCert != "" {
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
			},
		}
	}
	limited := newConnLimiter(ln, maxConns, s.log)
	l := &served{ln: limited, limited: limited, srv: srv, fresh: map[net.Conn]struct{}{}}
	srv.ConnContext = connContext
	// Connections that never sent a request count as active for five
	// seconds in Shutdown; track them so shutdown can close them at once.
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		limited.setState(c, st)
		l.mu.Lock()
		defer l.mu.Unlock()
		if st == http.StateNew {
			l.fresh[c] = struct{}{}
		} else {
			delete(l.fresh, c)
		}
	}
	return l
}

// shutdown stops accepting connections and waits for requests in flight,
// closing at once the connections that never sent a request.
func (l *served) shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- l.srv.Shutdown(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			l.mu.Lock()
			for c := range l.fresh {
				c.Close()
				delete(l.fresh, c)
			}
			l.mu.Unlock()
		}
	}
}

// purgeInterval is how often expired upload sessions are removed: often
// enough that a session that received no bytes goes soon after
// UploadIdleTTL (or UploadTTL, if that is shorter).
func (s *Server) purgeInterval() time.Duration {
	return min(max(min(s.cfg.UploadIdleTTL, s.cfg.UploadTTL)/2, time.Second), time.Hour)
}

func (s *Server) purgeUploads(ctx context.Context) {
	t := time.NewTicker(s.purgeInterval())
	defer t.Stop()
	for {
		purge := func(context.Context) error {
			if n, err := s.blobs.PurgeUploads(s.cfg.UploadTTL, s.cfg.UploadIdleTTL); err != nil {
				s.log.Warn("purge uploads", "err", err)
			} else if n > 0 {
				s.log.Info("purged stale uploads", "count", n)
			}
			return nil
		}
		if s.cfg.Storage == "" {
			purge(ctx) // sessions under this node's data directory: its own to purge
		} else if err := s.underLease(ctx, "upload-purge", purge); err != nil && !errors.Is(err, errLeaseHeld) {
			s.log.Warn("purge uploads", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// defaultMaxConnections is the connection bound for an open-file limit:
// every connection may hold a file besides its socket (a blob being sent, an
// upload being written), and the database, its journal and the logs need a
// few more.
func defaultMaxConnections(limit uint64, known bool) int {
	const reserve = 64
	if !known {
		return 4096
	}
	limit = min(limit, 1<<22) // "unlimited"
	return max(16, (int(limit)-reserve)/2)
}

// grantingAuthorizer tells the connection limiter which connections serve
// registry requests that were granted. It embeds the concrete type so that
// every other method (optional interfaces the registry may look for) stays.
type grantingAuthorizer struct{ *tokenauth.Authorizer }

func (a grantingAuthorizer) Authorize(r *http.Request, need []registry.Access) (registry.Caller, error) {
	c, err := a.Authorizer.Authorize(r, need)
	if err == nil {
		granted(r.Context())
	}
	return c, err
}

// grantingAuthenticator does the same for the management API, which also
// asks its authenticator to check current passwords.
type grantingAuthenticator struct{ *tokenauth.Service }

func (a grantingAuthenticator) Authenticate(r *http.Request) (auth.Identity, error) {
	id, err := a.Service.Authenticate(r)
	if err == nil {
		granted(r.Context())
	}
	return id, err
}

// drainGrace is how long a connection whose request was answered before its
// declared body arrived may still deliver that body before it is closed: long
// enough for a client that is sending it to finish and read the answer, short
// enough that a client that never sends it cannot hold the connection.
const drainGrace = time.Second

// bodyProgress polices request bodies and, on HTTP/1.1, the client's reading
// of responses (progressWriter), and sets the headers every response of
// every face carries.
//
// A body that stalls for longer than idle drops the connection: the read
// deadline moves forward on every read, so a multi-gigabyte upload at modem
// speed is fine and a slow-loris client is not.
//
// A response written before the declared body was read (a refusal: 401, 403,
// 404, 416, 429 ...) goes out at once with Connection: close, and the
// connection then gets at most drainGrace (or idle, if shorter) to deliver the
// body. Without this, net/http reads up to 256 KiB of the unread body before it
// writes the response, and again after the handler returns, with no deadline:
// a client that declares a body and never sends it would never be answered
// and would hold its connection for good.
func bodyProgress(idle time.Duration, next http.Handler) http.Handler {
	grace := drainGrace
	if idle > 0 && idle < grace {
		grace = idle
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.ProtoMajor < 2 && idle > 0 {
			pw := newProgressWriter(w, idle)
			defer pw.finish()
			w = pw
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		b := &trackedBody{ReadCloser: r.Body, rc: rc, idle: idle, declared: r.ContentLength}
		r.Body = b
		if r.ProtoMajor >= 2 {
			// An HTTP/2 stream's unread body is reset, not drained, and
			// a "Connection: close" would end every other stream too.
			next.ServeHTTP(w, r)
			return
		}
		rw := &refusalWriter{ResponseWriter: w, body: b}
		next.ServeHTTP(rw, r)
		if !b.done() {
			if !rw.wrote {
				w.Header().Set("Connection", "close")
			}
			_ = rc.SetReadDeadline(time.Now().Add(grace))
		}
	})
}

// progressWriter drops a connection whose client stops reading the
// response for idle: the write deadline moves forward before every write,
// so a slow download goes on as long as it moves, and a client that asks for
// a blob and never reads it cannot hold its connection (one of the bounded
// slots, and the blob's file) for good. Without a deadline a write to such a
// client blocks forever.
type progressWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// progressChunk is how much of a body is handed to the connection per
// deadline: small enough that a moving download always meets it.
const progressChunk = 1 << 20

func newProgressWriter(w http.ResponseWriter, idle time.Duration) *progressWriter {
	pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
	// A deadline left by the connection's previous response must not cut
	// what net/http writes itself for this one (100 Continue).
	_ = pw.rc.SetWriteDeadline(time.Time{})
	return pw
}

func (w *progressWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.idle)) }

// finish gives what net/http still has to write once the handler returns
// (buffered data, the end of a chunked body) idle to go out.
func (w *progressWriter) finish() { w.extend() }

func (w *progressWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		w.extend()
		m, err := w.ResponseWriter.Write(p[:min(len(p), progressChunk)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// ReadFrom hands the body to the connection a chunk per deadline, keeping
// sendfile: a file (or a limit on one, as http.ServeContent passes) stays a
// single *io.LimitedReader over the file.
func (w *progressWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, src)
	}
	outer, limited := src.(*io.LimitedReader)
	inner := src
	if limited {
		inner = outer.R
	}
	var total int64
	for !limited || outer.N > 0 {
		chunk := int64(progressChunk)
		if limited {
			chunk = min(chunk, outer.N)
		}
		w.extend()
		n, err := rf.ReadFrom(&io.LimitedReader{R: inner, N: chunk})
		total += n
		if limited {
			outer.N -= n
		}
		if err != nil {
			return total, err
		}
		if n < chunk {
			break // the end of src
		}
	}
	return total, nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trackedBody is a request body that pushes the read deadline forward on
// every read and knows whether it was read to its end.
type trackedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	idle     time.Duration
	declared int64 // Content-Length, -1 if unknown (chunked)
	n        int64
	eof      bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	if b.idle > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// done reports whether nothing of the declared body is left unread.
func (b *trackedBody) done() bool {
	return b.eof || b.declared == 0 || (b.declared > 0 && b.n >= b.declared)
}

// refusalWriter marks a response written before its request's body was read
// as the connection's last, so that net/http sends it at once instead of
// first reading what is left of the body.
type refusalWriter struct {
	http.ResponseWriter
	body  *trackedBody
	wrote bool
}

func (w *refusalWriter) writing() {
	if w.wrote {
		return
	}
	w.wrote = true
	if !w.body.done() {
		w.Header().Set("Connection", "close")
	}
}

func (w *refusalWriter) WriteHeader(code int) {
	if code >= 200 {
		w.writing()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	w.writing()
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps sendfile working for blob downloads through the wrapper.
func (w *refusalWriter) ReadFrom(src io.Reader) (int64, error) {
	w.writing()
	return io.Copy(w.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the connection (deadlines, flush).
func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Identity returns the identity service (for tests and embedding).
func (s *Server) Identity() *identity.Service { return s.identity }

// Audit returns the audit log (for tests and embedding).
func (s *Server) Audit() *audit.Log { return s.audit }

// Metadata returns the metadata store (for tests and embedding).
func (s *Server) Metadata() *meta.Store { return s.meta }

// DataDir returns the data directory.
func (s *Server) DataDir() string { return s.cfg.Data }

// collect runs one garbage collection.
func (s *Server) collect(ctx context.Context, o gc.Options) (gc.Report, error) {
	s.gcMu.Lock() // one at a time
	defer s.gcMu.Unlock()
	blobs, ok := s.blobs.(gc.Blobs)
	if !ok {
		return gc.Report{}, errors.New("this content store cannot collect garbage")
	}
	// A lease, not only gcMu: nodes sharing a database must not collect at
	// once (one would delete blobs the other's re-check just spared).
	var r gc.Report
	err := s.underLease(ctx, "gc", func(ctx context.Context) error {
		var err error
		r, err = gc.Collect(ctx, s.meta, blobs, o)
		return err
	})
	if errors.Is(err, errLeaseHeld) {
		return r, newLeaseHeldError("garbage collection")
	}
	if err == nil && !o.DryRun {
		s.log.Info("garbage collected", "unlinked", len(r.UnlinkedBlobs), "deleted", len(r.DeletedBlobs), "freed_bytes", r.FreedBytes, "duration", r.Duration)
	}
	return r, err
}

// check runs one consistency check of the content store.
func (s *Server) check(ctx context.Context, o fsck.Options) (fsck.Report, error) {
	s.fsckMu.Lock() // one at a time: each reads the whole store
	defer s.fsckMu.Unlock()
	o.OnDamage = func(d storage.Damage) { s.integrity.Damaged(d.FoundBy) }
	r, err := fsck.Check(ctx, s.meta, s.blobs, o)
	for _, b := range r.DamagedBlobs {
		s.log.Error("damaged blob found by fsck", "digest", b.Digest, "size", b.Size, "expected_size", b.ExpectedSize,
			"actual_digest", b.ActualDigest, "quarantined", b.Quarantined, "repositories", b.Repositories)
	}
	if err == nil {
		s.log.Info("content checked", "blobs", r.BlobsChecked, "bytes", r.BytesChecked, "damaged", len(r.DamagedBlobs),
			"missing", len(r.MissingBlobs), "broken_manifests", len(r.BrokenManifests), "duration", r.Duration)
	}
	return r, err
}

// scrub verifies every blob, slowly and forever, from a minute after
// start-up (which has enough to do) until ctx ends.
func (s *Server) scrub(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	sc := &fsck.Scrubber{
		Store:    s.blobs,
		Rate:     int64(s.cfg.ScrubRate),
		Log:      s.log,
		OnDamage: func(d storage.Damage) { s.integrity.Damaged(d.FoundBy) },
		OnBytes:  s.integrity.Scrubbed,
		OnPass:   s.integrity.ScrubPass,
	}
	sc.Run(ctx)
}

// collectEvery runs garbage collection every interval until ctx ends.
func (s *Server) collectEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Another node collecting is no failure: that node does the work.
			if _, err := s.collect(ctx, gc.Options{}); err != nil && ctx.Err() == nil && !errors.Is(err, errLeaseHeld) {
				s.log.Warn("garbage collection failed", "err", err)
			}
		}
	}
}

// named labels a handler's requests with route for logs and metrics.
func named(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqlog.From(r.Context()).Route = route
		h.ServeHTTP(w, r)
	})
}

// serveDebug serves pprof and metrics on the debug address, which should be
// a loopback or otherwise private address: profiles reveal internals.
func (s *Server) serveDebug(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("listen on debug address %s: %w", s.cfg.DebugAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", s.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.log.Info("serving debug endpoints", "addr", ln.Addr().String())
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return nil
}

// sharedIf returns db if state kept in memory on one node must be shared
// through it instead (PostgreSQL, which several nodes share), else nil.
func sharedIf(db *sqldb.DB) *sqldb.DB {
	if db.Engine() == sqldb.Postgres {
		return db
	}
	return nil
}
