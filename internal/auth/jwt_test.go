package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for tests; nothing in this package sleeps.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

type jwtFixture struct {
	clock    *fakeClock
	cfg      TokenConfig
	key      ed25519.PrivateKey
	signer   *Signer
	verifier *Verifier
	sub      Subject
}

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	f := &jwtFixture{clock: newClock(), key: GenerateSigningKey()}
	f.cfg = TokenConfig{Issuer: "berth", Audience: "registry.example.com", Now: f.clock.Now}
	var err error
	if f.signer, err = NewSigner(f.key, f.cfg); err != nil {
		t.Fatal(err)
	}
	if f.verifier, err = NewVerifier(f.cfg, f.signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
	f.sub = Subject{Kind: KindToken, Name: "ci-token", Slot: "password1", Generation: 7}
	return f
}

// raw builds a token from arbitrary header and payload JSON and a signature
// function, so tests can forge every kind of bad token.
func raw(header, payload string, sign func(signingInput []byte) []byte) string {
	in := b64url.EncodeToString([]byte(header)) + "." + b64url.EncodeToString([]byte(payload))
	return in + "." + b64url.EncodeToString(sign([]byte(in)))
}

func (f *jwtFixture) header() string {
	return `{"alg":"EdDSA","kid":"` + f.signer.KeyID() + `","typ":"JWT"}`
}

func (f *jwtFixture) claims(edit func(*Claims)) string {
	now := f.clock.Now().Unix()
	c := Claims{
		Issuer: f.cfg.Issuer, Subject: "ci-token", Audience: f.cfg.Audience,
		ExpiresAt: now + 300, NotBefore: now, IssuedAt: now, ID: "jti-1",
		Access: []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}},
		Type:   TypeAccess, Kind: KindToken, Slot: "password1", Generation: 1,
	}
	if edit != nil {
		edit(&c)
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (f *jwtFixture) ed25519Sign(in []byte) []byte { return ed25519.Sign(f.key, in) }

func TestJWTRoundTrip(t *testing.T) {
	f := newJWTFixture(t)
	access := []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
	tok, issued, err := f.signer.IssueAccess(f.sub, access)
	if err != nil {
		t.Fatal(err)
	}
	if issued.ExpiresAt-issued.IssuedAt != 300 {
		t.Errorf("access token lifetime %ds, want 300", issued.ExpiresAt-issued.IssuedAt)
	}
	c, err := f.verifier.VerifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "ci-token" || c.Kind != KindToken || c.Slot != "password1" || c.Generation != 7 ||
		c.Type != TypeAccess || c.ID == "" || c.ID != issued.ID || c.Granted("team/app") != ContentRead|ContentWrite {
		t.Errorf("claims = %+v", c)
	}
	// The header carries the key's fingerprint.
	h, _, _ := strings.Cut(tok, ".")
	hb, _ := b64url.DecodeString(h)
	if want := `{"alg":"EdDSA","kid":"` + KeyID(f.signer.PublicKey()) + `","typ":"JWT"}`; string(hb) != want {
		t.Errorf("header %s, want %s", hb, want)
	}
	// Still valid just before expiry plus leeway, invalid after.
	f.clock.Advance(300*time.Second + DefaultLeeway - time.Second)
	if _, err := f.verifier.VerifyAccess(tok); err != nil {
		t.Errorf("within leeway: %v", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.verifier.VerifyAccess(tok); err == nil {
		t.Error("accepted after expiry plus leeway")
	}

	rt, rc, err := f.signer.IssueRefresh(f.sub)
	if err != nil {
		t.Fatal(err)
	}
	if rc.ExpiresAt != 0 || rc.Access != nil {
		t.Errorf("refresh claims %+v", rc)
	}
	if _, err := f.verifier.VerifyRefresh(rt); err != nil {
		t.Errorf("refresh: %v", err)
	}
}

// TestRefreshLifetimes: the refresh token of a login lasts as long as its
// password (docker keeps it for as long as the login lasts); one that a
// refresh returns lasts RefreshTTL; neither outlives the password.
func TestRefreshLifetimes(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name     string
		expiry   time.Duration // of the password, from now; 0: none
		renew    bool
		lifetime time.Duration // 0: none
	}{
		{"login, password without expiry", 0, false, 0},
		{"login, password expiring after RefreshTTL", 400 * day, false, 400 * day},
		{"login, password expiring before RefreshTTL", time.Hour, false, time.Hour},
		{"renewed, password without expiry", 0, true, DefaultRefreshTTL},
		{"renewed, password expiring after RefreshTTL", 400 * day, true, DefaultRefreshTTL},
		{"renewed, password expiring before RefreshTTL", time.Hour, true, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newJWTFixture(t)
			sub := f.sub
			if tt.expiry != 0 {
				sub.Expiry = f.clock.Now().Add(tt.expiry)
			}
			issue := f.signer.IssueRefresh
			if tt.renew {
				issue = f.signer.RenewRefresh
			}
			tok, c, err := issue(sub)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			if tt.lifetime != 0 {
				want = c.IssuedAt + int64(tt.lifetime/time.Second)
			}
			if c.ExpiresAt != want {
				t.Errorf("exp %d, want %d", c.ExpiresAt, want)
			}
			// Past RefreshTTL (and the leeway), only what has no shorter
			// lifetime is still valid; past its lifetime, nothing is.
			f.clock.Advance(DefaultRefreshTTL + DefaultLeeway)
			if _, err := f.verifier.VerifyRefresh(tok); (err == nil) != (tt.lifetime == 0 || tt.lifetime > DefaultRefreshTTL) {
				t.Errorf("after RefreshTTL: %v", err)
			}
			f.clock.Advance(1000 * day)
			if _, err := f.verifier.VerifyRefresh(tok); (err == nil) != (tt.lifetime == 0) {
				t.Errorf("after 1000 days: %v", err)
			}
		})
	}
}

func TestJWTRejects(t *testing.T) {
	f := newJWTFixture(t)
	good, _, err := f.signer.IssueAccess(f.sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	refresh, _, _ := f.signer.IssueRefresh(f.sub)
	other := GenerateSigningKey()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) }
	}
	kid := f.signer.KeyID()
	h, p, s := splitJWT(good)
	now := f.clock.Now().Unix()

	tests := []struct {
		name  string
		token string
		msg   string
	}{
		{"forged signature", h + "." + p + "." + b64url.EncodeToString(make([]byte, 64)), "signature does not verify"},
		{"signature from another key with our kid", raw(f.header(), f.claims(nil), func(in []byte) []byte { return ed25519.Sign(other, in) }), "signature does not verify"},
		{"payload swapped under a valid signature", h + "." + b64url.EncodeToString([]byte(f.claims(func(c *Claims) { c.Subject = "admin" }))) + "." + s, "signature does not verify"},
		{"alg none, empty signature", raw(`{"alg":"none","kid":"`+kid+`"}`, f.claims(nil), func([]byte) []byte { return nil }), `algorithm "none"`},
		{"alg none, two segments", b64url.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p, "three segments"},
		{"alg None", raw(`{"alg":"None","kid":"`+kid+`"}`, f.claims(nil), f.ed25519Sign), `algorithm "None"`},
		{"alg missing", raw(`{"kid":"`+kid+`"}`, f.claims(nil), f.ed25519Sign), `algorithm ""`},
		{"HS256 with the public key as secret", raw(`{"alg":"HS256","kid":"`+kid+`","typ":"JWT"}`, f.claims(nil), hs256(f.signer.PublicKey())), `algorithm "HS256"`},
		{"HS256 with the public key id as secret", raw(`{"alg":"HS256","kid":"`+kid+`"}`, f.claims(nil), hs256([]byte(kid))), `algorithm "HS256"`},
		{"RS256", raw(`{"alg":"RS256","kid":"`+kid+`"}`, f.claims(nil), func(in []byte) []byte {
			sum := sha256.Sum256(in)
			sig, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, sum[:])
			return sig
		}), `algorithm "RS256"`},
		{"ES256", raw(`{"alg":"ES256","kid":"`+kid+`"}`, f.claims(nil), func(in []byte) []byte {
			sum := sha256.Sum256(in)
			sig, _ := ecdsa.SignASN1(rand.Reader, ecKey, sum[:])
			return sig
		}), `algorithm "ES256"`},
		{"Ed25519 spelled differently", raw(`{"alg":"Ed25519","kid":"`+kid+`"}`, f.claims(nil), f.ed25519Sign), `algorithm "Ed25519"`},
		{"unknown kid", raw(`{"alg":"EdDSA","kid":"`+KeyID(other.Public().(ed25519.PublicKey))+`"}`, f.claims(nil), func(in []byte) []byte { return ed25519.Sign(other, in) }), "unknown key id"},
		{"no kid", raw(`{"alg":"EdDSA"}`, f.claims(nil), f.ed25519Sign), "unknown key id"},
		{"embedded jwk ignored", raw(`{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"`+b64url.EncodeToString(other.Public().(ed25519.PublicKey))+`"}}`, f.claims(nil), func(in []byte) []byte { return ed25519.Sign(other, in) }), "unknown key id"},
		{"crit header", raw(`{"alg":"EdDSA","kid":"`+kid+`","crit":["exp"]}`, f.claims(nil), f.ed25519Sign), "critical"},
		{"typ not JWT", raw(`{"alg":"EdDSA","kid":"`+kid+`","typ":"JWE"}`, f.claims(nil), f.ed25519Sign), "header type"},
		{"header not an object", raw(`["EdDSA"]`, f.claims(nil), f.ed25519Sign), "header is not a JSON object"},
		{"expired", raw(f.header(), f.claims(func(c *Claims) { c.ExpiresAt = now - 60; c.IssuedAt = now - 360; c.NotBefore = now - 360 }), f.ed25519Sign), "expired"},
		{"nbf in the future", raw(f.header(), f.claims(func(c *Claims) { c.NotBefore = now + 31; c.ExpiresAt = now + 300 }), f.ed25519Sign), "not valid before"},
		{"iat in the future", raw(f.header(), f.claims(func(c *Claims) { c.IssuedAt = now + 60; c.NotBefore = now; c.ExpiresAt = now + 300 }), f.ed25519Sign), "issued in the future"},
		{"lifetime too long", raw(f.header(), f.claims(func(c *Claims) { c.ExpiresAt = now + 3600 }), f.ed25519Sign), "lifetime"},
		{"wrong aud", raw(f.header(), f.claims(func(c *Claims) { c.Audience = "other.example.com" }), f.ed25519Sign), "for service"},
		{"aud as list", raw(f.header(), strings.Replace(f.claims(nil), `"aud":"registry.example.com"`, `"aud":["registry.example.com"]`, 1), f.ed25519Sign), "not valid claims"},
		{"wrong iss", raw(f.header(), f.claims(func(c *Claims) { c.Issuer = "evil" }), f.ed25519Sign), "issuer"},
		{"missing exp", raw(f.header(), f.claims(func(c *Claims) { c.ExpiresAt = 0 }), f.ed25519Sign), "required"},
		{"missing jti", raw(f.header(), f.claims(func(c *Claims) { c.ID = "" }), f.ed25519Sign), "required"},
		{"missing sub", raw(f.header(), f.claims(func(c *Claims) { c.Subject = "" }), f.ed25519Sign), "sub is required"},
		{"missing type", raw(f.header(), strings.Replace(f.claims(nil), `"berth_typ":"access",`, "", 1), f.ed25519Sign), "token is required"},
		{"unknown kind", raw(f.header(), strings.Replace(f.claims(nil), `"berth_kind":"token"`, `"berth_kind":"root"`, 1), f.ed25519Sign), "not valid claims"},
		{"exp as float", raw(f.header(), strings.Replace(f.claims(nil), `"exp":`, `"exp":1.5e9,"x":`, 1), f.ed25519Sign), "not valid claims"},
		{"payload not JSON", raw(f.header(), "not json", f.ed25519Sign), "not valid claims"},
		{"payload with trailing data", raw(f.header(), f.claims(nil)+"{}", f.ed25519Sign), "not valid claims"},
		{"refresh as access", refresh, "a \"refresh\" token was presented where a \"access\" token is required"},
		{"truncated", good[:len(good)-10], "signature"},
		{"truncated to header", h, "three segments"},
		{"extra segment", good + ".x", "three segments"},
		{"five segments (JWE shape)", h + "." + p + "." + s + ".a.b", "three segments"},
		{"empty", "", "three segments"},
		{"dots only", "..", "header is not"},
		{"padded header", h + "=." + p + "." + s, "header is not base64url"},
		{"standard base64 signature", h + "." + p + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s) + "+", "signature is malformed"},
		{"non-canonical signature encoding", h + "." + p + "." + s[:len(s)-1] + flipLowBits(s[len(s)-1]), "signature is malformed"},
		{"short signature", h + "." + p + "." + s[:40], "signature is malformed"},
		{"oversized", h + "." + p + strings.Repeat("A", MaxTokenSize) + "." + s, "maximum is 16384"},
		{"whitespace", " " + good, "header is not base64url"},
	}
	for _, tt := range tests {
		c, err := f.verifier.VerifyAccess(tt.token)
		if err == nil {
			t.Errorf("%s: accepted, claims %+v", tt.name, c)
			continue
		}
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: error %q, want ErrInvalidToken mentioning %q", tt.name, err, tt.msg)
		}
	}
	if _, err := f.verifier.VerifyRefresh(good); err == nil {
		t.Error("an access token was accepted as a refresh token")
	}

	// nbf within the leeway is accepted.
	early := raw(f.header(), f.claims(func(c *Claims) { c.NotBefore = now + 5; c.IssuedAt = now + 5; c.ExpiresAt = now + 300 }), f.ed25519Sign)
	if _, err := f.verifier.VerifyAccess(early); err != nil {
		t.Errorf("nbf 5s ahead: %v", err)
	}
}

func splitJWT(tok string) (h, p, s string) {
	parts := strings.Split(tok, ".")
	return parts[0], parts[1], parts[2]
}

// flipLowBits returns a base64url character that decodes to the same top
// bits as c but with a non-zero padding bit, which strict decoding refuses.
func flipLowBits(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

func TestJWTOtherVerifiers(t *testing.T) {
	f := newJWTFixture(t)
	tok, _, _ := f.signer.IssueAccess(f.sub, nil)

	// Another service's verifier.
	cfg := f.cfg
	cfg.Audience = "other"
	v, _ := NewVerifier(cfg, f.signer.PublicKey())
	if _, err := v.VerifyAccess(tok); err == nil {
		t.Error("a token for another service was accepted")
	}

	// Key rotation: a verifier with the old and new keys accepts both.
	newKey := GenerateSigningKey()
	s2, _ := NewSigner(newKey, f.cfg)
	tok2, _, _ := s2.IssueAccess(f.sub, nil)
	both, _ := NewVerifier(f.cfg, f.signer.PublicKey(), s2.PublicKey())
	for _, tk := range []string{tok, tok2} {
		if _, err := both.VerifyAccess(tk); err != nil {
			t.Errorf("rotation: %v", err)
		}
	}
	if _, err := f.verifier.VerifyAccess(tok2); err == nil {
		t.Error("a token signed with a key the verifier does not trust was accepted")
	}
}

func TestTokenConfig(t *testing.T) {
	key := GenerateSigningKey()
	for _, tt := range []struct {
		name string
		cfg  TokenConfig
		ok   bool
	}{
		{"defaults", TokenConfig{Issuer: "i", Audience: "a"}, true},
		{"no issuer", TokenConfig{Audience: "a"}, false},
		{"no audience", TokenConfig{Issuer: "i"}, false},
		{"access 1m", TokenConfig{Issuer: "i", Audience: "a", AccessTTL: time.Minute}, true},
		{"access 30s", TokenConfig{Issuer: "i", Audience: "a", AccessTTL: 30 * time.Second}, false},
		{"access 6m", TokenConfig{Issuer: "i", Audience: "a", AccessTTL: 6 * time.Minute}, false},
		{"refresh 1h", TokenConfig{Issuer: "i", Audience: "a", RefreshTTL: time.Hour}, true},
		{"refresh shorter than access", TokenConfig{Issuer: "i", Audience: "a", RefreshTTL: time.Minute}, false},
		{"refresh 31 days", TokenConfig{Issuer: "i", Audience: "a", RefreshTTL: 31 * 24 * time.Hour}, false},
		{"leeway 30s", TokenConfig{Issuer: "i", Audience: "a", Leeway: 30 * time.Second}, true},
		{"leeway 31s", TokenConfig{Issuer: "i", Audience: "a", Leeway: 31 * time.Second}, false},
	} {
		_, err := NewSigner(key, tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: NewSigner: %v", tt.name, err)
		}
	}
	if _, err := NewVerifier(TokenConfig{Issuer: "i", Audience: "a"}); err == nil {
		t.Error("NewVerifier without keys succeeded")
	}
	if _, err := NewSigner(key[:10], TokenConfig{Issuer: "i", Audience: "a"}); err == nil {
		t.Error("NewSigner accepted a short key")
	}
}

// TestJWTMaxSize checks that the largest token Intersect can produce (MaxScopes
// scopes, the longest names, every action) still fits under MaxTokenSize,
// so the endpoint never issues a token the registry then refuses.
func TestJWTMaxSize(t *testing.T) {
	f := newJWTFixture(t)
	var scopes []string
	for i := range MaxScopes {
		name := strings.Repeat("a", MaxRepositoryLength-3) + string(rune('a'+i/26)) + "/" + string(rune('a'+i%26))
		scopes = append(scopes, "repository("+strings.Repeat("p", maxClassLength)+"):"+name+":*")
	}
	req := ParseScopes(strings.Join(scopes, " "))
	if len(req) != MaxScopes {
		t.Fatalf("%d scopes parsed", len(req))
	}
	access := Intersect(req, Identity{Kind: KindAdmin, Name: strings.Repeat("n", MaxNameLength)})
	sub := Subject{Kind: KindAdmin, Name: strings.Repeat("n", MaxNameLength), Slot: "password2", Generation: ^uint64(0)}
	tok, _, err := f.signer.IssueAccess(sub, access)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier.VerifyAccess(tok); err != nil {
		t.Fatalf("largest token (%d bytes): %v", len(tok), err)
	}
	t.Logf("largest access token: %d bytes", len(tok))
}

func TestSigningKeyEncoding(t *testing.T) {
	key := GenerateSigningKey()
	s, err := EncodeSigningKey(key)
	if err != nil || !strings.HasPrefix(s, "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("EncodeSigningKey = %q, %v", s, err)
	}
	back, err := DecodeSigningKey(s)
	if err != nil || !back.Equal(key) {
		t.Fatalf("DecodeSigningKey: %v", err)
	}
	for _, bad := range []string{"", "garbage", strings.Replace(s, "PRIVATE KEY", "PUBLIC KEY", -1)} {
		if _, err := DecodeSigningKey(bad); err == nil {
			t.Errorf("DecodeSigningKey(%q) succeeded", bad)
		}
	}
	if KeyID(key.Public().(ed25519.PublicKey)) == KeyID(GenerateSigningKey().Public().(ed25519.PublicKey)) {
		t.Error("two keys have one KeyID")
	}
}
