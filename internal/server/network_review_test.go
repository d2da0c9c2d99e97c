package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/berth-registry/berth/internal/netrule"
)

// TestNetworkRulesFenceTokensOnTheAPI: a token is a data-plane identity,
// and the API's repository routes (list, tags, delete) are data-plane
// operations: from an address the registry-wide rules deny, neither its
// password nor an access token it got from an allowed address may use
// them there, while the owner still manages the rules.
func TestNetworkRulesFenceTokensOnTheAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rules := e.srv.Rules()
	base := e.http.URL
	pw, _ := e.newToken("ci-token", actions("app", "content/read", "metadata/read", "content/delete")...)
	if _, err := rules.AddRules(ctx, owner, []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	st, body := callFrom(t, "127.0.0.2", "GET", tokenURL(base, "repository:app:pull,delete"), basic("ci-token", pw), nil)
	if st != http.StatusOK {
		t.Fatalf("token from an allowed address: %d %s", st, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token answer %q", body)
	}
	tests := []struct {
		src, method, path, authz string
		want                     int
	}{
		{"127.0.0.2", "GET", "/api/v1/repositories", basic("ci-token", pw), http.StatusOK},
		{"127.0.0.2", "GET", "/api/v1/repositories/app", "Bearer " + tok.Token, http.StatusNotFound},
		{"127.0.0.3", "GET", "/api/v1/repositories", basic("ci-token", pw), http.StatusForbidden},
		{"127.0.0.3", "GET", "/api/v1/repositories/app", "Bearer " + tok.Token, http.StatusForbidden},
		{"127.0.0.3", "DELETE", "/api/v1/repositories/app", "Bearer " + tok.Token, http.StatusForbidden},
		{"127.0.0.3", "GET", "/api/v1/networkRuleSet", basic("owner", ownerPassword), http.StatusOK},
	}
	for _, tt := range tests {
		if st, body := callFrom(t, tt.src, tt.method, base+tt.path, tt.authz, nil); st != tt.want {
			t.Errorf("from %s: %s %s (%.12s…) = %d %s, want %d", tt.src, tt.method, tt.path, tt.authz, st, body, tt.want)
		}
	}
}
