package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testutil"
)

// portalPages are the portal's pages that TestPortal checks the looks of
// (checkLooks), by route pattern as internal/ui registers it: each GET
// pattern of the portal is here or in notPortalPages, which
// TestPortalPagesCoverRoutes enforces, so a new page cannot be left out.
// In a path, {user} is the signed-in owner's name.
var portalPages = []struct{ pattern, path string }{
	{"GET /overview", "/overview"},
	{"GET /account", "/account"},
	{"GET /repositories", "/repositories"},
	{"GET /repositories/{path...}", "/repositories/demo/app"},
	{"GET /repositories/{path...}", "/repositories/demo/app/-/manifests/v1"},
	{"GET /repositories/{path...}", "/repositories/demo/app/-/delete"},
	{"GET /scope-maps", "/scope-maps"},
	{"GET /scope-maps/new", "/scope-maps/new"},
	{"GET /scope-maps/{name}", "/scope-maps/demo-push"},
	{"GET /scope-maps/{name}/delete", "/scope-maps/demo-push/delete"},
	{"GET /tokens", "/tokens"},
	{"GET /tokens/new", "/tokens/new"},
	// ci-demo has limits, allowed addresses and a federated credential
	// by then, so that each section shows its list, not its empty state.
	{"GET /tokens/{name}", "/tokens/ci-demo"},
	{"GET /tokens/{name}/delete", "/tokens/ci-demo/delete"},
	{"GET /access-keys", "/access-keys"},
	{"GET /users", "/users"},
	{"GET /users/{name}", "/users/{user}"},
	// looks-reader has a role assignment: the user page's assignments.
	{"GET /users/{name}", "/users/looks-reader"},
	{"GET /users/{name}/delete", "/users/looks-reader/delete"},
	{"GET /audit", "/audit"},
	{"GET /audit", "/audit?result=denied&repository=other%2Fapp"},
	{"GET /network", "/network"},
	{"GET /trust", "/trust"},
	// The error page every unknown path gets.
	{"/", "/no-such-page"},
}

// portalSignedOutPages are checked after signing out.
var portalSignedOutPages = []struct{ pattern, path string }{
	{"GET /signin", "/signin"},
	{"GET /signin", "/signin?expired=1"},
}

// notPortalPages are GET routes of the portal that are no page to look at.
var notPortalPages = map[string]string{
	"GET /{$}":                    "redirects to the overview or the sign-in page",
	"GET /repository-suggestions": "answers the scope map editor's script (a datalist fragment)",
	"GET /repository-matches":     "answers the scope map editor's script (a preview fragment)",
	"GET /audit/export":           "a CSV or JSON download",
	"GET /static/{file}":          "CSS, scripts and images",
	"GET /favicon.ico":            "an image",
}

// portalPagePaths returns the paths of portalPages for the owner user.
func portalPagePaths(user string) []string {
	var out []string
	for _, p := range portalPages {
		out = append(out, strings.ReplaceAll(p.path, "{user}", user))
	}
	return out
}

// TestPortalPagesCoverRoutes: every GET route the portal registers (and its
// catch-all error page) is among the pages whose looks TestPortal checks,
// or named as no page; and every listed pattern is still a route.
func TestPortalPagesCoverRoutes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "internal", "ui", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no portal sources: %v", err)
	}
	route := regexp.MustCompile(`Handle(?:Func)?\("((?:GET )?/[^"]*)"`)
	var routes []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range route.FindAllStringSubmatch(string(b), -1) {
			routes = append(routes, m[1])
		}
	}
	if !slices.Contains(routes, "GET /overview") {
		t.Fatalf("found no portal routes in internal/ui (found %q)", routes)
	}
	listed := map[string]bool{}
	for _, p := range append(slices.Clone(portalPages), portalSignedOutPages...) {
		listed[p.pattern] = true
	}
	for k := range notPortalPages {
		listed[k] = true
	}
	for _, r := range routes {
		if !listed[r] {
			t.Errorf("the portal serves %q, which TestPortal's looks checks do not visit: add it to portalPages (or, if it is no page, to notPortalPages)", r)
		}
		delete(listed, r)
	}
	for p := range listed {
		t.Errorf("portalPages lists %q, which is no longer a route of the portal", p)
	}
}

// fillLooksFixture gives the sections of the pages in portalPages
// something to list, with the CLI.
func fillLooksFixture(t *testing.T, srv *testutil.Server) {
	t.Helper()
	cli := newBerthCLI(t, srv)
	cli.must("token", "update", "-n", "ci-demo", "--rate-limit", "50/s", "--burst", "100", "--pull-bytes-per-day", "200GiB",
		"--allowed-ip", "127.0.0.0/8", "--allowed-ip", "10.1.0.0/16")
	cli.must("token", "federated-credential", "create", "-n", "ci-demo", "--credential-name", "github-main",
		"--issuer", "https://token.actions.githubusercontent.com", "--subject", "repo:acme/app:ref:refs/heads/main",
		"--audience", "berth", "--claim", "repository_owner=acme")
	cli.must("user", "create", "-n", "looks-reader", "--role", "reader", "-p", "looks-reader-password-1")
	cli.must("role", "assignment", "create", "--assignee", "looks-reader", "--role", "contributor", "--repository", "demo/*")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cli.must("trust", "policy", "create", "-n", "demo-signed", "--repository", "demo/*", "--require", "cosign", "--key", pub, "--mode", "audit")
	cli.must("network-rule", "add", "--ip-address", "127.0.0.0/8")
}
