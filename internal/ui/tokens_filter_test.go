package ui

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
)

// TestTokenListFilters: the token list filters by name, status, scope map,
// a password expiring within N days and use, and says how many match.
func TestTokenListFilters(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, s := range []identity.TokenSpec{
		{Name: "ci-push", ScopeMap: "_repositories_push"},
		{Name: "ci-pull", ScopeMap: "_repositories_pull"},
		{Name: "old-bot", ScopeMap: "_repositories_pull", Status: identity.StatusDisabled},
	} {
		if _, _, err := f.ids.CreateToken(ctx, owner, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.ids.GenerateCredentials(ctx, owner, "ci-push", []string{identity.SlotPassword1}, f.clock.Now().Add(3*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.GenerateCredentials(ctx, owner, "ci-pull", []string{identity.SlotPassword1}, f.clock.Now().Add(60*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	b := f.signIn("reader", readerPassword)
	names := func(q string) []string {
		t.Helper()
		r := b.get("/tokens?" + q)
		wantStatus(t, r, http.StatusOK)
		var out []string
		for _, m := range regexp.MustCompile(`<a class="strong" href="/tokens/([^"]+)">`).FindAllStringSubmatch(r.body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for _, c := range []struct {
		q    string
		want string
	}{
		{"", "ci-pull ci-push old-bot"},
		{"q=CI", "ci-pull ci-push"},
		{"status=disabled", "old-bot"},
		{"scopeMap=_repositories_pull", "ci-pull old-bot"},
		{"expiringWithinDays=7", "ci-push"},
		{"expiringWithinDays=90", "ci-pull ci-push"},
		{"neverUsed=true&status=enabled", "ci-pull ci-push"},
		{"unusedDays=90&q=old", "old-bot"},
	} {
		if got := strings.Join(names(c.q), " "); got != c.want {
			t.Errorf("/tokens?%s lists %q, want %q", c.q, got, c.want)
		}
	}
	if r := b.get("/tokens?status=disabled"); !strings.Contains(r.body, "1 of 3 tokens match.") {
		t.Errorf("the filtered list does not say how many match")
	}
	if r := b.get("/tokens?expiringWithinDays=x"); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "is not a number of days") {
		t.Errorf("a bad filter: %d", r.status)
	}
}

// TestTokenPageCommandsAndActivity: a new password comes with the
// docker, --password-stdin and podman commands (podman with
// --tls-verify=false on a plain-HTTP registry), and the token's page
// shows its latest audit events.
func TestTokenPageCommandsAndActivity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, _, err := f.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "_repositories_pull"}); err != nil {
		t.Fatal(err)
	}
	f.audit.Record(audit.Event{Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: "ci-token", Repository: "team/app",
		Action: "push", Missing: "content/write", CallerIP: "127.0.0.5"})
	f.audit.Record(audit.Event{Kind: audit.KindLogin, Result: audit.ResultSuccess, Identity: "other"})
	f.audit.Flush()
	b := f.signIn("owner", ownerPassword)
	page := b.get("/tokens/ci-token")
	if !strings.Contains(page.body, `id="activity"`) || !strings.Contains(page.body, "asked <code>push</code>, lacks <code>content/write</code>") {
		t.Errorf("the token page lacks its activity:\n%s", page.body)
	}
	if strings.Contains(page.body, "<span class=\"chip\">login</span>") {
		t.Errorf("the token page shows another identity's events")
	}
	if !strings.Contains(page.body, `data-expiry-days="30"`) || !strings.Contains(page.body, `data-expiry-days=""`) {
		t.Errorf("no expiry presets")
	}
	once := regexp.MustCompile(`name="once" value="([^"]+)"`).FindStringSubmatch(page.body)
	r := b.post("/tokens/ci-token", url.Values{"op": {"generate"}, "slot": {"password1"}, "once": {once[1]}})
	wantStatus(t, r, http.StatusOK)
	pw := regexp.MustCompile(`id="pw-password1" class="mono" readonly value="([^"]+)"`).FindStringSubmatch(r.body)
	if pw == nil {
		t.Fatal("no password shown")
	}
	host := strings.TrimPrefix(f.srv.URL, "http://")
	for _, want := range []string{
		"docker login -u ci-token -p " + pw[1] + " " + host,
		"echo &#39;" + pw[1] + "&#39; | docker login -u ci-token --password-stdin " + host,
		"echo &#39;" + pw[1] + "&#39; | podman login -u ci-token --password-stdin --tls-verify=false " + host,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the new password's card lacks %q", want)
		}
	}
}
