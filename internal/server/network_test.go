package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/server"
)

// from returns an HTTP client whose connections leave from the loopback
// address src (all of 127.0.0.0/8 is loopback), so that one test plays
// clients at several addresses.
func from(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// callFrom sends a request from src and returns the status and body.
func callFrom(t *testing.T, src, method, u, authz string, body io.Reader, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := from(src).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ociCode(t *testing.T, body string) (code, msg string) {
	t.Helper()
	var b struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || len(b.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return b.Errors[0].Code, b.Errors[0].Message
}

func tokenURL(base string, scopes ...string) string {
	return base + "/oauth2/token?" + url.Values{"service": {"berth"}, "scope": scopes}.Encode()
}

func TestNetworkRulesRegistryWide(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rules := e.srv.Rules()
	base := e.http.URL
	pull := "repository:app:pull"
	pw, _ := e.newToken("ci-token", actions("app", "content/read", "metadata/read")...)

	// Default Allow: rules name nothing, every address gets in.
	if _, err := rules.AddRules(ctx, owner, []string{"127.0.0.2", "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		if st, _ := callFrom(t, src, "GET", base+"/v2/", "", nil); st != http.StatusUnauthorized {
			t.Errorf("default Allow, from %s: GET /v2/ = %d, want 401 (the challenge)", src, st)
		}
	}

	if _, err := rules.SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src, method, url, authz string
		want                    int
	}{
		{"127.0.0.2", "GET", base + "/v2/", "", http.StatusUnauthorized},
		{"127.0.0.3", "GET", base + "/v2/", "", http.StatusForbidden},
		{"127.0.0.3", "GET", base + "/v2/app/tags/list", basic("ci-token", pw), http.StatusForbidden},
		{"127.0.0.2", "GET", base + "/v2/app/tags/list", basic("ci-token", pw), http.StatusNotFound},
		{"127.0.0.3", "GET", tokenURL(base, pull), basic("ci-token", pw), http.StatusForbidden},
		{"127.0.0.2", "GET", tokenURL(base, pull), basic("ci-token", pw), http.StatusOK},
		// A login for no scope is a management login (the CLI's): the
		// rules fence the data plane, so an operator can still reach
		// the API to change them.
		{"127.0.0.3", "GET", tokenURL(base), basic("owner", ownerPassword), http.StatusOK},
		{"127.0.0.3", "GET", base + "/api/v1/networkRuleSet", basic("owner", ownerPassword), http.StatusOK},
		{"127.0.0.3", "GET", base + "/healthz", "", http.StatusOK},
	}
	for _, tt := range tests {
		st, body := callFrom(t, tt.src, tt.method, tt.url, tt.authz, nil)
		if st != tt.want {
			t.Errorf("from %s: %s %s = %d %s, want %d", tt.src, tt.method, tt.url, st, body, tt.want)
			continue
		}
		if st == http.StatusForbidden {
			code, msg := ociCode(t, body)
			if code != "DENIED" || msg != "client address 127.0.0.3 is not allowed by the registry's network rules" {
				t.Errorf("from %s: %s %s: %s %q", tt.src, tt.method, tt.url, code, msg)
			}
		}
	}

	// A POST form asking for a scope is refused the same way.
	st, body := callFrom(t, "127.0.0.3", "POST", base+"/oauth2/token", "",
		strings.NewReader(url.Values{"grant_type": {"password"}, "service": {"berth"}, "username": {"ci-token"}, "password": {pw}, "scope": {pull}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	if st != http.StatusForbidden || !strings.Contains(body, `"access_denied"`) || !strings.Contains(body, "not allowed by the registry's network rules") {
		t.Errorf("POST /oauth2/token from a denied address: %d %s", st, body)
	}

	// Refusals are counted and audited, folded into one record per source.
	e.srv.FlushDenials()
	e.srv.Audit().Flush()
	evs, err := e.srv.Audit().List(ctx, audit.Filter{Kind: audit.KindNetwork})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].CallerIP != "127.0.0.3" || evs[0].Count < 4 || evs[0].Result != audit.ResultFailure {
		t.Errorf("network audit records %+v, want one folded record for 127.0.0.3", evs)
	}
	_, metrics, _ := e.do("GET", "/metrics", "", nil)
	if !strings.Contains(metrics, "berth_network_denied_total 4") {
		t.Errorf("metrics lack berth_network_denied_total 4:\n%s", grepLines(metrics, "network"))
	}

	// Through the API: add 127.0.0.3, and the next request gets in.
	st, body = callFrom(t, "127.0.0.3", "POST", base+"/api/v1/networkRuleSet/ipRules", basic("owner", ownerPassword),
		strings.NewReader(`{"ipRules":[{"ipAddressOrRange":"127.0.0.3"}]}`), "Content-Type", "application/json")
	if st != http.StatusOK || !strings.Contains(body, `"127.0.0.3/32"`) {
		t.Fatalf("add rule through the API: %d %s", st, body)
	}
	if st, _ := callFrom(t, "127.0.0.3", "GET", base+"/v2/", "", nil); st != http.StatusUnauthorized {
		t.Errorf("after allowing 127.0.0.3: GET /v2/ = %d, want 401", st)
	}
	// Back to Allow: rules stay but no longer matter.
	if _, err := rules.RemoveRules(ctx, owner, []string{"127.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := callFrom(t, "127.0.0.3", "GET", base+"/v2/", "", nil); st != http.StatusForbidden {
		t.Errorf("after removing 127.0.0.3: GET /v2/ = %d, want 403", st)
	}
	if _, err := rules.SetDefaultAction(ctx, owner, netrule.Allow); err != nil {
		t.Fatal(err)
	}
	if st, _ := callFrom(t, "127.0.0.3", "GET", base+"/v2/", "", nil); st != http.StatusUnauthorized {
		t.Errorf("default Allow again: GET /v2/ = %d, want 401", st)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func TestNetworkRulesPerToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := e.http.URL
	pull := "repository:app:pull"
	pw, _ := e.newToken("ci-token", actions("app", "content/read", "metadata/read")...)
	other, _ := e.newToken("other-token", actions("app", "content/read", "metadata/read")...)
	if _, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", []string{"127.0.0.2", "10.1.0.0/16"}); err != nil {
		t.Fatal(err)
	}

	// Logging in: allowed from 127.0.0.2 only.
	st, body := callFrom(t, "127.0.0.2", "GET", tokenURL(base, pull), basic("ci-token", pw), nil)
	if st != http.StatusOK {
		t.Fatalf("login from an allowed address: %d %s", st, body)
	}
	var tr tokenResp
	json.Unmarshal([]byte(body), &tr)
	st, body = callFrom(t, "127.0.0.3", "GET", tokenURL(base, pull), basic("ci-token", pw), nil)
	if st != http.StatusForbidden || !strings.Contains(body, "client address 127.0.0.3 is not allowed for token ci-token") {
		t.Errorf("login from another address: %d %s", st, body)
	}
	// Without a scope too: the token may not be used from there at all.
	if st, _ := callFrom(t, "127.0.0.3", "GET", tokenURL(base), basic("ci-token", pw), nil); st != http.StatusForbidden {
		t.Errorf("login for no scope from another address: %d, want 403", st)
	}

	// The access token issued to 127.0.0.2 is no use elsewhere, and Basic
	// credentials on /v2/ neither; other tokens are not affected.
	tests := []struct {
		src, authz string
		want       int
	}{
		{"127.0.0.2", bearer(tr.Token), http.StatusNotFound},
		{"127.0.0.3", bearer(tr.Token), http.StatusForbidden},
		{"127.0.0.2", basic("ci-token", pw), http.StatusNotFound},
		{"127.0.0.3", basic("ci-token", pw), http.StatusForbidden},
		{"127.0.0.3", basic("other-token", other), http.StatusNotFound},
	}
	for _, tt := range tests {
		st, body := callFrom(t, tt.src, "GET", base+"/v2/app/tags/list", tt.authz, nil)
		if st != tt.want {
			t.Errorf("from %s: tags/list = %d %s, want %d", tt.src, st, body, tt.want)
			continue
		}
		if st == http.StatusForbidden {
			if code, msg := ociCode(t, body); code != "DENIED" || msg != "client address 127.0.0.3 is not allowed for token ci-token" {
				t.Errorf("from %s: %s %q", tt.src, code, msg)
			}
		}
	}

	// The API's repository routes take tokens too: refused the same way.
	if st, body := callFrom(t, "127.0.0.3", "GET", base+"/api/v1/repositories", basic("ci-token", pw), nil); st != http.StatusForbidden || !strings.Contains(body, "not allowed for token ci-token") {
		t.Errorf("API as the token from another address: %d %s", st, body)
	}
	if st, body := callFrom(t, "127.0.0.2", "GET", base+"/api/v1/repositories", basic("ci-token", pw), nil); st != http.StatusOK {
		t.Errorf("API as the token from its address: %d %s", st, body)
	}

	// A change applies on the next request: now only 127.0.0.3.
	got, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", []string{"127.0.0.3"})
	if err != nil || len(got) != 1 || got[0] != "127.0.0.3/32" {
		t.Fatalf("set addresses: %v %v", got, err)
	}
	if st, _ := callFrom(t, "127.0.0.2", "GET", base+"/v2/app/tags/list", bearer(tr.Token), nil); st != http.StatusForbidden {
		t.Errorf("after the change, from 127.0.0.2: %d, want 403", st)
	}
	if st, _ := callFrom(t, "127.0.0.3", "GET", base+"/v2/app/tags/list", bearer(tr.Token), nil); st != http.StatusNotFound {
		t.Errorf("after the change, from 127.0.0.3: %d, want 404", st)
	}

	// Audited with the token's name, and through the API a 403.
	e.srv.FlushDenials()
	e.srv.Audit().Flush()
	evs, _ := e.srv.Audit().List(ctx, audit.Filter{Kind: audit.KindNetwork, Identity: "ci-token"})
	if len(evs) == 0 || evs[0].IdentityKind != "token" {
		t.Errorf("audit records %+v, want refusals of token ci-token", evs)
	}

	// Through the API: read and lift the restriction.
	st, body = callFrom(t, "127.0.0.2", "GET", base+"/api/v1/tokens/ci-token/allowedAddresses", basic("owner", ownerPassword), nil)
	if st != http.StatusOK || !strings.Contains(body, `"127.0.0.3/32"`) {
		t.Errorf("GET allowedAddresses: %d %s", st, body)
	}
	st, body = callFrom(t, "127.0.0.2", "PUT", base+"/api/v1/tokens/ci-token/allowedAddresses", basic("owner", ownerPassword),
		strings.NewReader(`{"allowedAddresses":["not-an-ip"]}`), "Content-Type", "application/json")
	if st != http.StatusBadRequest {
		t.Errorf("PUT a bad address: %d %s", st, body)
	}
	st, body = callFrom(t, "127.0.0.2", "PUT", base+"/api/v1/tokens/ci-token/allowedAddresses", basic("owner", ownerPassword),
		strings.NewReader(`{"allowedAddresses":[]}`), "Content-Type", "application/json")
	if st != http.StatusOK || !strings.Contains(body, `"allowedAddresses":[]`) {
		t.Errorf("PUT no addresses: %d %s", st, body)
	}
	if st, _ := callFrom(t, "127.0.0.2", "GET", base+"/v2/app/tags/list", basic("ci-token", pw), nil); st != http.StatusNotFound {
		t.Errorf("unrestricted again, from 127.0.0.2: %d, want 404", st)
	}
}

// TestNetworkRulesGoWithTheToken: a token deleted and created again under
// its name starts without the old one's allowed addresses.
func TestNetworkRulesGoWithTheToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.newToken("ci-token", actions("app", "content/read")...)
	if _, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", []string{"10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.id.DeleteToken(ctx, owner, "ci-token"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Rules().SetTokenAddresses(ctx, owner, "ci-token", []string{"10.0.0.1"}); err == nil {
		t.Error("set the addresses of a deleted token")
	}
	_, creds, err := e.id.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "ci-token-scope-map", Passwords: []string{"password1"}})
	if err != nil {
		t.Fatal(err)
	}
	pw := creds.Passwords[0].Value
	if got := e.srv.Rules().Token("ci-token"); len(got) != 0 {
		t.Errorf("the new token ci-token has the old one's addresses %v", got)
	}
	if st, body := callFrom(t, "127.0.0.1", "GET", tokenURL(e.http.URL, "repository:app:pull"), basic("ci-token", pw), nil); st != http.StatusOK {
		t.Errorf("login of the new token: %d %s", st, body)
	}
}

func TestNetworkRulesBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.9"} })
	ctx := context.Background()
	if _, err := e.srv.Rules().AddRules(ctx, owner, []string{"192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Rules().SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src, xff string
		want     int
	}{
		{"127.0.0.9", "192.0.2.10", http.StatusUnauthorized}, // the proxy vouches for the client
		{"127.0.0.9", "198.51.100.1", http.StatusForbidden},  // a client outside the rules
		{"127.0.0.8", "192.0.2.10", http.StatusForbidden},    // not a trusted proxy: its header proves nothing
		{"127.0.0.9", "192.0.2.10, 127.0.0.9", http.StatusUnauthorized},
		{"127.0.0.9", "192.0.2.10, 198.51.100.1", http.StatusForbidden}, // the right-most untrusted hop counts
	}
	for _, tt := range tests {
		if st, body := callFrom(t, tt.src, "GET", e.http.URL+"/v2/", "", nil, "X-Forwarded-For", tt.xff); st != tt.want {
			t.Errorf("from %s for %s: %d %s, want %d", tt.src, tt.xff, st, body, tt.want)
		}
	}
}

// TestAdminListener: with an admin address, the API, the portal and the
// metrics move there; the registry's address keeps /v2/ and the token
// endpoint, and the network rules never apply to the admin listener.
func TestAdminListener(t *testing.T) {
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
	if _, err := srv.Rules().SetDefaultAction(context.Background(), owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	owner := basic("owner", ownerPassword)
	tests := []struct {
		base, path, authz string
		want              int
	}{
		{reg, "/v2/", "", http.StatusForbidden}, // default Deny, no rules
		{reg, "/api/v1/tokens", owner, http.StatusNotFound},
		{reg, "/repositories", "", http.StatusNotFound},
		{reg, "/metrics", "", http.StatusNotFound},
		{reg, "/healthz", "", http.StatusOK},
		{reg, "/readyz", "", http.StatusOK},
		{admin, "/api/v1/tokens", owner, http.StatusOK},
		{admin, "/api/v1/networkRuleSet", owner, http.StatusOK},
		{admin, "/signin", "", http.StatusOK},
		{admin, "/metrics", "", http.StatusOK},
		{admin, "/healthz", "", http.StatusOK},
		{admin, "/oauth2/token?service=berth", owner, http.StatusOK},
		{admin, "/v2/", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		if st, body := callFrom(t, "127.0.0.1", "GET", tt.base+tt.path, tt.authz, nil); st != tt.want {
			t.Errorf("GET %s%s = %d, want %d: %.200s", tt.base, tt.path, st, tt.want, body)
		}
	}
	if _, body := callFrom(t, "127.0.0.1", "GET", reg+"/api/v1/tokens", owner, nil); !strings.Contains(body, "--admin-addr") {
		t.Errorf("the registry's answer for /api/ does not say where the API went: %s", body)
	}
}

// TestAdminListenerNeedsItsAddress: the admin handler is served exactly
// when the admin address is set.
func TestAdminListenerNeedsItsAddress(t *testing.T) {
	e := newEnv(t)
	if e.srv.AdminHandler() != nil {
		t.Fatal("an admin handler without --admin-addr")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	extra, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := e.srv.ServeAdmin(context.Background(), ln, extra); err == nil {
		t.Error("ServeAdmin served an admin listener without --admin-addr")
	}
}

// TestNetworkRulesAcrossNodes: a rule changed through one node of a
// PostgreSQL cluster is in force on the other on its very next request.
func TestNetworkRulesAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0].URL, c.nodes[1].URL
	c.mustAPI(t, 0, "POST", "/api/v1/networkRuleSet/ipRules", `{"ipRules":[{"ipAddressOrRange":"127.0.0.2"}]}`, http.StatusOK)
	c.mustAPI(t, 0, "PATCH", "/api/v1/networkRuleSet", `{"defaultAction":"Deny"}`, http.StatusOK)
	if st, body := callFrom(t, "127.0.0.3", "GET", n2+"/v2/", "", nil); st != http.StatusForbidden || !strings.Contains(body, "not allowed by the registry's network rules") {
		t.Errorf("node 2 after Deny through node 1, from 127.0.0.3: %d %s", st, body)
	}
	if st, _ := callFrom(t, "127.0.0.2", "GET", n2+"/v2/", "", nil); st != http.StatusUnauthorized {
		t.Errorf("node 2 from an allowed address: %d, want 401", st)
	}
	out := c.mustAPI(t, 1, "GET", "/api/v1/networkRuleSet", "", http.StatusOK)
	if !strings.Contains(out, `"defaultAction":"Deny"`) || !strings.Contains(out, `"127.0.0.2/32"`) {
		t.Errorf("node 2's rules: %s", out)
	}
	c.mustAPI(t, 1, "PATCH", "/api/v1/networkRuleSet", `{"defaultAction":"Allow"}`, http.StatusOK)
	if st, _ := callFrom(t, "127.0.0.3", "GET", n1+"/v2/", "", nil); st != http.StatusUnauthorized {
		t.Errorf("node 1 after Allow through node 2: %d, want 401", st)
	}

	// A token's allowed addresses, set through one node, changed through
	// the other; and gone with the token, on both.
	body := `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1"}]}}}`
	pw := c.createToken(t, 0, "ci-token", body)
	c.mustAPI(t, 0, "PUT", "/api/v1/tokens/ci-token/allowedAddresses", `{"allowedAddresses":["127.0.0.2"]}`, http.StatusOK)
	if st, body := callFrom(t, "127.0.0.3", "GET", n2+"/v2/", basic("ci-token", pw), nil); st != http.StatusForbidden || !strings.Contains(body, "not allowed for token ci-token") {
		t.Errorf("node 2, token from 127.0.0.3: %d %s", st, body)
	}
	if st, _ := callFrom(t, "127.0.0.2", "GET", n2+"/v2/", basic("ci-token", pw), nil); st != http.StatusOK {
		t.Errorf("node 2, token from 127.0.0.2: %d, want 200", st)
	}
	c.mustAPI(t, 1, "PUT", "/api/v1/tokens/ci-token/allowedAddresses", `{"allowedAddresses":["127.0.0.3"]}`, http.StatusOK)
	if st, _ := callFrom(t, "127.0.0.2", "GET", n1+"/v2/", basic("ci-token", pw), nil); st != http.StatusForbidden {
		t.Errorf("node 1 after the change through node 2, from 127.0.0.2: %d, want 403", st)
	}
	c.mustAPI(t, 0, "DELETE", "/api/v1/tokens/ci-token", "", http.StatusNoContent)
	pw = c.createToken(t, 1, "ci-token", body)
	for i, n := range []string{n1, n2} {
		if st, body := callFrom(t, "127.0.0.2", "GET", n+"/v2/", basic("ci-token", pw), nil); st != http.StatusOK {
			t.Errorf("node %d, the new token ci-token from 127.0.0.2: %d %s, want 200 (no allowed addresses)", i+1, st, body)
		}
	}
}

// TestNetworkRulesIPv6: rules and clients over IPv6 loopback.
func TestNetworkRulesIPv6(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	defer hs.Close()
	ctx := context.Background()
	if _, err := srv.Rules().SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		resp, err := http.Get(hs.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get(); st != http.StatusForbidden || !strings.Contains(body, "client address ::1 is not allowed") {
		t.Errorf("from ::1 with no rule: %d %s", st, body)
	}
	if _, err := srv.Rules().AddRules(ctx, owner, []string{"::/127"}); err != nil {
		t.Fatal(err)
	}
	if st, body := get(); st != http.StatusUnauthorized {
		t.Errorf("from ::1 inside ::/127: %d %s", st, body)
	}
}
