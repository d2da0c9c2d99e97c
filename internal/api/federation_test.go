package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
)

func TestFederatedCredentialRoutes(t *testing.T) {
	f := newFixture(t)
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/ci-token", map[string]any{"properties": map[string]any{
		"scopeMapActions": []string{"repositories/acme/*/content/read"}}})
	base := "/api/v1/tokens/ci-token/federatedCredentials"
	gh := map[string]any{"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:acme/app:ref:refs/heads/main",
		"claims": map[string]string{"repository_owner": "acme"}}

	rec := f.must(http.StatusCreated, "owner", "PUT", base+"/github-main", gh)
	fc := decodeAs[identity.FederatedCredential](t, rec)
	if fc.Name != "github-main" || fc.Audience != "berth" || fc.Claims["repository_owner"] != "acme" || fc.CreationTime.IsZero() {
		t.Fatalf("created %+v", fc)
	}
	f.must(http.StatusCreated, "owner", "PUT", base+"/k8s-prod", map[string]any{"issuer": "https://kubernetes.default.svc",
		"subject": "system:serviceaccount:prod:*", "audience": "registry.example",
		"jwks": map[string]any{"keys": []any{map[string]any{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}}})

	list := decodeAs[List[identity.FederatedCredential]](t, f.must(http.StatusOK, "reader", "GET", base, nil))
	if len(list.Value) != 2 || list.Value[0].Name != "github-main" || list.Value[1].Name != "k8s-prod" || len(list.Value[1].JWKS) == 0 {
		t.Fatalf("list %+v", list)
	}
	if got := decodeAs[identity.FederatedCredential](t, f.must(http.StatusOK, "reader", "GET", base+"/k8s-prod", nil)); got.Audience != "registry.example" {
		t.Fatalf("get %+v", got)
	}

	for _, tc := range []struct {
		name, user, method, path string
		body                     any
		want                     int
		msg                      string
	}{
		{"http issuer", "owner", "PUT", base + "/x-http", map[string]any{"issuer": "http://idp.example", "subject": "s"}, 400, "https"},
		{"no subject", "owner", "PUT", base + "/x-nosub", map[string]any{"issuer": "https://idp.example"}, 400, "subject"},
		{"unknown field", "owner", "PUT", base + "/x-field", map[string]any{"issuer": "https://idp.example", "subject": "s", "audiences": []string{"a"}}, 400, "audiences"},
		{"duplicate", "owner", "PUT", base + "/github-main", gh, 409, "already"},
		{"reader may not add", "reader", "PUT", base + "/x-reader", gh, 403, ""},
		{"unknown token", "owner", "GET", "/api/v1/tokens/nobody-here/federatedCredentials", nil, 404, "not found"},
		{"unknown credential", "owner", "GET", base + "/nope", nil, 404, "no federated credential"},
		{"reader may not delete", "reader", "DELETE", base + "/github-main", nil, 403, ""},
	} {
		rec := f.do(tc.user, tc.method, tc.path, tc.body)
		if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.msg) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, rec.Code, rec.Body, tc.want, tc.msg)
		}
	}

	f.must(http.StatusNoContent, "owner", "DELETE", base+"/github-main", nil)
	f.must(http.StatusNotFound, "owner", "DELETE", base+"/github-main", nil)
	if list := decodeAs[List[identity.FederatedCredential]](t, f.must(http.StatusOK, "owner", "GET", base, nil)); len(list.Value) != 1 {
		t.Fatalf("after delete: %+v", list)
	}
}
