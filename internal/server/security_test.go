package server_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
)

// signingKey reads the registry's key from its database, as an attacker who
// stole it would: tests then show what a forger can and cannot do.
func (e *env) signingKey(t *testing.T, dataDir string) ed25519.PrivateKey {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "berth.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var enc string
	if err := db.QueryRow(`SELECT value FROM settings WHERE key = 'signing_key'`).Scan(&enc); err != nil {
		t.Fatal(err)
	}
	k, err := auth.DecodeSigningKey(enc)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mint signs claims with key, under header.
func mint(header map[string]any, claims map[string]any, sign func(string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

func TestForgedAccessTokens(t *testing.T) {
	e := newEnv(t)
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	if err := e.push("secret/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	pw, _ := e.newToken("team-read", actions("team/*", "content/read")...)
	good := e.accessToken("team-read", pw, "repository:team/app:pull")
	if st, _, _ := e.do("GET", "/v2/team/app/manifests/v1", bearer(good), nil); st != 200 {
		t.Fatalf("genuine token: %d", st)
	}
	parts := strings.Split(good, ".")
	var header, claims map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(hb, &header)
	json.Unmarshal(cb, &claims)
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for a, b := range claims {
			c[a] = b
		}
		c[k] = v
		return c
	}
	hdr := func(k string, v any) map[string]any {
		h := map[string]any{}
		for a, b := range header {
			h[a] = b
		}
		h[k] = v
		return h
	}
	key := e.signingKey(t, e.srv.DataDir())
	_, otherKey, _ := ed25519.GenerateKey(nil)
	edSign := func(k ed25519.PrivateKey) func(string) []byte {
		return func(in string) []byte { return ed25519.Sign(k, []byte(in)) }
	}
	pub := key.Public().(ed25519.PublicKey)
	hs256 := func(in string) []byte { m := hmac.New(sha256.New, pub); m.Write([]byte(in)); return m.Sum(nil) }
	secretAccess := []map[string]any{{"type": "repository", "name": "secret/app", "actions": []string{"pull"}}}
	now := time.Now().Unix()

	tests := []struct {
		name  string
		token string
		path  string
		want  int
	}{
		{"signed by another key", mint(header, claims, edSign(otherKey)), "/v2/team/app/manifests/v1", 401},
		{"access claim widened, old signature", parts[0] + "." + b64json(with("access", secretAccess)) + "." + parts[2], "/v2/secret/app/manifests/v1", 401},
		{"alg none", mint(hdr("alg", "none"), claims, func(string) []byte { return nil }), "/v2/team/app/manifests/v1", 401},
		{"alg none, no signature", strings.TrimSuffix(mint(hdr("alg", "none"), claims, func(string) []byte { return nil }), "."), "/v2/team/app/manifests/v1", 401},
		{"HS256 keyed with the public key", mint(hdr("alg", "HS256"), claims, hs256), "/v2/team/app/manifests/v1", 401},
		{"RS256 header", mint(hdr("alg", "RS256"), claims, edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"expired", mint(header, with("exp", now-120), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"not yet valid", mint(header, with("nbf", now+3600), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"another service", mint(header, with("aud", "other-registry"), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"another issuer", mint(header, with("iss", "evil"), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"refresh type used as access", mint(header, with("berth_typ", "refresh"), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"stale generation", mint(header, with("berth_gen", 99), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"unknown kind", mint(header, with("berth_kind", "root"), edSign(key)), "/v2/team/app/manifests/v1", 401},
		{"garbage", "not.a.jwt", "/v2/team/app/manifests/v1", 401},
		{"two segments", parts[0] + "." + parts[1], "/v2/team/app/manifests/v1", 401},
		{"four segments", good + ".x", "/v2/team/app/manifests/v1", 401},
		{"huge", strings.Repeat("a", 20000), "/v2/team/app/manifests/v1", 401},
		// Even with the real key, a forged claim cannot reach beyond the
		// token's current scope map: the decision narrows by both.
		{"real key, widened access claim", mint(header, with("access", secretAccess), edSign(key)), "/v2/secret/app/manifests/v1", 403},
		{"genuine token, other repository", good, "/v2/secret/app/manifests/v1", 403},
		{"genuine token, path trick", good, "/v2/team/../secret/app/manifests/v1", 400},
		{"genuine token, escaped path trick", good, "/v2/team/%2e%2e/secret/app/manifests/v1", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, h := e.do("GET", tt.path, bearer(tt.token), nil)
			if st != tt.want {
				t.Fatalf("status %d, want %d: %s", st, tt.want, body)
			}
			if st == 401 && !strings.HasPrefix(h.Get("Www-Authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge")
			}
		})
	}
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestBadCredentials(t *testing.T) {
	// Every case fails from the same address; this test is about the
	// answers, TestBruteForceIsSlowedDown about the limit.
	e := newEnv(t, func(c *config.Config) { c.LoginFailureThreshold = 1000 })
	pw, _ := e.newToken("some-token", actions("app", "content/read")...)
	tests := []struct {
		name, authz string
		want        int
	}{
		{"empty password", basic("some-token", ""), 401},
		{"empty username", basic("", pw), 401},
		{"unknown token", basic("no-such-token", pw), 401},
		{"wrong password", basic("some-token", pw+"x"), 401},
		{"password of another slot's length", basic("some-token", strings.Repeat("A", len(pw))), 401},
		{"malformed basic", "Basic !!!", 401},
		{"unknown scheme", "Digest abc", 401},
		{"admin disabled by default", basic("berth", "anything"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, h := e.do("GET", "/v2/app/tags/list", tt.authz, nil)
			if st != tt.want || !strings.Contains(body, "UNAUTHORIZED") || h.Get("Www-Authenticate") == "" {
				t.Fatalf("status %d, body %s, challenge %q; want %d UNAUTHORIZED with a challenge", st, body, h.Get("Www-Authenticate"), tt.want)
			}
		})
	}
	if st, _ := e.login("some-token", ""); st != 401 {
		t.Fatalf("token endpoint with an empty password: %d", st)
	}
}

func TestScopeStringTricks(t *testing.T) {
	e := newEnv(t)
	pw, _ := e.newToken("narrow", actions("team/app", "content/read")...)
	for _, scope := range []string{
		"repository:team/app:pull:push",
		"repository:team/app,other/app:pull",
		"repository:team/app:pull,,push,admin,*",
		"repository:other/app:pull repository:team/app:pull",
		"repository:team/app/../../other/app:pull",
		"repository:Team/App:pull",
		"repository:team/app:",
		"registry:catalog:*,push",
		"repository::pull",
		":::",
	} {
		st, tr := e.login("narrow", pw, scope)
		if st != 200 {
			t.Fatalf("scope %q: status %d; partial or no access is not an error", scope, st)
		}
		c := claimsOf(t, tr.Token)
		for _, a := range c.Access {
			if a.Type == "repository" && a.Name != "team/app" {
				t.Errorf("scope %q granted %s", scope, a.Name)
			}
			for _, act := range a.Actions {
				if a.Type == "repository" && act != "pull" {
					t.Errorf("scope %q granted %s on %s", scope, act, a.Name)
				}
			}
		}
	}
}

func claimsOf(t *testing.T, tok string) auth.Claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("malformed token %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c auth.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBruteForceIsSlowedDown(t *testing.T) {
	e := newEnv(t)
	pw, _ := e.newToken("victim", actions("app", "content/read")...)
	var last int
	var retry string
	for i := 0; i < 10; i++ {
		st, _, h := e.do("GET", "/oauth2/token?service=berth", basic("victim", "guess"), nil)
		last, retry = st, h.Get("Retry-After")
		if st == 429 {
			break
		}
	}
	if last != 429 || retry == "" {
		t.Fatalf("after repeated failures: status %d, Retry-After %q; want 429 with Retry-After", last, retry)
	}
	// While limited, even the right password is told to wait, on both faces.
	if st, _, _ := e.do("GET", "/v2/app/tags/list", basic("victim", pw), nil); st != 429 {
		t.Fatalf("Basic on /v2/ while limited: %d, want 429", st)
	}
}

func TestRefreshTokens(t *testing.T) {
	e := newEnv(t)
	pw, _ := e.newToken("refresher", actions("app", "content/read")...)
	_, body := e.doForm("grant_type=password&service=berth&access_type=offline&client_id=test&username=refresher&password=" + pw + "&scope=repository:app:pull")
	var tr tokenResp
	json.Unmarshal([]byte(body), &tr)
	if tr.RefreshToken == "" || tr.AccessToken == "" {
		t.Fatalf("password grant with offline access: %s", body)
	}
	// a refresh token is not an access token
	if st, _, _ := e.do("GET", "/v2/app/tags/list", bearer(tr.RefreshToken), nil); st != 401 {
		t.Fatalf("refresh token used as access token: %d", st)
	}
	form := "grant_type=refresh_token&service=berth&refresh_token="
	if st, body := e.doForm(form + tr.RefreshToken + "&scope=repository:app:pull"); st != 200 || !strings.Contains(body, "access_token") {
		t.Fatalf("refresh grant: %d %s", st, body)
	}
	// an access token is not a refresh token
	if st, _ := e.doForm(form + tr.AccessToken); st != 401 {
		t.Fatalf("access token used as refresh token: %d", st)
	}
	// disabling the token voids its refresh tokens
	disabled := "disabled"
	if _, err := e.id.UpdateToken(t.Context(), owner, "refresher", identityUpdate(&disabled)); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.doForm(form + tr.RefreshToken); st != 401 {
		t.Fatalf("refresh with a disabled token: %d", st)
	}
}
