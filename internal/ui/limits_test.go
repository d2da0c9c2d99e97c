package ui

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/ratelimit"
)

// TestTokenLimitsSection shows a token's limits and usage on its page and
// changes them with the page's form; a reader sees them without the form.
func TestTokenLimitsSection(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	db := f.store.Database()
	if err := ratelimit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.Open(ctx, ratelimit.Options{DB: db, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	f.h = New(Options{Identity: f.ids, Meta: f.store, Audit: f.audit, Logger: slog.New(slog.DiscardHandler), Now: f.clock.Now,
		Limits: ratelimit.NewSettings(l, f.ids, f.audit)})
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	f.newToken("ci-limited", "content/read")

	b := f.signIn("owner", ownerPassword)
	r := b.get("/tokens/ci-limited")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `id="limits"`) || !strings.Contains(r.body, "no limit") || !strings.Contains(r.body, `id="save-limits"`) {
		t.Fatalf("the token page has no limits section with a form:\n%s", r.body)
	}
	r = b.post("/tokens/ci-limited/limits", url.Values{"rate": {"50/s"}, "burst": {"100"}, "pull": {"200GiB"}, "push": {""}})
	wantStatus(t, r, http.StatusSeeOther)
	r = b.get("/tokens/ci-limited")
	for _, want := range []string{"50 requests/s, burst 100", "100 of 100 requests available now", "0 B of 200.0 GiB today", `value="50/s"`, `value="200.0 GiB"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("token page lacks %q", want)
		}
	}
	// A bad value is refused next to its field, and nothing changes.
	r = b.post("/tokens/ci-limited/limits", url.Values{"rate": {"fast"}, "burst": {""}, "pull": {""}, "push": {""}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "Invalid rate") {
		t.Errorf("no message for an invalid rate")
	}
	tl, err := ratelimit.NewSettings(l, f.ids, nil).Token(ctx, owner, "ci-limited")
	if err != nil || tl.Own.RatePerSecond != 50 {
		t.Fatalf("after a refused change: %+v %v", tl.Own, err)
	}
	// A reader sees the limits, not the form, and may not post it.
	rb := f.signIn("reader", readerPassword)
	r = rb.get("/tokens/ci-limited")
	if !strings.Contains(r.body, "50 requests/s, burst 100") || strings.Contains(r.body, `id="save-limits"`) {
		t.Errorf("reader's view of the limits section is wrong")
	}
	r = rb.post("/tokens/ci-limited/limits", url.Values{"rate": {"1/s"}})
	if r.status != http.StatusForbidden {
		t.Errorf("reader posting limits: %d, want 403", r.status)
	}
}
