package federation_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/testutil"
)

// signRaw signs a JWT with exactly the header and payload given (RS256
// with key), so that a test can shape what a library would not emit.
func signRaw(t *testing.T, key *testutil.OIDCKey, header string, payload []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key.Key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc.EncodeToString(sig)
}

// TestVerifyHostileJWTs: JWTs shaped to slip past the checks are refused,
// and the documented leniencies (aud lists, non-string claims in their
// JSON form) hold.
func TestVerifyHostileJWTs(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	v := federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})
	key := iss.Key()
	claims := func(edit func(map[string]any)) []byte {
		c := testutil.GitHubClaims("acme/app", "refs/heads/main", "berth")
		c["iss"] = iss.URL
		if edit != nil {
			edit(c)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hdr := `{"alg":"RS256","typ":"JWT","kid":"` + key.Kid + `"}`
	good := claims(nil)
	enc := base64.RawURLEncoding
	isslast := []byte(strings.Replace(string(good), `"iss":"`+iss.URL+`"`, `"iss":"https://evil.example"`, 1))
	isslast = append(isslast[:len(isslast)-1], []byte(`,"ISS":"`+iss.URL+`"}`)...)
	cases := []struct {
		name string
		jwt  string
		cred func(*federation.Credential)
		want federation.Check // "" = accepted
	}{
		{name: "raw signing works", jwt: signRaw(t, key, hdr, good)},
		{name: "alg none", jwt: enc.EncodeToString([]byte(`{"alg":"none","kid":"`+key.Kid+`"}`)) + "." + enc.EncodeToString(good) + ".", want: federation.CheckAlgorithm},
		{name: "alg none, RS256 in another case", jwt: signRaw(t, key, `{"alg":"none","ALG":"RS256","kid":"`+key.Kid+`"}`, good), want: federation.CheckMalformed},
		{name: "crit header", jwt: signRaw(t, key, `{"alg":"RS256","kid":"`+key.Kid+`","crit":["exp"],"exp":1}`, good), want: federation.CheckMalformed},
		{name: "no kid, one key", jwt: signRaw(t, key, `{"alg":"RS256"}`, good)},
		{name: "iss with a trailing slash", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["iss"] = iss.URL + "/" })), want: federation.CheckIssuer},
		{name: "iss in upper case", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["iss"] = strings.ToUpper(iss.URL) })), want: federation.CheckIssuer},
		// Claim names are case-sensitive: "ISS" is not the issuer, whatever
		// a case-insensitive decoder makes of it.
		{name: "iss elsewhere, ISS trusted", jwt: signRaw(t, key, hdr, isslast), want: federation.CheckIssuer},
		{name: "aud list with ours", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["aud"] = []string{"a", "berth", "b"} }))},
		{name: "aud as a number", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["aud"] = 1 })), want: federation.CheckAudience},
		{name: "sub not a string", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["sub"] = []string{"repo:acme/app:ref:refs/heads/main"} })), want: federation.CheckSubject},
		{name: "exp as a string", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["exp"] = "9999999999" })), want: federation.CheckMalformed},
		{name: "claim as a list", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["repository_owner"] = []string{"acme"} })), want: federation.CheckClaim},
		{name: "boolean claim in its JSON form", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["protected"] = true })),
			cred: func(c *federation.Credential) { c.Claims = map[string]string{"protected": "true"} }},
		{name: "boolean claim false", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["protected"] = false })),
			cred: func(c *federation.Credential) { c.Claims = map[string]string{"protected": "true"} }, want: federation.CheckClaim},
		{name: "subject glob crosses ':' as documented", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["sub"] = "repo:acme/app:pull_request" })),
			cred: func(c *federation.Credential) { c.Subject = "repo:acme/*" }},
		{name: "payload is a nested JWT", jwt: signRaw(t, key, `{"alg":"RS256","cty":"JWT","kid":"`+key.Kid+`"}`, []byte(signRaw(t, key, hdr, good))), want: federation.CheckMalformed},
		{name: "JWE shape", jwt: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", want: federation.CheckMalformed},
		{name: "oversize", jwt: signRaw(t, key, hdr, claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", federation.MaxJWTSize) })), want: federation.CheckMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := githubCred(iss)
			if tc.cred != nil {
				tc.cred(&c)
			}
			res, f := v.Verify(context.Background(), tc.jwt, []federation.Credential{c})
			switch {
			case tc.want == "" && f != nil:
				t.Fatalf("refused: %v", f)
			case tc.want == "" && len(res.Matches) != 1:
				t.Fatalf("matches %+v", res.Matches)
			case tc.want != "" && f == nil:
				t.Fatalf("accepted, want refused by the %s check", tc.want)
			case tc.want != "" && f.Check != tc.want:
				t.Fatalf("refused by the %s check (%v), want %s", f.Check, f, tc.want)
			}
		})
	}

	// Without a kid, a JWT is refused once the issuer has several keys.
	iss.Rotate(t, "RS256", false)
	v = federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})
	if _, f := v.Verify(context.Background(), signRaw(t, key, `{"alg":"RS256"}`, claims(nil)), []federation.Credential{githubCred(iss)}); f == nil || f.Check != federation.CheckKeyID {
		t.Fatalf("no kid with two keys: %v", f)
	}
}

// TestVerifyDiscoveryStaysOnHTTPS: an https issuer whose discovery
// document points its jwks_uri at plain http, or which redirects there, is
// not trusted.
func TestVerifyDiscoveryStaysOnHTTPS(t *testing.T) {
	keys := testutil.StartOIDCIssuer(t) // serves the keys on plain http
	var tlsURL string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/http-jwks/.well-known/openid-configuration":
			w.Write([]byte(`{"issuer":"` + tlsURL + `/http-jwks","jwks_uri":"` + keys.URL + `/.well-known/jwks"}`))
		case "/redirect/.well-known/openid-configuration":
			w.Write([]byte(`{"issuer":"` + tlsURL + `/redirect","jwks_uri":"` + tlsURL + `/redirect/jwks"}`))
		case "/redirect/jwks":
			http.Redirect(w, r, keys.URL+"/.well-known/jwks", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tlsURL = srv.URL
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	v := federation.NewVerifier(federation.Options{RootCAs: pool})
	for _, path := range []string{"/http-jwks", "/redirect"} {
		c := githubCred(keys)
		c.Issuer = srv.URL + path
		claims := testutil.GitHubClaims("acme/app", "refs/heads/main", "berth")
		claims["iss"] = c.Issuer
		_, f := v.Verify(context.Background(), keys.Sign(t, claims, testutil.SignOptions{}), []federation.Credential{c})
		if f == nil || f.Check != federation.CheckKeys || !strings.Contains(f.Detail, "https") {
			t.Errorf("%s: %v", path, f)
		}
	}
}
