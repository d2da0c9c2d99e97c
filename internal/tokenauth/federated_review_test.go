package tokenauth_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/testutil"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// TestFederatedLoginAcrossTokens: a JWT that satisfies one token's
// credential logs in as no other token, by username or client_id, and the
// refresh tokens of a federated login end with the token's disabling and
// with the credential, even one made again under the same name.
func TestFederatedLoginAcrossTokens(t *testing.T) {
	e := newFedEndpoint(t)
	ctx := context.Background()
	newToken(t, e.st.Identity, "other", "other/*", "content/read", "metadata/read")
	if _, err := e.st.Identity.CreateFederatedCredential(ctx, owner, "other", identity.FederatedCredential{
		Name: "other-main", Issuer: e.iss.URL, Subject: "repo:other/app:ref:refs/heads/main"}); err != nil {
		t.Fatal(err)
	}
	jwt := e.iss.Sign(t, ghClaims(), testutil.SignOptions{}) // satisfies ci-push's github-main only
	if code, _ := e.dockerLogin("other", jwt); code != http.StatusUnauthorized {
		t.Fatalf("ci-push's JWT as other's password: %d", code)
	}
	if code, _, _ := e.exchange(url.Values{"grant_type": {tokenauth.GrantTokenExchange}, "subject_token": {jwt},
		"subject_token_type": {tokenauth.TokenTypeJWT}, "client_id": {"other"}}); code != http.StatusUnauthorized {
		t.Fatalf("ci-push's JWT exchanged for other: %d", code)
	}
	code, a := e.dockerLogin("ci-push", jwt)
	if code != http.StatusOK || a.RefreshToken == "" {
		t.Fatalf("login: %d %+v", code, a)
	}
	refresh := func() int {
		code, _, _ := e.exchange(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "service": {"berth"}, "scope": {"repository:acme/app:pull"}})
		return code
	}
	// Renewing never extends a federated login past the JWT's exp.
	first, err := e.st.Identity.Verifier().VerifyRefresh(a.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	code, renewed, _ := e.exchange(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "service": {"berth"}, "scope": {"repository:acme/app:pull"}})
	if code != http.StatusOK || renewed.RefreshToken == "" {
		t.Fatalf("refresh: %d %+v", code, renewed)
	}
	second, err := e.st.Identity.Verifier().VerifyRefresh(renewed.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.ExpiresAt > first.ExpiresAt {
		t.Errorf("the renewed refresh token lasts until %d, past the first's %d (the JWT's exp)", second.ExpiresAt, first.ExpiresAt)
	}
	off, on := identity.StatusDisabled, identity.StatusEnabled
	if _, err := e.st.Identity.UpdateToken(ctx, owner, "ci-push", identity.TokenUpdate{Status: &off}); err != nil {
		t.Fatal(err)
	}
	if code := refresh(); code != http.StatusUnauthorized {
		t.Fatalf("refresh of a disabled token: %d", code)
	}
	if code, _ := e.dockerLogin("ci-push", a.RefreshToken); code != http.StatusUnauthorized {
		t.Fatalf("refresh token of a disabled token as password: %d", code)
	}
	if _, err := e.st.Identity.UpdateToken(ctx, owner, "ci-push", identity.TokenUpdate{Status: &on}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Identity.DeleteFederatedCredential(ctx, owner, "ci-push", "github-main"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Identity.CreateFederatedCredential(ctx, owner, "ci-push", identity.FederatedCredential{
		Name: "github-main", Issuer: e.iss.URL, Subject: "repo:acme/app:ref:refs/heads/main"}); err != nil {
		t.Fatal(err)
	}
	if code := refresh(); code != http.StatusUnauthorized {
		t.Fatalf("refresh token of a credential deleted and made again: %d", code)
	}
	if code, _ := e.dockerLogin("ci-push", a.RefreshToken); code != http.StatusUnauthorized {
		t.Fatalf("refresh token of a credential deleted and made again, as password: %d", code)
	}
}
