package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token lifetimes and limits.
const (
	// DefaultAccessTTL and MaxAccessTTL: access tokens are short-lived so
	// that a leaked one is worth little; immediate revocation is handled by
	// generation numbers, not by lifetime. MinAccessTTL is the token-auth
	// spec's floor: clients treat a shorter expires_in as 60 seconds.
	DefaultAccessTTL = 5 * time.Minute
	MaxAccessTTL     = 5 * time.Minute
	MinAccessTTL     = time.Minute
	// DefaultRefreshTTL and MaxRefreshTTL bound the lifetime of the refresh
	// tokens a refresh_token grant returns (see RenewRefresh). The refresh
	// token of a login is not bound by them: it lasts as long as the
	// password it came from (see IssueRefresh).
	DefaultRefreshTTL = 8 * time.Hour
	MaxRefreshTTL     = 30 * 24 * time.Hour
	// DefaultLeeway and MaxLeeway bound the clock skew tolerated between
	// the berth node that issued a token and the one verifying it.
	DefaultLeeway = 10 * time.Second
	MaxLeeway     = 30 * time.Second
	// MaxTokenSize is the longest token the verifier will look at; longer
	// input is refused before any decoding, so parsing cost is bounded.
	MaxTokenSize = 16 << 10
)

// algEdDSA is the only JWS algorithm berth issues or accepts. Accepting
// exactly one algorithm, fixed by the verifier and never chosen by the
// token, is what rules out "alg: none", HS256-with-the-public-key and the
// other algorithm-confusion attacks.
const algEdDSA = "EdDSA"

// TokenType tells access tokens and refresh tokens apart. A verifier for one
// rejects the other, so a refresh token cannot be presented to /v2/ and an
// access token cannot be traded for more tokens.
type TokenType string

const (
	TypeAccess  TokenType = "access"
	TypeRefresh TokenType = "refresh"
)

// ErrInvalidToken is wrapped by every verification error. All of them mean
// the same to a client (401 with a challenge); the wrapped text says why,
// for the log.
var ErrInvalidToken = errors.New("invalid token")

// Claims are the claims of a berth access or refresh token: the registered
// claims, the token-auth spec's "access", and berth's own claims that let
// the service revoke issued tokens at once.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`           // identity name; "" for anonymous
	Audience  string   `json:"aud"`           // the service name of the challenge
	ExpiresAt int64    `json:"exp,omitempty"` // seconds since the epoch; refresh tokens may have none
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Access    []Access `json:"access,omitempty"` // access tokens only

	// Type is TypeAccess or TypeRefresh.
	Type TokenType `json:"berth_typ"`
	// Kind is the identity's kind; with Subject it names the identity.
	Kind Kind `json:"berth_kind"`
	// Slot is the password slot the identity logged in with ("password1",
	// "password2", ...), so that deleting or regenerating that one password
	// revokes the tokens it produced and no others.
	Slot string `json:"berth_slot,omitempty"`
	// Generation is the identity's generation number when the token was
	// issued. The service bumps it when the identity is disabled or
	// deleted, a password of it changes, or its scope map changes, and
	// refuses tokens with an older number: immediate revocation at the cost
	// of one in-memory comparison per request.
	Generation uint64 `json:"berth_gen"`
	// SlotSerial is the serial number of the password in Slot when the
	// token was issued; regenerating that password gives the slot a new
	// serial, which revokes the tokens issued through the old one while
	// those of the other slot keep working (rotation without downtime).
	SlotSerial uint64 `json:"berth_sserial,omitempty"`
}

// Subject is who a token is issued to.
type Subject struct {
	Kind       Kind
	Name       string
	Slot       string
	Generation uint64
	SlotSerial uint64
	// Expiry is when the password in Slot expires; zero if it does not.
	// No refresh token outlives it.
	Expiry time.Time
}

// TokenConfig configures a Signer and a Verifier. Every node of a registry
// must use the same Issuer and Audience.
type TokenConfig struct {
	// Issuer is the "iss" claim, for example the registry's name.
	Issuer string
	// Audience is the "aud" claim: the service name that the registry puts
	// in its WWW-Authenticate challenge. Tokens for another service are
	// rejected.
	Audience string
	// AccessTTL is the lifetime of access tokens: between 1 and 5 minutes,
	// 5 if zero.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of the refresh tokens RenewRefresh issues:
	// longer than AccessTTL and at most 30 days, 8 hours if zero.
	RefreshTTL time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat: at most 30
	// seconds, 10 if zero.
	Leeway time.Duration
	// Now returns the current time; time.Now if nil. Tests inject a clock.
	Now func() time.Time
}

func (c TokenConfig) withDefaults() (TokenConfig, error) {
	if c.Issuer == "" || c.Audience == "" {
		return c, errors.New("token config: issuer and audience must be set")
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = DefaultAccessTTL
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = DefaultRefreshTTL
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.AccessTTL < MinAccessTTL || c.AccessTTL > MaxAccessTTL:
		return c, fmt.Errorf("token config: access token lifetime %v must be between %v and %v", c.AccessTTL, MinAccessTTL, MaxAccessTTL)
	case c.RefreshTTL <= c.AccessTTL || c.RefreshTTL > MaxRefreshTTL:
		return c, fmt.Errorf("token config: refresh token lifetime %v must be longer than the access token lifetime and at most %v", c.RefreshTTL, MaxRefreshTTL)
	case c.Leeway < 0 || c.Leeway > MaxLeeway:
		return c, fmt.Errorf("token config: leeway %v must be between 0 and %v", c.Leeway, MaxLeeway)
	}
	return c, nil
}

// b64url is the JWS segment encoding. Strict decoding refuses non-zero
// padding bits, so each token has exactly one spelling.
var b64url = base64.RawURLEncoding.Strict()

// GenerateSigningKey returns a new Ed25519 key for signing tokens.
func GenerateSigningKey() ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		// crypto/rand does not fail; see GeneratePassword.
		panic(err)
	}
	return key
}

// EncodeSigningKey returns key as a PKCS #8 PEM block, for the metadata
// store and for operators' tools.
func EncodeSigningKey(key ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// DecodeSigningKey parses a key written by EncodeSigningKey.
func DecodeSigningKey(s string) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("signing key: not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: %T is not an Ed25519 key", k)
	}
	return key, nil
}

// KeyID returns the "kid" of a public key: its RFC 7638 JWK thumbprint, the
// unpadded base64url SHA-256 of its canonical JWK. Being derived from the
// key, it needs no bookkeeping and cannot name the wrong key.
func KeyID(pub ed25519.PublicKey) string {
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + b64url.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return b64url.EncodeToString(sum[:])
}

type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ,omitempty"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

// Signer issues access and refresh tokens. It is safe for concurrent use.
type Signer struct {
	cfg    TokenConfig
	key    ed25519.PrivateKey
	kid    string
	header string // the encoded header, the same for every token
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey, cfg TokenConfig) (*Signer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("token signer: not an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	kid := KeyID(pub)
	h, err := json.Marshal(jwsHeader{Alg: algEdDSA, Kid: kid, Typ: "JWT"})
	if err != nil {
		return nil, err
	}
	return &Signer{cfg: cfg, key: key, kid: kid, header: b64url.EncodeToString(h)}, nil
}

// KeyID returns the "kid" the signer puts in its tokens.
func (s *Signer) KeyID() string { return s.kid }

// PublicKey returns the key that verifies the signer's tokens.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// IssueAccess issues an access token for sub granting access (the result of
// Intersect). The claims are returned too: the token endpoint's expires_in
// is ExpiresAt-IssuedAt, and the audit log records ID as the JwtId.
func (s *Signer) IssueAccess(sub Subject, access []Access) (string, *Claims, error) {
	return s.issue(sub, TypeAccess, s.cfg.AccessTTL, access)
}

// IssueRefresh issues the refresh token of a login (offline access) for
// sub. It expires when sub's password does, and not before: docker keeps it
// as its identity token for as long as the login lasts, never replaces it
// with the one a refresh returns and never falls back to the password, so a
// shorter lifetime would end a login whose password is still valid. What
// keeps it safe is that every use is checked against the identity's current
// state, as for access tokens: a token or user disabled or deleted, a
// password deleted, regenerated or expired, or changed credentials refuse
// it. It carries no access: each refresh_token grant decides the requested
// scopes afresh, against the identity's current permissions.
func (s *Signer) IssueRefresh(sub Subject) (string, *Claims, error) {
	return s.issue(sub, TypeRefresh, 0, nil)
}

// RenewRefresh issues the refresh token a refresh_token grant returns: it
// lasts RefreshTTL, and never past sub's password expiry. A client that
// keeps each new refresh token (the berth CLI does) thus stays logged in
// while it refreshes at least once per RefreshTTL; the refresh token it
// presented keeps working until its own expiry, since another process of
// the same client may be using it at the same time.
func (s *Signer) RenewRefresh(sub Subject) (string, *Claims, error) {
	return s.issue(sub, TypeRefresh, s.cfg.RefreshTTL, nil)
}

// issue issues a token of type typ for sub, valid for ttl; a refresh token
// never past sub.Expiry, and with a ttl of 0 until sub.Expiry, which may be
// never. (Access tokens are short and checked against the password's expiry
// on every use.)
func (s *Signer) issue(sub Subject, typ TokenType, ttl time.Duration, access []Access) (string, *Claims, error) {
	now := s.cfg.Now().Unix()
	var exp int64
	if ttl > 0 {
		exp = now + int64(ttl/time.Second)
	}
	if typ == TypeRefresh && !sub.Expiry.IsZero() && (exp == 0 || sub.Expiry.Unix() < exp) {
		exp = sub.Expiry.Unix()
	}
	jti := make([]byte, 16)
	rand.Read(jti)
	c := &Claims{
		Issuer:     s.cfg.Issuer,
		Subject:    sub.Name,
		Audience:   s.cfg.Audience,
		ExpiresAt:  exp,
		NotBefore:  now,
		IssuedAt:   now,
		ID:         b64url.EncodeToString(jti),
		Access:     access,
		Type:       typ,
		Kind:       sub.Kind,
		Slot:       sub.Slot,
		Generation: sub.Generation,
		SlotSerial: sub.SlotSerial,
	}
	tok, err := s.sign(c)
	if err != nil {
		return "", nil, err
	}
	return tok, c, nil
}

func (s *Signer) sign(c *Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signingInput := s.header + "." + b64url.EncodeToString(payload)
	tok := signingInput + "." + b64url.EncodeToString(ed25519.Sign(s.key, []byte(signingInput)))
	if len(tok) > MaxTokenSize {
		// Never hand out a token that no verifier would accept.
		return "", fmt.Errorf("token would be %d bytes, more than the maximum %d", len(tok), MaxTokenSize)
	}
	return tok, nil
}

// Verifier checks tokens issued by a Signer with the same TokenConfig. It
// accepts several keys so that the signing key can be rotated: verify with
// the old and new keys until the old tokens have expired. It is safe for
// concurrent use.
type Verifier struct {
	cfg  TokenConfig
	keys map[string]ed25519.PublicKey // by KeyID
}

// NewVerifier returns a Verifier trusting keys.
func NewVerifier(cfg TokenConfig, keys ...ed25519.PublicKey) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("token verifier: no keys")
	}
	v := &Verifier{cfg: cfg, keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("token verifier: not an Ed25519 public key")
		}
		v.keys[KeyID(k)] = k
	}
	return v, nil
}

// VerifyAccess verifies an access token and returns its claims. The caller
// then checks Claims.Generation against the identity's current generation
// and puts the claims in Identity.Bearer.
func (v *Verifier) VerifyAccess(token string) (*Claims, error) {
	return v.verify(token, TypeAccess)
}

// VerifyRefresh verifies a refresh token and returns its claims.
func (v *Verifier) VerifyRefresh(token string) (*Claims, error) {
	return v.verify(token, TypeRefresh)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}

// verify checks, in order: size, shape, header (alg, kid), signature, and
// only then the claims, so that nothing in an unsigned payload is acted on.
func (v *Verifier) verify(token string, want TokenType) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, invalid("token is %d bytes, the maximum is %d", len(token), MaxTokenSize)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, invalid("not a signed JWT of three segments")
	}
	hb, err := b64url.DecodeString(h)
	if err != nil {
		return nil, invalid("header is not base64url")
	}
	var hdr jwsHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, invalid("header is not a JSON object")
	}
	if hdr.Alg != algEdDSA {
		return nil, invalid("algorithm %q is not accepted, only %s", hdr.Alg, algEdDSA)
	}
	if len(hdr.Crit) != 0 {
		return nil, invalid("critical header extensions are not supported")
	}
	if hdr.Typ != "" && hdr.Typ != "JWT" {
		return nil, invalid("header type %q is not JWT", hdr.Typ)
	}
	key, ok := v.keys[hdr.Kid]
	if !ok {
		return nil, invalid("unknown key id %q", hdr.Kid)
	}
	sig, err := b64url.DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, invalid("signature is malformed")
	}
	if !ed25519.Verify(key, []byte(token[:len(h)+1+len(p)]), sig) {
		return nil, invalid("signature does not verify")
	}
	pb, err := b64url.DecodeString(p)
	if err != nil {
		return nil, invalid("payload is not base64url")
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, invalid("payload is not valid claims: %v", err)
	}
	if err := v.checkClaims(&c, want); err != nil {
		return nil, err
	}
	return &c, nil
}

func (v *Verifier) checkClaims(c *Claims, want TokenType) error {
	if c.Type != want {
		return invalid("a %q token was presented where a %q token is required", c.Type, want)
	}
	if c.Issuer != v.cfg.Issuer {
		return invalid("issuer %q is not %q", c.Issuer, v.cfg.Issuer)
	}
	if c.Audience != v.cfg.Audience {
		return invalid("token is for service %q, not %q", c.Audience, v.cfg.Audience)
	}
	if (c.ExpiresAt == 0 && want != TypeRefresh) || c.NotBefore == 0 || c.IssuedAt == 0 || c.ID == "" {
		return invalid("exp, nbf, iat and jti are required")
	}
	if c.Subject == "" && c.Kind != KindAnonymous {
		return invalid("sub is required")
	}
	// A refresh token's lifetime is its password's (IssueRefresh), so only
	// access tokens have a longest one.
	if (want == TypeAccess && c.ExpiresAt-c.IssuedAt > int64(MaxAccessTTL/time.Second)) || (c.ExpiresAt != 0 && c.ExpiresAt < c.NotBefore) {
		return invalid("lifetime from %d to %d is not allowed for a %s token", c.IssuedAt, c.ExpiresAt, want)
	}
	now := v.cfg.Now()
	leeway := v.cfg.Leeway
	if exp := time.Unix(c.ExpiresAt, 0); c.ExpiresAt != 0 && !now.Before(exp.Add(leeway)) {
		return invalid("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf := time.Unix(c.NotBefore, 0); now.Before(nbf.Add(-leeway)) {
		return invalid("token is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat := time.Unix(c.IssuedAt, 0); now.Before(iat.Add(-leeway)) {
		return invalid("token was issued in the future, at %s", iat.UTC().Format(time.RFC3339))
	}
	return nil
}
