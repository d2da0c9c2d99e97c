package federation_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/testutil"
)

func githubCred(iss *testutil.OIDCIssuer) federation.Credential {
	return federation.Credential{Token: "ci", Name: "github-main", Issuer: iss.URL,
		Subject: "repo:acme/app:ref:refs/heads/main", Audience: "berth",
		Claims: map[string]string{"repository_owner": "acme"}}
}

// TestVerifyChecks is the table of what a federated JWT must satisfy:
// each refusal names the check that failed.
func TestVerifyChecks(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	other := testutil.NewOIDCKey(t, "RS256")
	ec := testutil.NewOIDCKey(t, "ES256")
	v := federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})
	cred := githubCred(iss)
	ok := func() map[string]any { return testutil.GitHubClaims("acme/app", "refs/heads/main", "berth") }
	with := func(k string, val any) map[string]any {
		c := ok()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	now := time.Now()
	cases := []struct {
		name   string
		claims map[string]any
		opts   testutil.SignOptions
		cred   func(federation.Credential) federation.Credential
		want   federation.Check // "" = accepted
	}{
		{name: "github token", claims: ok()},
		{name: "subject glob", claims: with("sub", "repo:acme/app:ref:refs/heads/release/1"),
			cred: func(c federation.Credential) federation.Credential {
				c.Subject = "repo:acme/app:ref:refs/heads/*"
				return c
			}},
		{name: "audience in a list", claims: with("aud", []string{"other", "berth"})},
		{name: "skew tolerated", claims: with("nbf", now.Add(10*time.Second).Unix())},
		{name: "wrong issuer", claims: with("iss", "https://evil.example"), want: federation.CheckIssuer},
		{name: "wrong audience", claims: with("aud", "sts.amazonaws.com"), want: federation.CheckAudience},
		{name: "no audience", claims: with("aud", nil), want: federation.CheckAudience},
		{name: "wrong subject", claims: with("sub", "repo:acme/app:ref:refs/heads/dev"), want: federation.CheckSubject},
		{name: "subject glob does not match", claims: with("sub", "repo:acme/other:ref:refs/heads/main"),
			cred: func(c federation.Credential) federation.Credential { c.Subject = "repo:acme/app:*"; return c }, want: federation.CheckSubject},
		{name: "claim condition", claims: with("repository_owner", "evil"), want: federation.CheckClaim},
		{name: "claim missing", claims: with("repository_owner", nil), want: federation.CheckClaim},
		{name: "expired", claims: with("exp", now.Add(-time.Minute).Unix()), want: federation.CheckExpired},
		{name: "no exp", claims: with("exp", nil), want: federation.CheckMalformed},
		{name: "not yet valid", claims: with("nbf", now.Add(5*time.Minute).Unix()), want: federation.CheckNotYet},
		{name: "issued in the future", claims: with("iat", now.Add(5*time.Minute).Unix()), want: federation.CheckNotYet},
		{name: "lifetime too long", claims: with("exp", now.Add(48*time.Hour).Unix()), want: federation.CheckLifetime},
		{name: "unknown kid", claims: ok(), opts: testutil.SignOptions{Kid: "nope"}, want: federation.CheckKeyID},
		{name: "alg other than the issuer's", claims: ok(), opts: testutil.SignOptions{Alg: "RS384"}, want: federation.CheckAlgorithm},
		{name: "alg PS256 with the RS256 key", claims: ok(), opts: testutil.SignOptions{Alg: "PS256"}, want: federation.CheckAlgorithm},
		{name: "HS256 with the public key", claims: ok(), opts: testutil.SignOptions{Alg: "HS256"}, want: federation.CheckAlgorithm},
		{name: "signed by another key", claims: ok(), opts: testutil.SignOptions{Key: other, Kid: iss.Key().Kid}, want: federation.CheckSignature},
		{name: "ES256 key under the issuer's kid", claims: ok(), opts: testutil.SignOptions{Key: ec, Kid: iss.Key().Kid}, want: federation.CheckAlgorithm},
		{name: "garbage", claims: nil, want: federation.CheckMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cred
			if tc.cred != nil {
				c = tc.cred(c)
			}
			tok := "eyJhbGciOiJSUzI1NiJ9.bm9wZQ.bm9wZQ"
			if tc.claims != nil {
				tok = iss.Sign(t, tc.claims, tc.opts)
			}
			res, f := v.Verify(context.Background(), tok, []federation.Credential{c})
			if tc.want == "" {
				if f != nil {
					t.Fatalf("refused: %v", f)
				}
				if len(res.Matches) != 1 || res.Matches[0].Name != c.Name {
					t.Fatalf("matches %+v", res.Matches)
				}
				return
			}
			if f == nil {
				t.Fatalf("accepted, want refused by the %s check", tc.want)
			}
			if f.Check != tc.want {
				t.Fatalf("refused by the %s check (%v), want %s", f.Check, f, tc.want)
			}
		})
	}
}

// TestVerifyKubernetesInlineJWKS: an offline issuer (a cluster's
// service-account issuer berth cannot reach) is trusted through the JWKS
// the credential holds, and nothing is fetched.
func TestVerifyKubernetesInlineJWKS(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	v := federation.NewVerifier(federation.Options{})
	cred := federation.Credential{Token: "deployer", Name: "prod-deployer", Issuer: "https://kubernetes.default.svc.cluster.local",
		Subject: "system:serviceaccount:prod:deployer", Audience: "berth", JWKS: iss.JWKS()}
	if err := cred.Validate(false); err != nil {
		t.Fatal(err)
	}
	claims := testutil.KubernetesClaims("prod", "deployer", "berth")
	claims["iss"] = cred.Issuer
	if _, f := v.Verify(context.Background(), iss.Sign(t, claims, testutil.SignOptions{}), []federation.Credential{cred}); f != nil {
		t.Fatal(f)
	}
	claims = testutil.KubernetesClaims("dev", "deployer", "berth")
	claims["iss"] = cred.Issuer
	if _, f := v.Verify(context.Background(), iss.Sign(t, claims, testutil.SignOptions{}), []federation.Credential{cred}); f == nil || f.Check != federation.CheckSubject {
		t.Fatalf("another namespace's account: %v", f)
	}
	if n := iss.DiscoveryFetches.Load() + iss.JWKSFetches.Load(); n != 0 {
		t.Fatalf("%d fetches for an inline JWKS", n)
	}
}

// TestVerifyKeyRotation: a token signed with a key the issuer has just
// published is accepted (the unknown kid makes berth fetch the keys
// again), and cached keys are not fetched again for every login.
func TestVerifyKeyRotation(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	v := federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})
	cred := githubCred(iss)
	login := func() *federation.Failure {
		_, f := v.Verify(context.Background(), iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{}), []federation.Credential{cred})
		return f
	}
	for range 20 {
		if f := login(); f != nil {
			t.Fatal(f)
		}
	}
	if n := iss.JWKSFetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for 20 logins, want once", n)
	}
	iss.Rotate(t, "ES256", true)
	if f := login(); f != nil {
		t.Fatalf("after rotation: %v", f)
	}
	if n := iss.JWKSFetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

// TestVerifyUnknownKidRefreshesAreBounded: tokens naming random kids make
// berth fetch the issuer's keys a bounded number of times, not once each.
func TestVerifyUnknownKidRefreshesAreBounded(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	clock := time.Now()
	var mu sync.Mutex
	v := federation.NewVerifier(federation.Options{AllowHTTPLoopback: true, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	cred := githubCred(iss)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{Kid: "random-" + testutil.RandomString(4) + string(rune('a'+i%26))})
			if _, f := v.Verify(context.Background(), tok, []federation.Credential{cred}); f == nil || f.Check != federation.CheckKeyID {
				t.Errorf("random kid: %v", f)
			}
		}()
	}
	wg.Wait()
	if n := iss.JWKSFetches.Load(); n > 6 {
		t.Fatalf("200 random kids caused %d JWKS fetches, want at most 6 (a burst of 5 after the first)", n)
	}
	// The bucket refills with time: a rotation is followed later on.
	before := iss.JWKSFetches.Load()
	iss.Rotate(t, "RS256", false)
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	if _, f := v.Verify(context.Background(), iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{}), []federation.Credential{cred}); f != nil {
		t.Fatalf("after the bucket refilled: %v", f)
	}
	if iss.JWKSFetches.Load() != before+1 {
		t.Fatal("the rotated key was not fetched")
	}
}

// TestVerifyFetchLimits: an issuer is fetched over https only (http on
// loopback when allowed), its discovery document must name it, and
// oversized or slow answers are refused.
func TestVerifyFetchLimits(t *testing.T) {
	iss := testutil.StartOIDCIssuer(t)
	tok := iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{})

	strict := federation.NewVerifier(federation.Options{})
	if _, f := strict.Verify(context.Background(), tok, []federation.Credential{githubCred(iss)}); f == nil || f.Check != federation.CheckKeys || !strings.Contains(f.Detail, "https") {
		t.Fatalf("http issuer without the loopback flag: %v", f)
	}
	if iss.DiscoveryFetches.Load() != 0 {
		t.Fatal("an http issuer was fetched")
	}

	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"`))
		w.Write([]byte(strings.Repeat("x", 2<<20)))
	}))
	defer huge.Close()
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"` + iss.URL + `","jwks_uri":"` + iss.URL + `/.well-known/jwks"}`))
	}))
	defer liar.Close()
	v := federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})
	for name, url := range map[string]string{"oversized": huge.URL, "names another issuer": liar.URL} {
		c := githubCred(iss)
		c.Issuer = url
		claims := testutil.GitHubClaims("acme/app", "refs/heads/main", "berth")
		claims["iss"] = url
		if _, f := v.Verify(context.Background(), iss.Sign(t, claims, testutil.SignOptions{}), []federation.Credential{c}); f == nil || f.Check != federation.CheckKeys {
			t.Errorf("%s: %v", name, f)
		}
	}
}

func TestValidate(t *testing.T) {
	good := federation.Credential{Name: "ci-main", Issuer: "https://token.actions.githubusercontent.com", Subject: "repo:acme/app:*", Audience: "berth"}
	if err := good.Validate(false); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*federation.Credential){
		"http issuer":        func(c *federation.Credential) { c.Issuer = "http://token.actions.githubusercontent.com" },
		"http loopback":      func(c *federation.Credential) { c.Issuer = "http://127.0.0.1:8080" },
		"no subject":         func(c *federation.Credential) { c.Subject = "" },
		"wildcard subject":   func(c *federation.Credential) { c.Subject = "*" },
		"bad name":           func(c *federation.Credential) { c.Name = "-x" },
		"condition on sub":   func(c *federation.Credential) { c.Claims = map[string]string{"sub": "x"} },
		"private key jwks":   func(c *federation.Credential) { c.JWKS = []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`) },
		"jwks without keys":  func(c *federation.Credential) { c.JWKS = []byte(`{"keys":[]}`) },
		"issuer with query":  func(c *federation.Credential) { c.Issuer = "https://x.example/?a=b" },
		"empty audience":     func(c *federation.Credential) { c.Audience = "" },
		"issuer not a URL":   func(c *federation.Credential) { c.Issuer = "token.actions" },
		"too many claims":    func(c *federation.Credential) { c.Claims = manyClaims() },
		"claim without name": func(c *federation.Credential) { c.Claims = map[string]string{"": "x"} },
	} {
		c := good
		mut(&c)
		if err := c.Validate(false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := good
	c.Issuer = "http://127.0.0.1:8080"
	if err := c.Validate(true); err != nil {
		t.Errorf("http loopback with the flag: %v", err)
	}
}

func manyClaims() map[string]string {
	m := map[string]string{}
	for i := range 20 {
		m[strings.Repeat("c", i+1)] = "v"
	}
	return m
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true},
		{"repo:acme/app:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/mainx", false},
		{"repo:acme/app:*", "repo:acme/app:ref:refs/tags/v1", true},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/x/y:ref:refs/heads/main", true},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/x:ref:refs/heads/dev", false},
		{"system:serviceaccount:prod:*", "system:serviceaccount:prod:deployer", true},
		{"system:serviceaccount:prod:*", "system:serviceaccount:production:deployer", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*a*a*a*a*b", strings.Repeat("a", 100), false},
	} {
		if got := federation.Match(tc.p, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// TestVerifyHTTPSIssuer: an https issuer is trusted through the CAs given
// (--federation-ca-file), and refused when its certificate chains to none.
func TestVerifyHTTPSIssuer(t *testing.T) {
	iss := testutil.StartOIDCIssuerTLS(t)
	cred := githubCred(iss)
	if err := cred.Validate(false); err != nil {
		t.Fatalf("an https issuer on loopback: %v", err)
	}
	tok := iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{})
	if _, f := federation.NewVerifier(federation.Options{}).Verify(context.Background(), tok, []federation.Credential{cred}); f == nil || f.Check != federation.CheckKeys {
		t.Fatalf("an issuer whose CA is unknown: %v", f)
	}
	if _, f := federation.NewVerifier(federation.Options{RootCAs: iss.CA}).Verify(context.Background(), tok, []federation.Credential{cred}); f != nil {
		t.Fatalf("with the issuer's CA: %v", f)
	}
}
