package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/server"
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

// TestAdminListenerOddPaths: unusual spellings of the paths reach neither
// the management API and portal on the registry's address nor the
// registry past its rules.
func TestAdminListenerOddPaths(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.AdminAddr = "127.0.0.1:0"
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	regLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeAdmin(ctx, regLn, adminLn) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	reg, admin := "http://"+regLn.Addr().String(), "http://"+adminLn.Addr().String()
	if _, err := srv.Rules().SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	own := basic("owner", ownerPassword)
	// The token endpoint is one on both listeners: a scope is fenced.
	if st, body := callFrom(t, "127.0.0.1", "GET", tokenURL(admin, "repository:app:pull"), own, nil); st != http.StatusForbidden {
		t.Errorf("admin listener, token for a scope from a denied address: %d %.200s", st, body)
	}
	for _, tt := range []struct{ base, path string }{
		{reg, "/v2"},
		{reg, "//v2/"},
		{reg, "/v2/../api/v1/tokens"},
		{reg, "//api/v1/tokens"},
		{reg, "/./api/v1/tokens"},
		{reg, "/API/v1/tokens"},
		{reg, "/%61pi/v1/tokens"},
		{reg, "/signin"},
		{admin, "/v2"},
		{admin, "/v2/../v2/"},
	} {
		st, body := callFrom(t, "127.0.0.1", "GET", tt.base+tt.path, own, nil)
		if st == http.StatusOK || strings.Contains(body, `"tokens"`) || strings.Contains(body, "<form") {
			t.Errorf("GET %s%s = %d %.200s, want a refusal", tt.base, tt.path, st, body)
		}
	}
}

// TestNetworkRulesRefreshFromElsewhere: a refresh token a token got from
// its allowed address renews nothing elsewhere (with or without a scope,
// as a grant or as the password), and the registry-wide rules refuse a
// refresh grant for a scope from a denied address.
func TestNetworkRulesRefreshFromElsewhere(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := e.http.URL
	pw, _ := e.newToken("ci-token", actions("app", "content/read", "metadata/read")...)
	if _, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	st, body := callFrom(t, "127.0.0.2", "GET", tokenURL(base, "repository:app:pull")+"&offline_token=true", basic("ci-token", pw), nil)
	var tr tokenResp
	if err := json.Unmarshal([]byte(body), &tr); st != http.StatusOK || err != nil || tr.RefreshToken == "" {
		t.Fatalf("login with offline_token: %d %s", st, body)
	}
	grant := func(src string, scope ...string) int {
		form := url.Values{"grant_type": {"refresh_token"}, "service": {"berth"}, "refresh_token": {tr.RefreshToken}, "scope": scope}
		st, _ := callFrom(t, src, "POST", base+"/oauth2/token", "", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		return st
	}
	if st := grant("127.0.0.2", "repository:app:pull"); st != http.StatusOK {
		t.Fatalf("refresh from the allowed address: %d", st)
	}
	if st := grant("127.0.0.3", "repository:app:pull"); st != http.StatusForbidden {
		t.Errorf("refresh for a scope from elsewhere: %d, want 403", st)
	}
	if st := grant("127.0.0.3"); st != http.StatusForbidden {
		t.Errorf("refresh for no scope from elsewhere: %d, want 403", st)
	}
	if st, body := callFrom(t, "127.0.0.3", "GET", base+"/v2/app/tags/list", basic("ci-token", tr.RefreshToken), nil); st != http.StatusForbidden {
		t.Errorf("refresh token as the password on /v2/ from elsewhere: %d %s", st, body)
	}

	// Registry-wide: the token may be used anywhere, the registry only
	// from 127.0.0.2.
	if _, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Rules().AddRules(ctx, owner, []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Rules().SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	if st := grant("127.0.0.3", "repository:app:pull"); st != http.StatusForbidden {
		t.Errorf("refresh for a scope from a denied address: %d, want 403", st)
	}
	if st := grant("127.0.0.2", "repository:app:pull"); st != http.StatusOK {
		t.Errorf("refresh for a scope from an allowed address: %d", st)
	}
}
