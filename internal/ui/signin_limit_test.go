package ui

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
)

// clientHeader carries the client address the portal sees in these tests.
const clientHeader = "X-Test-Client"

// newLimitedFixture is newFixture with a portal that takes the client
// address from clientHeader and a limiter that never sleeps.
func newLimitedFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.h = New(Options{Identity: f.ids, Meta: f.store, Audit: f.audit, Logger: slog.New(slog.DiscardHandler), Now: f.clock.Now,
		SessionTTL: 8 * time.Hour, IdleTimeout: 30 * time.Minute,
		Limiter:  auth.NewLimiter(auth.LimiterConfig{Now: f.clock.Now, Sleep: func(time.Duration) {}}),
		ClientIP: func(r *http.Request) string { return r.Header.Get(clientHeader) }})
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return f
}

// TestSignInFromRotatingAddresses: wrong passwords for a user from ever
// new addresses do not keep the user out of the portal.
func TestSignInFromRotatingAddresses(t *testing.T) {
	f := newLimitedFixture(t)
	for a := range 20 {
		b := f.browser()
		from := fmt.Sprintf("127.30.0.%d", a+1)
		for g := range 2 {
			b.get("/signin")
			r := b.post("/signin", url.Values{"username": {"owner"}, "password": {fmt.Sprintf("guess-%d", g)}}, clientHeader, from)
			if r.status != http.StatusUnauthorized && r.status != http.StatusTooManyRequests {
				t.Fatalf("wrong password from %s: %d", from, r.status)
			}
		}
	}
	for c := range 5 {
		b := f.browser()
		from := fmt.Sprintf("127.30.1.%d", c+1)
		b.get("/signin")
		r := b.post("/signin", url.Values{"username": {"owner"}, "password": {ownerPassword}}, clientHeader, from)
		if r.status != http.StatusSeeOther {
			t.Errorf("the right password from %s, a clean address, after the guesses: %d", from, r.status)
		}
	}
}

// TestAccountCurrentPasswordIsLimitedAndAudited: the current password asked
// for on the account page is checked as a sign-in: limited and audited.
func TestAccountCurrentPasswordIsLimitedAndAudited(t *testing.T) {
	f := newLimitedFixture(t)
	b := f.browser()
	b.get("/signin")
	if r := b.post("/signin", url.Values{"username": {"reader"}, "password": {readerPassword}}, clientHeader, "127.31.0.1"); r.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", r.status)
	}
	b.get("/account")
	var last int
	for i := range 6 {
		r := b.post("/account", url.Values{"current": {fmt.Sprintf("guess-%d", i)}, "password": {"another long one"}, "password2": {"another long one"}}, clientHeader, "127.31.0.1")
		last = r.status
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("the sixth wrong current password: %d, want 429", last)
	}
	evs, err := f.audit.List(t.Context(), audit.Filter{Identity: "reader", Kind: audit.KindLogin, Result: audit.ResultFailure, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0 // identical failures are folded into one record with a count
	for _, ev := range evs {
		failed += max(ev.Count, 1)
	}
	if failed < 5 {
		t.Errorf("%d failed logins audited for 6 wrong current passwords", failed)
	}
}
