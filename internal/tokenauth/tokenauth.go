// Package tokenauth is the HTTP side of authentication: the Docker token
// endpoint (/oauth2/token), the registry's Authorizer (challenges, Basic and
// Bearer credentials on /v2/) and the Authenticator the management API uses.
// Who may do what is decided by package auth; who a credential belongs to,
// by package identity.
package tokenauth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/publicurl"
)

// Options configure a Service.
type Options struct {
	Identity *identity.Service
	Audit    *audit.Log
	URLs     *publicurl.Resolver
	Limiter  *auth.Limiter
	Logger   *slog.Logger
	// AnonymousPull lets callers without credentials pull (content/read) every repository.
	AnonymousPull bool
	Now           func() time.Time
	// ObserveAuth, when set, is told each authentication's kind (basic,
	// bearer, password, refresh, federated) and result (success, failure,
	// limited).
	ObserveAuth func(kind, result string)
	// Network, when set, refuses requests from addresses the network
	// rules do not allow.
	Network NetworkRules
	// Federation verifies the JWTs of federated logins; nil means one
	// with the defaults (https issuers only).
	Federation *federation.Verifier
}

// Service authenticates HTTP requests.
type Service struct {
	id      *identity.Service
	audit   *audit.Log
	urls    *publicurl.Resolver
	limiter *auth.Limiter
	log     *slog.Logger
	now     func() time.Time
	anon    *auth.Policy
	observe func(kind, result string)
	net     NetworkRules
	fed     *federation.Verifier

	// verified caches access tokens whose signature has been checked, so a
	// client reusing its token costs a map lookup, not an Ed25519 verify.
	// Claims are re-checked for expiry and resolved against current state
	// on every request; only the signature check is cached.
	verified     sync.Map // [32]byte → verifiedToken
	verifiedSize atomic.Int64

	// basicSeen throttles audit records of Basic logins on /v2/, which come
	// with every request of a client that does not use tokens.
	basicSeen     sync.Map // string → int64 unix seconds
	basicSeenSize atomic.Int64
}

const maxVerifiedCache = 50000

// New returns a Service.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Limiter == nil {
		o.Limiter = auth.NewLimiter(auth.LimiterConfig{Now: o.Now})
	}
	if o.ObserveAuth == nil {
		o.ObserveAuth = func(string, string) {}
	}
	if o.Federation == nil {
		o.Federation = federation.NewVerifier(federation.Options{Logger: o.Logger, Now: o.Now})
	}
	s := &Service{id: o.Identity, audit: o.Audit, urls: o.URLs, limiter: o.Limiter, log: o.Logger, now: o.Now, observe: o.ObserveAuth, net: o.Network, fed: o.Federation}
	if o.AnonymousPull {
		acts, _ := auth.RepositoryActions("*", "content/read")
		s.anon = auth.MustCompile(auth.ScopeMap{Name: "anonymous-pull", Type: auth.UserDefined, Actions: acts})
	}
	return s
}

// failure is why a request has no identity; it becomes a 401 or 429.
type failure struct {
	reason     string        // for the audit log
	message    string        // for the client
	retryAfter time.Duration // > 0: rate limited
	bearer     bool          // a bearer token was presented (error="invalid_token")
	// unavailable: credentials cannot be checked now (identity.ErrUnavailable);
	// answer 503 with Retry-After, never as if they were wrong.
	unavailable bool
}

func (f *failure) Error() string { return f.reason }

// Unwrap makes a failure for want of current identities match
// identity.ErrUnavailable.
func (f *failure) Unwrap() error {
	if f.unavailable {
		return identity.ErrUnavailable
	}
	return nil
}

// UnavailableRetryAfter is the Retry-After of an answer given because
// credentials cannot be checked now.
const UnavailableRetryAfter = time.Second

// unavailable is the failure of a credential check that identities being
// unconfirmed refused.
func unavailable(err error) *failure {
	return &failure{reason: "identities unavailable", message: err.Error(), unavailable: true}
}

// identify returns the caller's identity: anonymous when the request has no
// credentials, else the one its Basic or Bearer credentials name.
func (s *Service) identify(r *http.Request) (auth.Identity, *failure) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Identity{Kind: auth.KindAnonymous, Policy: s.anon}, nil
	}
	// A node that cannot confirm its identities are current checks no
	// credentials: a change made through another node may be missing.
	if err := s.id.Current(); err != nil {
		s.observe("identities", "unavailable")
		return auth.Identity{}, unavailable(err)
	}
	scheme, cred, _ := strings.Cut(h, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return auth.Identity{}, &failure{reason: "malformed basic credentials", message: "malformed Basic credentials"}
		}
		login, f := s.login(r, user, pass, false)
		if f != nil {
			return auth.Identity{}, f
		}
		return login.Identity, nil
	case "bearer":
		claims, err := s.verifyAccess(strings.TrimSpace(cred))
		if err != nil {
			s.observe("bearer", "failure")
			return auth.Identity{}, &failure{reason: err.Error(), message: "invalid access token: " + err.Error(), bearer: true}
		}
		if claims.Kind == auth.KindAnonymous {
			// Anonymous tokens name no identity to look up; they are good
			// while anonymous pull is on, and for what it allows.
			if s.anon == nil {
				return auth.Identity{}, &failure{reason: "anonymous access is off", message: "authentication required", bearer: true}
			}
			return auth.Identity{Kind: auth.KindAnonymous, Policy: s.anon, Bearer: claims}, nil
		}
		id, err := s.id.ResolveClaims(claims)
		if errors.Is(err, identity.ErrUnavailable) {
			return auth.Identity{}, unavailable(err)
		}
		if err != nil {
			s.observe("bearer", "failure")
			return auth.Identity{}, &failure{reason: err.Error(), message: "access token no longer valid: " + err.Error(), bearer: true}
		}
		s.observe("bearer", "success")
		return id, nil
	}
	return auth.Identity{}, &failure{reason: "unsupported authorization scheme", message: "unsupported Authorization scheme: use Basic or Bearer"}
}

// verifiedToken is a cached signature check: the claims, and the verifier
// (the set of signing keys) that checked them.
type verifiedToken struct {
	claims *auth.Claims
	by     *auth.Verifier
}

func (s *Service) verifyAccess(token string) (*auth.Claims, error) {
	key := sha256.Sum256([]byte(token))
	verifier := s.id.Verifier()
	if v, ok := s.verified.Load(key); ok {
		e := v.(verifiedToken)
		// Checked by the keys held now: a retired signing key's tokens
		// must not live on in the cache.
		if s.now().Unix() < e.claims.ExpiresAt && e.by == verifier {
			return e.claims, nil
		}
		s.verified.Delete(key)
		s.verifiedSize.Add(-1)
	}
	c, err := verifier.VerifyAccess(token)
	if err != nil {
		return nil, err
	}
	if s.verifiedSize.Add(1) > maxVerifiedCache {
		// Crude but bounded: start over rather than track recency.
		s.verified.Clear()
		s.verifiedSize.Store(1)
	}
	s.verified.Store(key, verifiedToken{claims: c, by: verifier})
	return c, nil
}

// login checks a username and password with brute-force protection and
// records the attempt. viaTokenEndpoint says whether this is a real login
// (always audited) or Basic credentials on /v2/ (audited once a minute).
func (s *Service) login(r *http.Request, user, pass string, viaTokenEndpoint bool) (identity.Login, *failure) {
	start := s.now()
	ip := s.urls.ClientIP(r)
	kind := "basic"
	if viaTokenEndpoint {
		kind = "password"
	}
	if len(user) > auth.MaxUsernameLength {
		s.observe(kind, "failure")
		return identity.Login{}, &failure{reason: "username too long", message: "invalid username or password"}
	}
	if err := s.id.Current(); err != nil {
		return identity.Login{}, unavailable(err)
	}
	if login, f, ok := s.passwordLogin(r, user, pass, viaTokenEndpoint); ok {
		return login, f
	}
	var login identity.Login
	err := s.limiter.AttemptVouched(user, ip, func() bool { return s.id.Remembered(user, pass) }, func() (err error) {
		login, err = s.id.Authenticate(user, pass)
		return err
	})
	if errors.Is(err, identity.ErrUnavailable) {
		return identity.Login{}, unavailable(err)
	}
	var limited *auth.LimitedError
	if errors.As(err, &limited) {
		wait := limited.RetryAfter
		s.observe(kind, "limited")
		s.recordLogin(r, user, "", "", audit.ResultFailure, "rate limited", start, "")
		return identity.Login{}, &failure{reason: "rate limited", message: "too many failed logins: retry in " + seconds(wait), retryAfter: wait}
	}
	if err != nil {
		var ae *identity.AuthError
		reason := err.Error()
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		s.observe(kind, "failure")
		s.recordLogin(r, user, "", "", audit.ResultFailure, reason, start, "")
		msg := "invalid username or password"
		// These reasons are only reached with the right password, so saying
		// them tells an attacker nothing and tells the owner what to fix.
		if strings.HasSuffix(reason, "disabled") || strings.HasSuffix(reason, "expired") {
			msg = reason
		}
		return identity.Login{}, &failure{reason: reason, message: msg}
	}
	s.observe(kind, "success")
	if viaTokenEndpoint || s.firstBasicThisMinute(user, login.Subject.Slot, ip) {
		s.recordLogin(r, user, login.Identity.Kind.String(), login.Subject.Slot, audit.ResultSuccess, "", start, "")
	}
	return login, nil
}

func (s *Service) firstBasicThisMinute(user, slot, ip string) bool {
	key := user + "\x00" + slot + "\x00" + ip
	now := s.now().Unix()
	if v, ok := s.basicSeen.Load(key); ok && now-v.(int64) < 60 {
		return false
	}
	if s.basicSeenSize.Add(1) > maxVerifiedCache {
		s.basicSeen.Clear() // bounded: at worst a few extra audit records
		s.basicSeenSize.Store(1)
	}
	s.basicSeen.Store(key, now)
	return true
}

func seconds(d time.Duration) string {
	if n := secondsCeil(d); n != 1 {
		return fmt.Sprintf("%d seconds", n)
	}
	return "1 second"
}

func secondsCeil(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func (s *Service) recordLogin(r *http.Request, user, kind, slot, result, reason string, start time.Time, jti string) {
	if s.audit == nil {
		return
	}
	s.audit.Record(audit.Event{Kind: audit.KindLogin, Result: result, Identity: user, IdentityKind: kind, Slot: slot,
		Reason: reason, CallerIP: s.urls.ClientIP(r), UserAgent: r.UserAgent(), JwtID: jti,
		DurationMs: s.now().Sub(start).Milliseconds()})
}

// CheckPassword checks a user's password as a login, through the limiter
// and into the audit log: the management API asks for the current password
// before users change their own, and that check must not be an unthrottled
// password oracle.
func (s *Service) CheckPassword(r *http.Request, user, password string) error {
	if _, f := s.login(r, user, password, true); f != nil {
		return f
	}
	return nil
}

// Authenticate implements the management API's authenticator: Basic or
// Bearer credentials, required.
func (s *Service) Authenticate(r *http.Request) (auth.Identity, error) {
	id, f := s.identify(r)
	if f != nil {
		return auth.Identity{}, f
	}
	if id.Kind == auth.KindAnonymous {
		return auth.Identity{}, errors.New("authentication required")
	}
	if err := s.tokenAddress(r, id); err != nil {
		return auth.Identity{}, err
	}
	if s.net != nil && id.Kind == auth.KindToken {
		// A token is a data-plane identity and its API routes (the
		// repositories') are data-plane operations: the registry-wide
		// rules fence them as they fence /v2/.
		if err := s.net.CheckRegistry(r, s.urls.ClientIP(r)); err != nil {
			return auth.Identity{}, err
		}
	}
	return id, nil
}

// RetryAfter reports how long a rate-limited caller must wait, if err is a
// rate-limit failure from Authenticate.
func RetryAfter(err error) (time.Duration, bool) {
	var f *failure
	if errors.As(err, &f) && f.retryAfter > 0 {
		return f.retryAfter, true
	}
	return 0, false
}
