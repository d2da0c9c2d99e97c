package federation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxJWTSize bounds a JWT presented for a federated login; real ones are
// one or two KiB.
const MaxJWTSize = 16 << 10

// Defaults of Options.
const (
	DefaultSkew        = 30 * time.Second
	DefaultMaxLifetime = 24 * time.Hour
)

// Options configure a Verifier.
type Options struct {
	// AllowHTTPLoopback allows http:// issuers on loopback addresses
	// (tests); otherwise issuers must be https.
	AllowHTTPLoopback bool
	// RootCAs are the CAs that issuers' certificates may chain to; nil
	// means the system's.
	RootCAs *x509.CertPool
	// MaxLifetime is the longest lifetime (exp - iat) a JWT may have;
	// DefaultMaxLifetime if zero.
	MaxLifetime time.Duration
	// Skew is the clock skew tolerated on exp, nbf and iat; DefaultSkew if
	// zero.
	Skew time.Duration
	// CacheTTL is how long fetched keys are used before they are fetched
	// again; an hour if zero.
	CacheTTL time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Verifier checks JWTs against federated credentials. It is safe for
// concurrent use; one serves the whole process, so that every login with
// an issuer shares its cached keys.
type Verifier struct {
	allowHTTP   bool
	maxLifetime time.Duration
	skew        time.Duration
	cacheTTL    time.Duration
	log         *slog.Logger
	now         func() time.Time
	client      *http.Client

	mu      sync.Mutex
	issuers map[string]*issuerKeys
	inline  map[[32]byte]*keySet
}

// NewVerifier returns a Verifier.
func NewVerifier(o Options) *Verifier {
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = DefaultMaxLifetime
	}
	if o.Skew <= 0 {
		o.Skew = DefaultSkew
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = defaultCacheTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tr := o.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
		t.ResponseHeaderTimeout = fetchTimeout
		t.MaxResponseHeaderBytes = 64 << 10
		tr = t
	}
	v := &Verifier{allowHTTP: o.AllowHTTPLoopback, maxLifetime: o.MaxLifetime, skew: o.Skew, cacheTTL: o.CacheTTL,
		log: o.Logger, now: o.Now, issuers: map[string]*issuerKeys{}, inline: map[[32]byte]*keySet{}}
	v.client = &http.Client{Transport: tr, Timeout: fetchTimeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		// A redirect must not take the fetch to plain http.
		return CheckIssuerURL(req.URL.Scheme+"://"+req.URL.Host, v.allowHTTP)
	}}
	return v
}

// AllowsHTTPLoopback reports whether http issuers on loopback are allowed.
func (v *Verifier) AllowsHTTPLoopback() bool { return v.allowHTTP }

// Check names the check a JWT failed, for the audit log.
type Check string

// The checks, in the order they are made.
const (
	CheckMalformed Check = "malformed"
	CheckIssuer    Check = "issuer"
	CheckAlgorithm Check = "algorithm"
	CheckKeys      Check = "issuer keys"
	CheckKeyID     Check = "kid"
	CheckSignature Check = "signature"
	CheckExpired   Check = "expired"
	CheckNotYet    Check = "not yet valid"
	CheckLifetime  Check = "lifetime"
	CheckAudience  Check = "audience"
	CheckSubject   Check = "subject"
	CheckClaim     Check = "claim"
)

// Failure is why a JWT satisfies no credential: the check that failed and
// what it found.
type Failure struct {
	Check  Check
	Detail string
}

func (f *Failure) Error() string { return string(f.Check) + ": " + f.Detail }

func fail(c Check, format string, args ...any) *Failure {
	return &Failure{Check: c, Detail: fmt.Sprintf(format, args...)}
}

// Result is a JWT verified against credentials.
type Result struct {
	// Matches are the credentials it satisfies (of candidates with its
	// issuer and key source).
	Matches []Credential
	Issuer  string
	Subject string
	// Expiry is the JWT's exp.
	Expiry time.Time
	// ID is its jti, if it has one.
	ID string
}

// LooksLikeJWT reports whether s has the shape of a compact JWS (three
// base64url parts whose first is a JSON header naming an algorithm), so
// that a password that is not one goes the password way at no cost.
func LooksLikeJWT(s string) bool {
	if len(s) > MaxJWTSize || strings.Count(s, ".") != 2 || !strings.HasPrefix(s, "eyJ") {
		return false
	}
	h, err := decodeHeader(s[:strings.IndexByte(s, '.')])
	return err == nil && h.Alg != ""
}

type header struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

func decodeHeader(seg string) (header, error) {
	var h header
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return h, err
	}
	return h, json.Unmarshal(b, &h)
}

// UnverifiedIssuer returns the "iss" a JWT claims, before anything is
// verified: which credentials to try it against.
func UnverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("the payload is not base64url")
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "ISS" is not the issuer.
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil || c == nil {
		return "", errors.New("the payload is not a JSON object")
	}
	iss, _ := c["iss"].(string)
	return iss, nil
}

// Verify checks raw against candidates: the issuer's signature with the
// issuer's keys and algorithm, the times, and each candidate's audience,
// subject and claim conditions. It returns the candidates satisfied, or
// the check that failed (for several candidates, the first that failed for
// the first of them).
func (v *Verifier) Verify(ctx context.Context, raw string, candidates []Credential) (*Result, *Failure) {
	if len(raw) > MaxJWTSize {
		return nil, fail(CheckMalformed, "the JWT is longer than %d bytes", MaxJWTSize)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fail(CheckMalformed, "not a compact JWT (header.payload.signature)")
	}
	h, err := decodeHeader(parts[0])
	if err != nil {
		return nil, fail(CheckMalformed, "the header is not base64url JSON")
	}
	iss, err := UnverifiedIssuer(raw)
	if err != nil {
		return nil, fail(CheckMalformed, "%v", err)
	}
	var cands []Credential
	for _, c := range candidates {
		if c.Issuer == iss {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return nil, fail(CheckIssuer, "issuer (iss) %q is not trusted by a federated credential", iss)
	}
	if !allowedAlgs[h.Alg] {
		return nil, fail(CheckAlgorithm, "algorithm %q is not accepted (only asymmetric signatures: RS*, PS*, ES*, EdDSA)", h.Alg)
	}
	if len(h.Crit) > 0 {
		return nil, fail(CheckMalformed, "critical header parameters %v are not understood", h.Crit)
	}
	if len(h.Kid) > 256 {
		return nil, fail(CheckMalformed, "the kid is longer than 256 bytes")
	}

	// Candidates of one issuer may take its keys from different places:
	// its discovery document, or JWKSs they hold. Try each place once.
	var payload []byte
	var verified []Credential
	var first *Failure
	tried := map[string]bool{}
	for _, c := range cands {
		src := "issuer"
		if len(c.JWKS) > 0 {
			sum := sha256.Sum256(c.JWKS)
			src = string(sum[:])
		}
		if tried[src] {
			continue
		}
		tried[src] = true
		p, f := v.verifySignature(ctx, raw, h, c)
		if f != nil {
			if first == nil {
				first = f
			}
			continue
		}
		payload = p
		for _, o := range cands {
			osrc := "issuer"
			if len(o.JWKS) > 0 {
				sum := sha256.Sum256(o.JWKS)
				osrc = string(sum[:])
			}
			if osrc == src {
				verified = append(verified, o)
			}
		}
		break
	}
	if payload == nil {
		return nil, first
	}

	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var claims map[string]any
	if err := d.Decode(&claims); err != nil {
		return nil, fail(CheckMalformed, "the payload is not a JSON object")
	}
	res, f := v.checkTimes(claims)
	if f != nil {
		return nil, f
	}
	res.Issuer = iss
	res.Subject, _ = claims["sub"].(string)
	res.ID, _ = claims["jti"].(string)
	aud := audiences(claims["aud"])
	first = nil
	for _, c := range verified {
		if f := matchCredential(c, res.Subject, aud, claims); f != nil {
			if first == nil {
				first = f
			}
			continue
		}
		res.Matches = append(res.Matches, c)
	}
	if len(res.Matches) == 0 {
		return nil, first
	}
	return res, nil
}

// verifySignature checks raw's signature with the key its kid names among
// c's issuer's keys, in the issuer's algorithm, and returns the payload.
func (v *Verifier) verifySignature(ctx context.Context, raw string, h header, c Credential) ([]byte, *Failure) {
	var set *keySet
	var err error
	if len(c.JWKS) > 0 {
		set, err = v.inlineKeys(c.JWKS)
	} else {
		set, err = v.keysFor(ctx, c.Issuer, h.Kid)
	}
	if err != nil {
		return nil, fail(CheckKeys, "the keys of issuer %q are unavailable: %v", c.Issuer, err)
	}
	keys := set.byKid(h.Kid)
	if len(keys) == 0 {
		if h.Kid == "" {
			return nil, fail(CheckKeyID, "the JWT names no kid and issuer %q has %d keys", c.Issuer, len(set.keys))
		}
		return nil, fail(CheckKeyID, "unknown signing key: no key with kid %q among the keys of issuer %q, so the signature cannot be verified", h.Kid, c.Issuer)
	}
	var algFail *Failure
	for _, key := range keys {
		ok, want := set.accepts(key, h.Alg)
		if !ok {
			if algFail == nil {
				algFail = fail(CheckAlgorithm, "the JWT is signed with alg %s, and the issuer's key %q with %s", h.Alg, key.KeyID, want)
			}
			continue
		}
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
		if err != nil {
			return nil, fail(CheckMalformed, "%v", err)
		}
		payload, err := jws.Verify(key.Key)
		if err != nil {
			return nil, fail(CheckSignature, "the signature does not verify with the issuer's key %q", key.KeyID)
		}
		return payload, nil
	}
	return nil, algFail
}

// checkTimes checks exp, nbf and iat, with the skew tolerated, and the
// lifetime.
func (v *Verifier) checkTimes(claims map[string]any) (*Result, *Failure) {
	now := v.now()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil || !ok {
		return nil, fail(CheckMalformed, "the JWT has no valid exp")
	}
	nbf, hasNbf, err := numericDate(claims, "nbf")
	if err != nil {
		return nil, fail(CheckMalformed, "invalid nbf")
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err != nil {
		return nil, fail(CheckMalformed, "invalid iat")
	}
	if !now.Before(exp.Add(v.skew)) {
		return nil, fail(CheckExpired, "the JWT expired (exp) at %s", exp.UTC().Format(time.RFC3339))
	}
	if hasNbf && now.Add(v.skew).Before(nbf) {
		return nil, fail(CheckNotYet, "the JWT is not valid before (nbf) %s", nbf.UTC().Format(time.RFC3339))
	}
	if hasIat && now.Add(v.skew).Before(iat) {
		return nil, fail(CheckNotYet, "the JWT was issued (iat) in the future, at %s", iat.UTC().Format(time.RFC3339))
	}
	start := now
	switch {
	case hasIat:
		start = iat
	case hasNbf:
		start = nbf
	}
	if life := exp.Sub(start); life > v.maxLifetime {
		return nil, fail(CheckLifetime, "the JWT is valid for %s, longer than the %s accepted", life.Round(time.Second), v.maxLifetime)
	}
	return &Result{Expiry: exp}, nil
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false, errors.New("out of range")
	}
	return time.Unix(int64(f), 0), true, nil
}

func audiences(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, a := range x {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// matchCredential checks a verified JWT's audience, subject and claims
// against c.
func matchCredential(c Credential, sub string, aud []string, claims map[string]any) *Failure {
	found := false
	for _, a := range aud {
		if a == c.Audience {
			found = true
			break
		}
	}
	if !found {
		return fail(CheckAudience, "the JWT's audience (aud) %q does not include %q (credential %s)", aud, c.Audience, c.Name)
	}
	if sub == "" || !Match(c.Subject, sub) {
		return fail(CheckSubject, "subject (sub) %q does not match %q (credential %s)", sub, c.Subject, c.Name)
	}
	for _, k := range sortedKeys(c.Claims) {
		want := c.Claims[k]
		got, ok := claimString(claims[k])
		if !ok {
			return fail(CheckClaim, "the JWT has no claim %s (credential %s wants %q)", k, c.Name, want)
		}
		if !Match(want, got) {
			return fail(CheckClaim, "claim %s is %q, not %q (credential %s)", k, got, want, c.Name)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
