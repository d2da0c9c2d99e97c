package ui

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
)

// TestOverview: after sign-in the portal opens the overview, whose
// figures count what the user may see and link to the filtered lists.
func TestOverview(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	putImage(t, f.store, "demo/app", "v1")
	for _, n := range []string{"ci-one", "ci-two"} {
		if _, _, err := f.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: n, ScopeMap: "_repositories_pull"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.ids.GenerateCredentials(ctx, owner, "ci-one", []string{identity.SlotPassword1}, f.clock.Now().Add(2*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.audit.Record(audit.Event{Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: "ci-two", Repository: "x/y", Action: "push", Missing: "content/write"})
	}
	f.audit.Record(audit.Event{Time: f.clock.Now().Add(-48 * time.Hour), Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: "old"})
	f.audit.Flush()

	b := f.signIn("reader", readerPassword) // lands on /overview
	r := b.get("/overview")
	wantStatus(t, r, http.StatusOK)
	tile := func(id string) (value, href string) {
		m := regexp.MustCompile(`id="tile-` + id + `" href="([^"]*)"><span class="tile-num">([^<]*)</span>`).FindStringSubmatch(r.body)
		if m == nil {
			return "", ""
		}
		return m[2], m[1]
	}
	for _, c := range []struct{ id, value, href string }{
		{"repositories", "1", "/repositories"},
		{"tokens", "2", "/tokens"},
		{"expiring", "1", "/tokens?expiringWithinDays=7"},
		{"never-used", "2", "/tokens?neverUsed=true"},
		{"unused", "2", "/tokens?unusedDays=90"},
		{"denials", "3", "/audit?kind=access&amp;result=denied&amp;since="},
	} {
		v, href := tile(c.id)
		if v != c.value || !strings.HasPrefix(href, c.href) {
			t.Errorf("tile %s = %q → %q, want %q → %q…", c.id, v, href, c.value, c.href)
		}
	}
	if v, _ := tile("storage"); v == "" {
		t.Errorf("no storage figure for a reader (who sees management settings)")
	}
	// A pull-only user sees only what they may: no tokens, no audit.
	p := f.signIn("puller", pullPassword)
	r = p.get("/overview")
	wantStatus(t, r, http.StatusOK)
	for _, id := range []string{"tokens", "denials", "storage"} {
		if strings.Contains(r.body, `id="tile-`+id+`"`) {
			t.Errorf("a pull-only user sees the %s figure", id)
		}
	}
}
