package tokenauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/publicurl"
	"github.com/berth-registry/berth/internal/testutil"
	"github.com/berth-registry/berth/internal/tokenauth"
)

type fedEndpoint struct {
	t     *testing.T
	st    *testutil.Stores
	h     *tokenauth.Service
	iss   *testutil.OIDCIssuer
	token string // the berth token's password
}

func newFedEndpoint(t *testing.T) *fedEndpoint {
	t.Helper()
	st := testutil.NewStores(t, ownerPassword, func(o *identity.Options) {
		o.RegistryName, o.OwnerUsername, o.FederationAllowHTTPLoopback = "berth", "owner", true
	})
	urls, err := publicurl.New("", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &fedEndpoint{t: t, st: st, iss: testutil.StartOIDCIssuer(t),
		h: tokenauth.New(tokenauth.Options{Identity: st.Identity, Audit: st.Audit, URLs: urls,
			Federation: federation.NewVerifier(federation.Options{AllowHTTPLoopback: true})})}
	e.token = newToken(t, st.Identity, "ci-push", "acme/*", "content/read", "content/write", "metadata/read")
	for _, c := range []identity.FederatedCredential{
		{Name: "github-main", Issuer: e.iss.URL, Subject: "repo:acme/app:ref:refs/heads/main", Claims: map[string]string{"repository_owner": "acme"}},
		{Name: "k8s-deployer", Issuer: e.iss.URL, Subject: "system:serviceaccount:prod:deployer"},
	} {
		if _, err := st.Identity.CreateFederatedCredential(context.Background(), owner, "ci-push", c); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *fedEndpoint) do(req *http.Request) (int, tokenAnswer, map[string]any) {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var a tokenAnswer
	var raw map[string]any
	json.Unmarshal(rec.Body.Bytes(), &a)
	json.Unmarshal(rec.Body.Bytes(), &raw)
	return rec.Code, a, raw
}

// dockerLogin is what docker login sends: GET with Basic credentials and
// offline_token.
func (e *fedEndpoint) dockerLogin(user, pass string) (int, tokenAnswer) {
	req := httptest.NewRequest(http.MethodGet, "/oauth2/token?service=berth&offline_token=true&client_id=docker&scope=repository:acme/app:pull,push", nil)
	req.SetBasicAuth(user, pass)
	code, a, _ := e.do(req)
	return code, a
}

func (e *fedEndpoint) exchange(form url.Values) (int, tokenAnswer, map[string]any) {
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

func (e *fedEndpoint) lastLogin() audit.Event {
	e.t.Helper()
	e.st.Audit.Flush()
	evs, err := e.st.Audit.List(context.Background(), audit.Filter{Kind: audit.KindLogin, Limit: 1})
	if err != nil || len(evs) == 0 {
		e.t.Fatalf("no login record (%v)", err)
	}
	return evs[0]
}

func ghClaims() map[string]any { return testutil.GitHubClaims("acme/app", "refs/heads/main", "berth") }

// TestFederatedLoginRefusals: every check a federated JWT fails is a 401
// and an audit record that names the check.
func TestFederatedLoginRefusals(t *testing.T) {
	e := newFedEndpoint(t)
	other := testutil.NewOIDCKey(t, "RS256")
	with := func(k string, v any) map[string]any { c := ghClaims(); c[k] = v; return c }
	now := time.Now()
	for _, tc := range []struct {
		name   string
		jwt    func() string
		reason string
	}{
		{"wrong issuer", func() string {
			return e.iss.Sign(t, with("iss", "https://token.actions.githubusercontent.com"), testutil.SignOptions{})
		}, "federated login: issuer:"},
		{"wrong audience", func() string { return e.iss.Sign(t, with("aud", "sigstore"), testutil.SignOptions{}) }, "federated login: audience:"},
		{"wrong subject", func() string {
			return e.iss.Sign(t, with("sub", "repo:acme/app:ref:refs/heads/dev"), testutil.SignOptions{})
		}, "federated login: subject:"},
		{"claim condition", func() string { return e.iss.Sign(t, with("repository_owner", "evil"), testutil.SignOptions{}) }, "federated login: claim:"},
		{"expired", func() string { return e.iss.Sign(t, with("exp", now.Add(-time.Hour).Unix()), testutil.SignOptions{}) }, "federated login: expired:"},
		{"not yet valid", func() string { return e.iss.Sign(t, with("nbf", now.Add(time.Hour).Unix()), testutil.SignOptions{}) }, "federated login: not yet valid:"},
		{"unknown kid", func() string { return e.iss.Sign(t, ghClaims(), testutil.SignOptions{Kid: "not-a-kid"}) }, "federated login: kid:"},
		{"alg other than the issuer's", func() string { return e.iss.Sign(t, ghClaims(), testutil.SignOptions{Alg: "RS512"}) }, "federated login: algorithm:"},
		{"HS256", func() string { return e.iss.Sign(t, ghClaims(), testutil.SignOptions{Alg: "HS256"}) }, "federated login: algorithm:"},
		{"signed by another key", func() string {
			return e.iss.Sign(t, ghClaims(), testutil.SignOptions{Key: other, Kid: e.iss.Key().Kid})
		}, "federated login: signature:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwt := tc.jwt()
			code, a := e.dockerLogin("ci-push", jwt)
			if code != http.StatusUnauthorized || a.Token != "" {
				t.Fatalf("status %d, token %q, want 401", code, a.Token)
			}
			if !strings.HasPrefix(a.Description, "federated login refused") {
				t.Errorf("message %q", a.Description)
			}
			ev := e.lastLogin()
			if ev.Result != audit.ResultFailure || !strings.HasPrefix(ev.Reason, tc.reason) || ev.Identity != "ci-push" {
				t.Fatalf("audit %+v, want a failure with reason %q...", ev, tc.reason)
			}
			if strings.Contains(ev.Reason, jwt) || strings.Contains(ev.Reason, strings.Split(jwt, ".")[2]) {
				t.Fatal("the JWT is in the audit record")
			}
			// The same JWT through a token exchange is refused alike.
			code, _, _ = e.exchange(url.Values{"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {jwt}, "subject_token_type": {tokenauth.TokenTypeJWT}})
			if code != http.StatusUnauthorized {
				t.Fatalf("exchange: status %d", code)
			}
		})
	}
	// Ten refusals in a row did not lock the token out: the right JWT
	// still logs in (a JWT cannot be guessed; they are not counted as
	// password guesses).
	if code, a := e.dockerLogin("ci-push", e.iss.Sign(t, ghClaims(), testutil.SignOptions{})); code != http.StatusOK || a.Token == "" {
		t.Fatalf("after the refusals: %d %+v", code, a)
	}
}

// TestFederatedLogin: a JWT as docker's password, as a password grant and
// through a token exchange logs in as the token, with its scope map; the
// token's password still works; disabling the token and deleting the
// credential apply to the next request.
func TestFederatedLogin(t *testing.T) {
	e := newFedEndpoint(t)
	jwt := e.iss.Sign(t, ghClaims(), testutil.SignOptions{})
	code, a := e.dockerLogin("ci-push", jwt)
	if code != http.StatusOK || a.Scope != "repository:acme/app:pull,push,metadata_read" || a.RefreshToken == "" {
		t.Fatalf("docker login: %d %+v", code, a)
	}
	ev := e.lastLogin()
	if ev.Result != audit.ResultSuccess || ev.Slot != "federated:github-main" || ev.Identity != "ci-push" {
		t.Fatalf("audit %+v", ev)
	}
	claims, err := e.st.Identity.Verifier().VerifyRefresh(a.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if max := time.Now().Add(5*time.Minute + time.Minute).Unix(); claims.ExpiresAt > max {
		t.Errorf("the refresh token of a 5-minute JWT lasts until %d", claims.ExpiresAt)
	}
	if code, a := e.dockerLogin("ci-push", e.token); code != http.StatusOK || a.Token == "" {
		t.Fatalf("password login of a token with federated credentials: %d", code)
	}
	// A password grant (POST) with the JWT.
	code, a, _ = e.exchange(url.Values{"grant_type": {"password"}, "username": {"ci-push"}, "password": {jwt}, "service": {"berth"}, "scope": {"repository:acme/app:pull"}})
	if code != http.StatusOK || a.Scope != "repository:acme/app:pull,metadata_read" {
		t.Fatalf("password grant: %d %+v", code, a)
	}
	// A Kubernetes service-account token through a token exchange naming
	// no token: the credential it satisfies names it.
	k8s := e.iss.Sign(t, testutil.KubernetesClaims("prod", "deployer", "berth"), testutil.SignOptions{})
	code, a, raw := e.exchange(url.Values{"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {k8s}, "subject_token_type": {tokenauth.TokenTypeJWT},
		"scope": {"repository:acme/app:pull repository:other/x:pull"}})
	if code != http.StatusOK || a.Scope != "repository:acme/app:pull,metadata_read" || raw["issued_token_type"] != tokenauth.TokenTypeAccessToken || raw["token_type"] != "Bearer" || raw["username"] != "ci-push" {
		t.Fatalf("exchange: %d %v", code, raw)
	}
	code, a, raw = e.exchange(url.Values{"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {k8s}, "subject_token_type": {tokenauth.TokenTypeJWT},
		"client_id": {"ci-push"}, "requested_token_type": {tokenauth.TokenTypeRefreshToken}})
	if code != http.StatusOK || raw["issued_token_type"] != tokenauth.TokenTypeRefreshToken || a.AccessToken == "" {
		t.Fatalf("exchange for a refresh token: %d %v", code, raw)
	}
	// That refresh token is a password for the token (the kubelet's).
	if code, _ := e.dockerLogin("ci-push", a.AccessToken); code != http.StatusOK {
		t.Fatalf("refresh token as password: %d", code)
	}
	if code, _ := e.dockerLogin("someone-else", a.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("refresh token as another's password: %d", code)
	}
	// Bad exchange requests are 400s that say what is wrong.
	for name, form := range map[string]url.Values{
		"no subject_token":   {"grant_type": {tokenauth.GrantTokenExchange}, "subject_token_type": {tokenauth.TokenTypeJWT}},
		"no type":            {"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {k8s}},
		"saml":               {"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {k8s}, "subject_token_type": {"urn:ietf:params:oauth:token-type:saml2"}},
		"requested id_token": {"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {k8s}, "subject_token_type": {tokenauth.TokenTypeJWT}, "requested_token_type": {tokenauth.TokenTypeIDToken}},
	} {
		if code, a, _ := e.exchange(form); code != http.StatusBadRequest || a.Error != "invalid_request" {
			t.Errorf("%s: %d %+v", name, code, a)
		}
	}

	// Disabling the token refuses the next login; enabling it lets it in.
	ctx := context.Background()
	off, on := identity.StatusDisabled, identity.StatusEnabled
	if _, err := e.st.Identity.UpdateToken(ctx, owner, "ci-push", identity.TokenUpdate{Status: &off}); err != nil {
		t.Fatal(err)
	}
	if code, a := e.dockerLogin("ci-push", jwt); code != http.StatusUnauthorized || !strings.Contains(a.Description, "token disabled") {
		t.Fatalf("disabled: %d %+v", code, a)
	}
	if ev := e.lastLogin(); ev.Reason != "federated login: token disabled" {
		t.Fatalf("audit %+v", ev)
	}
	if _, err := e.st.Identity.UpdateToken(ctx, owner, "ci-push", identity.TokenUpdate{Status: &on}); err != nil {
		t.Fatal(err)
	}
	code, a = e.dockerLogin("ci-push", jwt)
	if code != http.StatusOK {
		t.Fatalf("enabled again: %d", code)
	}
	// Deleting the credential refuses the next login and the refresh
	// tokens it issued.
	if err := e.st.Identity.DeleteFederatedCredential(ctx, owner, "ci-push", "github-main"); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.dockerLogin("ci-push", jwt); code != http.StatusUnauthorized {
		t.Fatalf("deleted credential: %d", code)
	}
	code, _, _ = e.exchange(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "service": {"berth"}, "scope": {"repository:acme/app:pull"}})
	if code != http.StatusUnauthorized {
		t.Fatalf("refresh token of a deleted credential: %d", code)
	}
}

// TestFederatedExchangeAmbiguous: a JWT that two tokens' credentials
// trust must name one.
func TestFederatedExchangeAmbiguous(t *testing.T) {
	e := newFedEndpoint(t)
	newToken(t, e.st.Identity, "ci-other", "other/*", "content/read")
	if _, err := e.st.Identity.CreateFederatedCredential(context.Background(), owner, "ci-other",
		identity.FederatedCredential{Name: "any-acme", Issuer: e.iss.URL, Subject: "repo:acme/*"}); err != nil {
		t.Fatal(err)
	}
	jwt := e.iss.Sign(t, ghClaims(), testutil.SignOptions{})
	form := url.Values{"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {jwt}, "subject_token_type": {tokenauth.TokenTypeIDToken}}
	if code, a, _ := e.exchange(form); code != http.StatusUnauthorized || !strings.Contains(a.Description, "client_id") {
		t.Fatalf("ambiguous: %d %+v", code, a)
	}
	form.Set("client_id", "ci-other")
	form.Set("scope", "repository:other/x:pull")
	if code, a, _ := e.exchange(form); code != http.StatusOK || a.Scope != "repository:other/x:pull" {
		t.Fatalf("named: %d %+v", code, a)
	}
}
