package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
)

// Browsers remove ASCII tab and newline from URLs (WHATWG URL parser), so
// "/\t/evil.example" is followed as "//evil.example", another site.
// safeNext refuses "\r" and "\n" but not "\t", and http.Redirect passes a
// URL with a control character through unchanged.
func TestReviewSafeNextRefusesTab(t *testing.T) {
	for _, in := range []string{"/\t/evil.example", "/\t\\evil.example", "\t//evil.example"} {
		if got := safeNext(in); got != "" {
			t.Errorf("safeNext(%q) = %q, want \"\"", in, got)
		}
	}
}

// The same, end to end: a signed-in user who opens a link to
// /signin?next=/%09/evil.example is redirected at once, no click needed.
func TestReviewSigninNextOpenRedirect(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	// Served in-process: Go's client refuses to parse such a Location,
	// browsers do not.
	req := httptest.NewRequest("GET", "/signin?next="+url.QueryEscape("/\t/evil.example"), nil)
	for _, c := range b.c.Jar.Cookies(mustURL(f.srv.URL)) {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	loc := rec.Header().Get("Location")
	if rec.Code == http.StatusSeeOther && strings.Contains(loc, "evil.example") {
		t.Errorf("GET /signin?next=/%%09/evil.example redirects a signed-in user to %q (a browser reads //evil.example)", loc)
	}
}

// A portal session is tied to the user's name and generation only. A
// password change bumps the generation by one, which is the next value of
// the registry-wide serial that a new user gets, so a session of a deleted
// user resumes as a new user who is given the same name.
func TestReviewSessionOfDeletedUserDoesNotResumeAsNewUser(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.ids.CreateUser(ctx, owner, identity.UserSpec{Name: "dave", Role: "pull", Password: "dave-first-password"}); err != nil {
		t.Fatal(err)
	}
	pw := "dave-second-password"
	if _, err := f.ids.UpdateUser(ctx, owner, "dave", identity.UserUpdate{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	old := f.signIn("dave", pw)
	if err := f.ids.DeleteUser(ctx, owner, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.CreateUser(ctx, owner, identity.UserSpec{Name: "dave", Role: "owner", Password: "someone-else-entirely"}); err != nil {
		t.Fatal(err)
	}
	if r := old.get("/users"); r.status == http.StatusOK {
		t.Errorf("the deleted dave's portal session opens /users as the new owner dave")
	}
}
