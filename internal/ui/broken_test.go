package ui

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// TestLastOwnerRefusedOnTheForm: demoting or disabling the last enabled
// owner is refused on the user's own page, next to the form, in the
// portal's words, not on a "Not allowed" error page with the service's.
func TestLastOwnerRefusedOnTheForm(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	for _, c := range []struct {
		form  url.Values
		field string
		words string
	}{
		{url.Values{"op": {"role"}, "role": {"reader"}}, "role", "cannot be given another role"},
		{url.Values{"op": {"status"}, "status": {"disabled"}}, "status", "cannot be disabled"},
	} {
		r := b.post("/users/owner", c.form)
		wantStatus(t, r, http.StatusConflict)
		if strings.Contains(r.body, "Not allowed") || strings.Contains(r.body, "last enabled owner:") {
			t.Errorf("%s: refused with an error page or the raw message:\n%s", c.field, r.body)
		}
		if !strings.Contains(r.body, "owner is the only enabled owner, so they "+c.words+": make another user owner first.") {
			t.Errorf("%s: the form does not say why", c.field)
		}
		if !strings.Contains(r.body, `name="op" value="`+c.field+`"`) {
			t.Errorf("%s: the page does not show the form again", c.field)
		}
		if !strings.Contains(r.body, "Nothing was changed") {
			t.Errorf("%s: the page does not say nothing changed", c.field)
		}
	}
	if u, _ := f.ids.GetUser(owner, "owner"); u.Role != "owner" || u.Status != identity.StatusEnabled {
		t.Errorf("the last owner was changed: %+v", u)
	}
}

// TestUsersPagesAgreeWithAPI: whoever may list users through the API
// (auth.ViewManagement) sees the users pages, without their forms, and
// the roles' rights on them are the table's, as on the account page.
func TestUsersPagesAgreeWithAPI(t *testing.T) {
	f := newFixture(t)
	reader := f.signIn("reader", readerPassword)
	r := reader.get("/users")
	wantStatus(t, r, http.StatusOK)
	if forms := postForms(r.body); len(forms) != 0 {
		t.Errorf("a reader sees forms on /users: %v", forms)
	}
	if !strings.Contains(r.body, `href="/users"`) {
		t.Errorf("the nav lacks Users for a reader")
	}
	acc := reader.get("/account")
	for _, right := range roleRights("reader") {
		if !strings.Contains(acc.body, right) {
			t.Errorf("account page lacks %q", right)
		}
	}
	wantStatus(t, reader.get("/users/owner"), http.StatusOK)
	puller := f.signIn("puller", pullPassword)
	if _, err := f.ids.ListUsers(auth.Identity{Kind: auth.KindUser, Name: "puller", Role: auth.RolePull}); err == nil {
		t.Fatal("a pull user may list users through the service")
	}
	wantStatus(t, puller.get("/users"), http.StatusForbidden)

	// The roles' help on the form is the rights table.
	b := f.signIn("owner", ownerPassword)
	r = b.get("/users")
	for _, role := range auth.Roles() {
		for _, right := range roleRights(string(role)) {
			if !strings.Contains(r.body, right) {
				t.Errorf("the roles help lacks %s: %q", role, right)
			}
		}
	}
}

// TestScopeMapWriteWithoutRead: a row with Write but no Read is saved (the
// service allows it) but the editor warns on that row and offers Read.
func TestScopeMapWriteWithoutRead(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	form := smForm("write-only", "demo/*", "content/write")
	form.Set("pattern-1", "ok/*")
	form["action-1"] = []string{"content/read", "content/write"}
	wantStatus(t, b.post("/scope-maps", form), http.StatusSeeOther)
	r := b.get("/scope-maps/write-only")
	wantStatus(t, r, http.StatusOK)
	shown := regexp.MustCompile(`<p class="read-warning" data-read-warning>`).FindAllString(r.body, -1)
	if len(shown) != 1 {
		t.Fatalf("%d rows warn of Write without Read, want 1 (demo/*)", len(shown))
	}
	i := strings.Index(r.body, `value="demo/*"`)
	j := strings.Index(r.body, `<p class="read-warning" data-read-warning>`)
	k := strings.Index(r.body, `value="ok/*"`)
	if i < 0 || k < 0 || !(i < j && (k < i || j < k)) {
		t.Errorf("the warning is not on the demo/* row (at %d, rows at %d and %d)", j, i, k)
	}
	if !strings.Contains(r.body, "data-add-read") {
		t.Errorf("no Add Read button")
	}
}

// TestNewScopeMapStartsWithOneRow: the editor for a new scope map, and for
// a new token's own scope map, starts with one blank row.
func TestNewScopeMapStartsWithOneRow(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	for _, p := range []string{"/scope-maps/new", "/tokens/new"} {
		r := b.get(p)
		wantStatus(t, r, http.StatusOK)
		if n := len(regexp.MustCompile(`id="pattern-[0-9]+"`).FindAllString(r.body, -1)); n != 1 {
			t.Errorf("%s starts with %d rows, want 1", p, n)
		}
	}
}

// TestPortalMessages: what the service says in its own terms reads on the
// pages like the portal's other messages.
func TestPortalMessages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, _, err := f.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "_repositories_pull"}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn("owner", ownerPassword)
	r := b.post("/tokens", url.Values{"name": {"CI-Token"}, "mode": {"existing"}, "scopeMap": {"_repositories_pull"}})
	wantStatus(t, r, http.StatusConflict)
	if !strings.Contains(r.body, "The name CI-Token is taken: a token or a user already has it") || strings.Contains(r.body, "already exists (names") {
		t.Errorf("token name conflict message:\n%s", r.body)
	}
	r = b.post("/users", url.Values{"name": {"Reader"}, "role": {"reader"}, "password": {"a long password"}, "password2": {"a long password"}})
	wantStatus(t, r, http.StatusConflict)
	if !strings.Contains(r.body, "The name Reader is taken") || strings.Contains(r.body, "already exists (names") {
		t.Errorf("user name conflict message:\n%s", r.body)
	}
	b.get("/tokens/ci-token")
	once := regexp.MustCompile(`name="once" value="([^"]+)"`).FindStringSubmatch(b.get("/tokens/ci-token").body)
	if once == nil {
		t.Fatal("no nonce on the token page")
	}
	r = b.post("/tokens/ci-token", url.Values{"op": {"generate"}, "slot": {"password1"}, "once": {once[1]}, "expiry": {"2020-01-31"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "The expiry date 2020-01-31 is in the past: choose a later date") || strings.Contains(r.body, "T00:00:00Z") {
		t.Errorf("past expiry message:\n%s", r.body)
	}
	// Dates in forms are ISO text fields, not the browser's locale date picker.
	if strings.Contains(r.body, `type="date"`) || !strings.Contains(r.body, `placeholder="YYYY-MM-DD"`) {
		t.Errorf("the expiry field is not an ISO date field")
	}
	// Timestamps do not break across lines.
	if !strings.Contains(b.get("/tokens").body, "\u00a0UTC") {
		t.Errorf("timestamps on /tokens use breaking spaces")
	}
	// Audit: a from date after the until date is a clear error.
	r = b.get("/audit?since=2026-03-01&until=2026-02-01")
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "is before the from date") {
		t.Errorf("from > until not refused clearly:\n%s", r.body)
	}
}
