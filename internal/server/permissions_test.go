package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// faceRequest is one way of performing an operation through one face:
// the request to send (for repository repo, whose tag v1 points at
// manifest digest) and the status that means it was done.
type faceRequest struct {
	face   string // "registry", "api" or "portal"
	method string
	path   func(repo, digest string) string
	body   func(repo string) string
	done   int
}

// faceRequests lists, for each operation, how each face performs it.
var faceRequests = map[auth.Operation][]faceRequest{
	auth.OpPull: {
		{face: "registry", method: "GET", path: func(r, _ string) string { return "/v2/" + r + "/manifests/v1" }, done: 200},
	},
	auth.OpPush: {
		{face: "registry", method: "POST", path: func(r, _ string) string { return "/v2/" + r + "/blobs/uploads/" }, done: 202},
	},
	auth.OpReadMetadata: {
		{face: "registry", method: "GET", path: func(r, _ string) string { return "/v2/" + r + "/tags/list" }, done: 200},
		{face: "api", method: "GET", path: func(r, _ string) string { return "/api/v1/repositories/" + r + "/_tags" }, done: 200},
		{face: "api", method: "GET", path: func(r, d string) string { return "/api/v1/repositories/" + r + "/_manifests/" + d }, done: 200},
		{face: "portal", method: "GET", path: func(r, d string) string { return "/repositories/" + r + "/-/manifests/" + d }, done: 200},
	},
	auth.OpUntag: {
		{face: "registry", method: "DELETE", path: func(r, _ string) string { return "/v2/" + r + "/manifests/v1" }, done: 202},
		{face: "api", method: "DELETE", path: func(r, _ string) string { return "/api/v1/repositories/" + r + "/_tags/v1" }, done: 204},
		{face: "portal", method: "POST", path: func(r, _ string) string { return "/repositories/" + r + "/-/untag" },
			body: func(string) string { return "tag=v1" }, done: 303},
	},
	auth.OpDeleteManifest: {
		{face: "registry", method: "DELETE", path: func(r, d string) string { return "/v2/" + r + "/manifests/" + d }, done: 202},
		{face: "api", method: "DELETE", path: func(r, d string) string { return "/api/v1/repositories/" + r + "/_manifests/" + d }, done: 204},
	},
	auth.OpDeleteRepository: {
		{face: "api", method: "DELETE", path: func(r, _ string) string { return "/api/v1/repositories/" + r }, done: 204},
		{face: "portal", method: "POST", path: func(r, _ string) string { return "/repositories/" + r + "/-/delete" },
			body: func(r string) string { return "confirm=" + url.QueryEscape(r) }, done: 303},
	},
	auth.OpWriteAttributes: {
		{face: "api", method: "PATCH", path: func(r, _ string) string { return "/api/v1/repositories/" + r },
			body: func(string) string { return `{"listEnabled":true}` }, done: 200},
		{face: "api", method: "PATCH", path: func(r, _ string) string { return "/api/v1/repositories/" + r + "/_manifests/v1" },
			body: func(string) string { return `{"listEnabled":true}` }, done: 200},
		{face: "portal", method: "POST", path: func(r, _ string) string { return "/repositories/" + r + "/-/attributes" },
			body: func(string) string { return "readEnabled=on&writeEnabled=on&deleteEnabled=on&listEnabled=on" }, done: 303},
	},
}

// TestPermissionMatrixOnEveryFace is the operation table as a permission
// matrix: who (a token with a scope map's actions on the repository, or a
// user with a role) may perform which operation. Each row is checked
// against the access decision, and then performed through every face that
// offers the operation (registry, REST API, portal; the portal signs in
// users only), each time on a fresh repository: a face must do it if and
// only if the decision allows it, and refuse it with 403 otherwise.
func TestPermissionMatrixOnEveryFace(t *testing.T) {
	rows := []struct {
		op      auth.Operation
		token   []string  // the token's actions on the repository, or
		role    auth.Role // the user's role
		allowed bool
	}{
		{op: auth.OpPull, token: []string{"content/read"}, allowed: true},
		{op: auth.OpPull, token: []string{"metadata/read", "metadata/write"}, allowed: false},
		{op: auth.OpPush, token: []string{"content/read", "content/write"}, allowed: true},
		{op: auth.OpPush, token: []string{"content/read", "content/delete"}, allowed: false},

		{op: auth.OpReadMetadata, token: []string{"metadata/read"}, allowed: true},
		{op: auth.OpReadMetadata, token: []string{"content/read", "metadata/write"}, allowed: false},
		{op: auth.OpReadMetadata, role: auth.RoleReader, allowed: true},
		{op: auth.OpReadMetadata, role: auth.RolePush, allowed: false},

		{op: auth.OpUntag, token: []string{"metadata/write"}, allowed: true},
		{op: auth.OpUntag, token: []string{"content/delete"}, allowed: true},
		{op: auth.OpUntag, token: []string{"content/read", "content/write", "metadata/read"}, allowed: false},
		{op: auth.OpUntag, role: auth.RoleDelete, allowed: true},
		{op: auth.OpUntag, role: auth.RoleReader, allowed: false},

		{op: auth.OpDeleteManifest, token: []string{"content/delete"}, allowed: true},
		{op: auth.OpDeleteManifest, token: []string{"metadata/write", "metadata/read"}, allowed: false},
		{op: auth.OpDeleteManifest, role: auth.RoleDelete, allowed: true},
		{op: auth.OpDeleteManifest, role: auth.RolePush, allowed: false},

		{op: auth.OpDeleteRepository, token: []string{"content/delete"}, allowed: true},
		{op: auth.OpDeleteRepository, token: []string{"metadata/write", "metadata/read"}, allowed: false},
		{op: auth.OpDeleteRepository, role: auth.RoleDelete, allowed: true},
		{op: auth.OpDeleteRepository, role: auth.RoleReader, allowed: false},

		{op: auth.OpWriteAttributes, token: []string{"metadata/write"}, allowed: true},
		{op: auth.OpWriteAttributes, token: []string{"content/delete", "metadata/read"}, allowed: false},
		{op: auth.OpWriteAttributes, role: auth.RoleOwner, allowed: true},
		{op: auth.OpWriteAttributes, role: auth.RoleDelete, allowed: false},
	}
	e := newEnv(t)
	ctx := context.Background()
	n := 0
	for _, row := range rows {
		who := fmt.Sprintf("role %s", row.role)
		if row.role == "" {
			who = fmt.Sprintf("token with %v", row.token)
		}
		for _, fr := range faceRequests[row.op] {
			if fr.face == "portal" && row.role == "" {
				continue // tokens are data-plane credentials
			}
			n++
			repo := fmt.Sprintf("matrix/r%d", n)
			if err := e.push(repo, "owner", ownerPassword); err != nil {
				t.Fatal(err)
			}
			digest := e.manifestDigest(repo)
			var id auth.Identity
			var authz string
			var portal *portalSession
			if row.role != "" {
				name, pw := fmt.Sprintf("user%d", n), fmt.Sprintf("password-of-user-%d", n)
				if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: name, Role: string(row.role), Password: pw}); err != nil {
					t.Fatal(err)
				}
				id = auth.Identity{Kind: auth.KindUser, Name: name, Role: row.role}
				authz = basic(name, pw)
				if fr.face == "portal" {
					portal = e.portalSignIn(name, pw)
				}
			} else {
				name := fmt.Sprintf("token%d", n)
				pw, _ := e.newToken(name, actions(repo, row.token...)...)
				id = auth.Identity{Kind: auth.KindToken, Name: name,
					Policy: auth.MustCompile(auth.ScopeMap{Name: "m", Actions: actions(repo, row.token...)})}
				authz = basic(name, pw)
			}
			if got := auth.Permits(id, repo, row.op); got != row.allowed {
				t.Errorf("decision: %s by %s: allowed=%t, want %t", row.op, who, got, row.allowed)
			}
			var body string
			if fr.body != nil {
				body = fr.body(repo)
			}
			var st int
			var resp string
			if portal != nil {
				st, resp = portal.do(fr.method, fr.path(repo, digest), body)
			} else {
				st, resp, _ = e.do(fr.method, fr.path(repo, digest), authz, strings.NewReader(body))
			}
			want := http.StatusForbidden
			if row.allowed {
				want = fr.done
			}
			if st != want {
				t.Errorf("%s: %s by %s: %s %s = %d, want %d\n%.300s", fr.face, row.op, who, fr.method, fr.path(repo, digest), st, want, resp)
			}
		}
	}
}

// TestPortalAndAPIAgree: for every operation that both the REST API and
// the portal offer, every role is allowed or refused the same on both, and
// as the access decision says; both go through the repository service.
func TestPortalAndAPIAgree(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := 0
	for _, role := range auth.Roles() {
		name, pw := "user-"+string(role), "password-of-"+string(role)
		if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: name, Role: string(role), Password: pw}); err != nil {
			t.Fatal(err)
		}
		portal := e.portalSignIn(name, pw)
		id := auth.Identity{Kind: auth.KindUser, Name: name, Role: role}
		for _, op := range auth.Operations() {
			var api, ui []faceRequest
			for _, fr := range faceRequests[op] {
				switch fr.face {
				case "api":
					api = append(api, fr)
				case "portal":
					ui = append(ui, fr)
				}
			}
			if len(api) == 0 || len(ui) == 0 {
				continue
			}
			outcome := map[string]bool{}
			for _, fr := range append(api, ui...) {
				n++
				repo := fmt.Sprintf("agree/r%d", n)
				if err := e.push(repo, "owner", ownerPassword); err != nil {
					t.Fatal(err)
				}
				path := fr.path(repo, e.manifestDigest(repo))
				var body string
				if fr.body != nil {
					body = fr.body(repo)
				}
				var st int
				if fr.face == "portal" {
					st, _ = portal.do(fr.method, path, body)
				} else {
					st, _, _ = e.do(fr.method, path, basic(name, pw), strings.NewReader(body))
				}
				// A role with no action on the repository (token-admin) does
				// not see it: the portal answers 404, as for any repository
				// one may not see.
				if st == http.StatusNotFound && fr.face == "portal" && auth.Allowed(id, repo) == auth.NoActions {
					st = http.StatusForbidden
				}
				if st != fr.done && st != http.StatusForbidden {
					t.Errorf("%s: %s by role %s: %s %s = %d, want %d or 403", fr.face, op, role, fr.method, path, st, fr.done)
					continue
				}
				done := st == fr.done
				if prev, ok := outcome[fr.face]; ok && prev != done {
					t.Errorf("%s: %s by role %s: routes of the same face disagree", fr.face, op, role)
				}
				outcome[fr.face] = done
			}
			if outcome["api"] != outcome["portal"] {
				t.Errorf("%s by role %s: REST API allowed=%t, portal allowed=%t", op, role, outcome["api"], outcome["portal"])
			}
			if want := auth.Permits(id, "agree/x", op); outcome["api"] != want {
				t.Errorf("%s by role %s: allowed=%t on the faces, %t by the decision", op, role, outcome["api"], want)
			}
		}
	}
}

// manifestDigest returns the digest tag v1 of repo points at.
func (e *env) manifestDigest(repo string) string {
	e.t.Helper()
	req, _ := http.NewRequest("HEAD", e.http.URL+"/v2/"+repo+"/manifests/v1", nil)
	req.Header.Set("Authorization", basic("owner", ownerPassword))
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	d := resp.Header.Get("Docker-Content-Digest")
	if d == "" {
		e.t.Fatalf("HEAD %s:v1: %d, no digest", repo, resp.StatusCode)
	}
	return d
}

// portalSession is a browser signed in to the portal.
type portalSession struct {
	e    *env
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (e *env) portalSignIn(user, pass string) *portalSession {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	p := &portalSession{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	p.do("GET", "/signin", "")
	if st, body := p.do("POST", "/signin", url.Values{"username": {user}, "password": {pass}}.Encode()); st != http.StatusSeeOther {
		e.t.Fatalf("portal sign-in as %s: %d\n%.300s", user, st, body)
	}
	p.do("GET", "/account", "") // the session's CSRF token
	return p
}

func (p *portalSession) do(method, path, form string) (int, string) {
	p.e.t.Helper()
	if method == "POST" {
		v, _ := url.ParseQuery(form)
		if v.Get("csrf") == "" {
			v.Set("csrf", p.csrf)
		}
		form = v.Encode()
	}
	req, _ := http.NewRequest(method, p.e.http.URL+path, strings.NewReader(form))
	if method == "POST" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", p.e.http.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	resp, err := p.c.Do(req)
	if err != nil {
		p.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindSubmatch(b); m != nil {
		p.csrf = string(m[1])
	}
	return resp.StatusCode, string(b)
}
