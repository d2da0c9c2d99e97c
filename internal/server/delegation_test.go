package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
)

// delegatedUser creates a user holding no registry-wide role and role on
// pattern, through the REST API as the owner, and returns its password.
func (e *env) delegatedUser(name, role, pattern string) string {
	e.t.Helper()
	pw := "password-of-" + name
	if _, err := e.id.CreateUser(context.Background(), owner, identity.UserSpec{Name: name, Role: identity.RoleNone, Password: pw}); err != nil {
		e.t.Fatal(err)
	}
	body := fmt.Sprintf(`{"assignee":%q,"role":%q,"repository":%q}`, name, role, pattern)
	if st, resp, _ := e.do("POST", "/api/v1/roleAssignments", basic("owner", ownerPassword), strings.NewReader(body)); st != http.StatusCreated {
		e.t.Fatalf("assign %s on %s to %s: %d %s", role, pattern, name, st, resp)
	}
	return pw
}

// TestDelegatedAdministrationOnEveryFace is the matrix of delegated
// administration through the REST API and the portal (the CLI's face is
// in cmd/berth): (assignment, operation, target) → done, or refused with
// the service's exact message. A delegated admin of team-a/* cannot
// create a rule on team-b/x or bind _repositories_admin on any face.
func TestDelegatedAdministrationOnEveryFace(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, team := range []string{"team-a", "team-b"} {
		if _, err := e.id.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: team + "-map", Actions: actions(team+"/app", "content/read")}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.id.CreateToken(ctx, owner, identity.TokenSpec{Name: team + "-tok", ScopeMap: team + "-map"}); err != nil {
			t.Fatal(err)
		}
	}
	users := map[string]string{}
	for _, u := range []struct{ name, role string }{{"alice", "token-admin"}, {"carol", "contributor"}, {"rita", "reader"}} {
		users[u.name] = e.delegatedUser(u.name, u.role, "team-a/*")
	}
	notInside := func(user, pattern, subject string) string {
		return fmt.Sprintf("user %q may not manage %q (%s): they manage scope maps and tokens only on team-a/*", user, pattern, subject)
	}
	type face struct {
		method, path, body string
		done               int
	}
	n := 0
	rows := []struct {
		who  string
		op   string
		api  func(n int) face // the REST API's request
		ui   func(n int) face // the portal's form
		want string           // "" = done; else the exact refusal (403)
	}{
		{"alice", "create a scope map with a rule on team-b/x",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/scopeMaps/b-map-%d", n), `{"properties":{"actions":["repositories/team-b/x/content/read"]}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/scope-maps", url.Values{"name": {fmt.Sprintf("b-map-%d", n)}, "pattern-0": {"team-b/x"}, "action-0": {"content/read"}}.Encode(), 303}
			},
			"user \"alice\" may not manage \"team-b/x\" (scope map \"b-map-N\"): they manage scope maps and tokens only on team-a/*"},
		{"alice", "create a scope map with a rule on team-a/x",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/scopeMaps/a-map-%d", n), `{"properties":{"actions":["repositories/team-a/x/content/write"]}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/scope-maps", url.Values{"name": {fmt.Sprintf("a-map-%d", n)}, "pattern-0": {"team-a/x"}, "action-0": {"content/write"}}.Encode(), 303}
			},
			""},
		{"alice", "bind a token to _repositories_admin",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/tokens/admin-tok-%d", n), `{"properties":{"scopeMapId":"_repositories_admin"}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/tokens", url.Values{"name": {fmt.Sprintf("admin-tok-%d", n)}, "mode": {"existing"}, "scopeMap": {"_repositories_admin"}}.Encode(), 303}
			},
			notInside("alice", "*", `scope map "_repositories_admin"`)},
		{"carol", "bind a token to _repositories_admin",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/tokens/admin-tok-%d", n), `{"properties":{"scopeMapId":"_repositories_admin"}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/tokens", url.Values{"name": {fmt.Sprintf("admin-tok-%d", n)}, "mode": {"existing"}, "scopeMap": {"_repositories_admin"}}.Encode(), 303}
			},
			notInside("carol", "*", `scope map "_repositories_admin"`)},
		{"alice", "bind a token to team-a-map",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/tokens/a-tok-%d", n), `{"properties":{"scopeMapId":"team-a-map"}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/tokens", url.Values{"name": {fmt.Sprintf("a-tok-%d", n)}, "mode": {"existing"}, "scopeMap": {"team-a-map"}}.Encode(), 303}
			},
			""},
		{"alice", "disable team-b-tok",
			func(int) face {
				return face{"PATCH", "/api/v1/tokens/team-b-tok", `{"properties":{"status":"disabled"}}`, 200}
			},
			func(int) face {
				return face{"POST", "/tokens/team-b-tok", url.Values{"op": {"status"}, "status": {"disabled"}}.Encode(), 303}
			},
			notInside("alice", "team-b/app", `token "team-b-tok", through scope map "team-b-map"`)},
		{"alice", "see team-b-tok",
			func(int) face { return face{"GET", "/api/v1/tokens/team-b-tok", "", 200} },
			func(int) face { return face{"GET", "/tokens/team-b-tok", "", 200} },
			`user "alice" may not manage "team-b/app" (token "team-b-tok", through scope map "team-b-map"): they see scope maps, tokens and users only on team-a/*`},
		{"rita", "create a scope map with a rule on team-a/x",
			func(n int) face {
				return face{"PUT", fmt.Sprintf("/api/v1/scopeMaps/r-map-%d", n), `{"properties":{"actions":["repositories/team-a/x/content/read"]}}`, 201}
			},
			func(n int) face {
				return face{"POST", "/scope-maps", url.Values{"name": {fmt.Sprintf("r-map-%d", n)}, "pattern-0": {"team-a/x"}, "action-0": {"content/read"}}.Encode(), 303}
			},
			"forbidden"},
	}
	portals := map[string]*portalSession{}
	for _, row := range rows {
		for _, faceName := range []string{"api", "portal"} {
			n++
			var f face
			var st int
			var body string
			if faceName == "api" {
				f = row.api(n)
				st, body, _ = e.do(f.method, f.path, basic(row.who, users[row.who]), strings.NewReader(f.body))
			} else {
				f = row.ui(n)
				p := portals[row.who]
				if p == nil {
					p = e.portalSignIn(row.who, users[row.who])
					portals[row.who] = p
				}
				st, body = p.do(f.method, f.path, f.body)
			}
			want := strings.ReplaceAll(row.want, "-N", fmt.Sprintf("-%d", n))
			if faceName == "api" && st == http.StatusForbidden {
				// The API's refusal is exactly the message, in its JSON error.
				var e struct{ Error struct{ Message string } }
				json.Unmarshal([]byte(body), &e)
				if want != "forbidden" && e.Error.Message != want {
					t.Errorf("api: %s by %s: refusal %q, want %q", row.op, row.who, e.Error.Message, want)
				}
				body = e.Error.Message
			}
			switch {
			case want == "" && st != f.done:
				t.Errorf("%s: %s by %s: %s %s = %d, want %d\n%.400s", faceName, row.op, row.who, f.method, f.path, st, f.done, body)
			case want != "" && st != http.StatusForbidden:
				t.Errorf("%s: %s by %s: %s %s = %d, want 403\n%.400s", faceName, row.op, row.who, f.method, f.path, st, body)
			case want != "" && want != "forbidden" && !strings.Contains(html.UnescapeString(body), want):
				t.Errorf("%s: %s by %s: the refusal does not say %q:\n%.600s", faceName, row.op, row.who, want, body)
			}
		}
	}

	// The lists show a delegated user only their part, on both faces.
	st, body, _ := e.do("GET", "/api/v1/tokens", basic("alice", users["alice"]), nil)
	var toks struct {
		Value []struct{ Name string } `json:"value"`
	}
	if err := json.Unmarshal([]byte(body), &toks); st != 200 || err != nil {
		t.Fatalf("list tokens: %d %v", st, err)
	}
	var names []string
	for _, tk := range toks.Value {
		names = append(names, tk.Name)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "team-a") && !strings.HasPrefix(name, "a-tok-") {
			t.Errorf("alice lists token %s", name)
		}
	}
	if !slices.Contains(names, "team-a-tok") {
		t.Errorf("alice does not list team-a-tok: %v", names)
	}
	_, page := portals["alice"].do("GET", "/tokens", "")
	if strings.Contains(page, "team-b-tok") || !strings.Contains(page, "team-a-tok") {
		t.Errorf("alice's portal token list shows team-b-tok or lacks team-a-tok")
	}
	_, page = portals["alice"].do("GET", "/tokens/new", "")
	if strings.Contains(page, "_repositories_admin") || strings.Contains(page, "team-b-map") {
		t.Errorf("alice's new-token form offers a scope map outside team-a/*")
	}
}

// TestDelegatedDataPlaneCatalogAndAudit: a contributor of team-a/* pushes
// and pulls there only, the catalog lists them team-a's repositories only,
// and a reader of team-a/* reads only team-a's events of the audit log.
func TestDelegatedDataPlaneCatalogAndAudit(t *testing.T) {
	e := newEnv(t)
	for _, repo := range []string{"team-a/app", "team-b/app"} {
		if err := e.push(repo, "owner", ownerPassword); err != nil {
			t.Fatal(err)
		}
	}
	carol := e.delegatedUser("carol", "contributor", "team-a/*")
	rita := e.delegatedUser("rita", "reader", "team-a/*")
	if err := e.push("team-a/new", "carol", carol); err != nil {
		t.Errorf("carol pushes to team-a/new: %v", err)
	}
	if err := e.push("team-b/new", "carol", carol); err == nil {
		t.Error("carol pushed to team-b/new")
	}
	for _, tt := range []struct {
		path string
		want int
	}{{"/v2/team-a/app/manifests/v1", 200}, {"/v2/team-b/app/manifests/v1", 403}} {
		if st, _, _ := e.do("GET", tt.path, basic("carol", carol), nil); st != tt.want {
			t.Errorf("carol GET %s = %d, want %d", tt.path, st, tt.want)
		}
	}
	st, body, _ := e.do("GET", "/v2/_catalog", basic("carol", carol), nil)
	var cat struct{ Repositories []string }
	json.Unmarshal([]byte(body), &cat)
	if st != 200 || !slices.Equal(cat.Repositories, []string{"team-a/app", "team-a/new"}) {
		t.Errorf("carol's catalog: %d %v", st, cat.Repositories)
	}
	e.srv.Audit().Flush()
	st, body, _ = e.do("GET", "/api/v1/audit?limit=1000", basic("rita", rita), nil)
	var events struct {
		Value []struct{ Repository, Kind, Identity string } `json:"value"`
	}
	json.Unmarshal([]byte(body), &events)
	if st != 200 || len(events.Value) == 0 {
		t.Fatalf("rita's audit log: %d %.300s", st, body)
	}
	// Events on team-a's repositories, and rita's own (her assignment's
	// record is the owner's, on no repository: not hers to read).
	for _, ev := range events.Value {
		if !strings.HasPrefix(ev.Repository, "team-a/") && ev.Identity != "rita" {
			t.Errorf("rita reads an event of %q by %s (%s)", ev.Repository, ev.Identity, ev.Kind)
		}
	}
	p := e.portalSignIn("rita", rita)
	if st, page := p.do("GET", "/audit", ""); st != 200 || strings.Contains(page, "team-b/") || !strings.Contains(page, "team-a/") {
		t.Errorf("rita's portal audit page: %d, shows team-b or lacks team-a", st)
	}
}

// TestRoleAssignmentsOnThePortal: an owner of team-a/* assigns and removes
// roles inside team-a/ on a user's page, and is refused one on team-b/*
// with the service's exact message, next to the form.
func TestRoleAssignmentsOnThePortal(t *testing.T) {
	e := newEnv(t)
	dave := e.delegatedUser("dave", "owner", "team-a/*")
	if _, err := e.id.CreateUser(context.Background(), owner, identity.UserSpec{Name: "paul", Role: identity.RoleNone, Password: "password-of-paul"}); err != nil {
		t.Fatal(err)
	}
	p := e.portalSignIn("dave", dave)
	form := func(op, role, repo string) string {
		return url.Values{"op": {op}, "role": {role}, "repository": {repo}}.Encode()
	}
	// paul holds nothing yet, and dave may open his page to give him a role.
	if st, body := p.do("GET", "/users/paul", ""); st != 200 || !strings.Contains(body, "Assign role") {
		t.Fatalf("paul's page for dave: %d\n%.400s", st, body)
	}
	if st, body := p.do("POST", "/users/paul/assignments", form("create", "push", "team-a/app")); st != http.StatusSeeOther {
		t.Fatalf("assign push on team-a/app: %d\n%.400s", st, body)
	}
	st, body := p.do("POST", "/users/paul/assignments", form("create", "push", "team-b/*"))
	want := `User "dave" may not manage "team-b/*" (role assignment push on team-b/*): they manage role assignments only on team-a/*.`
	if st != http.StatusForbidden || !strings.Contains(html.UnescapeString(body), want) {
		t.Errorf("assign push on team-b/*: %d, want 403 saying %q\n%.600s", st, want, body)
	}
	if st, body := p.do("GET", "/users/paul", ""); st != 200 || !strings.Contains(body, "team-a/app") || strings.Contains(body, "team-b/*") {
		t.Errorf("paul's page: %d\n%.400s", st, body)
	}
	if st, body := p.do("POST", "/users/paul/assignments", form("delete", "push", "team-a/app")); st != http.StatusSeeOther {
		t.Fatalf("remove push on team-a/app: %d\n%.400s", st, body)
	}
	as, err := e.id.ListRoleAssignments(owner, "paul")
	if err != nil || len(as) != 0 {
		t.Errorf("paul's assignments after the removal: %v %v", as, err)
	}
}
