package ui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/testutil"
)

const (
	ownerPassword  = "owner-password-for-tests"
	readerPassword = "reader-password-for-tests"
	pullPassword   = "pull-password-for-tests"
)

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

// clock is a settable clock for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	h     *Handler
	srv   *httptest.Server
	ids   *identity.Service
	store *meta.Store
	audit *audit.Log
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := testutil.NewStores(t, ownerPassword)
	store, al, ids, log := st.Meta, st.Audit, st.Identity, slog.New(slog.DiscardHandler)
	for name, pw := range map[string]string{"reader": readerPassword, "puller": pullPassword} {
		role := "reader"
		if name == "puller" {
			role = "pull"
		}
		if _, err := ids.CreateUser(ctx, owner, identity.UserSpec{Name: name, Role: role, Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Now()}
	h := New(Options{Identity: ids, Meta: store, Audit: al, Logger: log, Now: clk.Now,
		SessionTTL: 8 * time.Hour, IdleTimeout: 30 * time.Minute})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, h: h, srv: srv, ids: ids, store: store, audit: al, clock: clk}
}

// browser is a cookie-keeping client that does not follow redirects, so
// that tests see them.
type browser struct {
	f    *fixture
	c    *http.Client
	csrf string
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values, header ...string) response {
	b.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, body)
	if err != nil {
		b.f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// What a browser sends with a same-origin form.
		req.Header.Set("Origin", b.f.srv.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	bb, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(bb)}
	if m := csrfRE.FindStringSubmatch(r.body); m != nil {
		b.csrf = m[1]
	}
	return r
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) get(path string) response { return b.do(http.MethodGet, path, nil) }

// post sends a form with the CSRF token of the last page seen.
func (b *browser) post(path string, form url.Values, header ...string) response {
	if form.Get("csrf") == "" && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	return b.do(http.MethodPost, path, form, header...)
}

func (f *fixture) signIn(user, password string) *browser {
	f.t.Helper()
	b := f.browser()
	b.get("/signin")
	r := b.post("/signin", url.Values{"username": {user}, "password": {password}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/overview" {
		f.t.Fatalf("sign in as %s: %d %s\n%s", user, r.status, r.header.Get("Location"), r.body)
	}
	b.get("/repositories") // picks up the session's CSRF token
	return b
}

func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d\n%s", r.status, want, r.body)
	}
}

func (f *fixture) scopeMapExists(name string) bool {
	_, err := f.ids.GetScopeMap(owner, name)
	return err == nil
}

func (f *fixture) newToken(name string, actions ...string) {
	f.t.Helper()
	list, err := auth.RepositoryActions("demo/*", actions...)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.ids.CreateToken(context.Background(), owner, identity.TokenSpec{Name: name, Actions: list}); err != nil {
		f.t.Fatal(err)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	r := f.browser().get("/signin")
	wantStatus(t, r, http.StatusOK)
	for k, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
		"Cache-Control":          "no-store",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, part := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, part) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, part)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy allows inline code: %q", csp)
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(r.body) || strings.Contains(r.body, " style=") {
		t.Errorf("the page has inline script or style")
	}
	for _, p := range []string{"/static/app.css", "/static/app.js", "/static/favicon.svg"} {
		if r := f.browser().get(p); r.status != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
}

func TestSignInAndOut(t *testing.T) {
	f := newFixture(t)

	anon := f.browser()
	r := anon.get("/tokens")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/signin?next=%2Ftokens") {
		t.Fatalf("signed out GET /tokens: %d %s", r.status, r.header.Get("Location"))
	}

	b := f.browser()
	b.get("/signin")
	r = b.post("/signin", url.Values{"username": {"owner"}, "password": {"wrong password!"}})
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "Wrong username or password.") {
		t.Errorf("wrong password: page does not say so")
	}

	b = f.signIn("owner", ownerPassword)
	cookies := b.c.Jar.Cookies(mustURL(f.srv.URL))
	var sess *http.Cookie
	for _, c := range cookies {
		if c.Name == "berth_session" {
			sess = c
		}
	}
	if sess == nil || len(sess.Value) < 43 {
		t.Fatalf("no session cookie with a 256-bit ID: %v", cookies)
	}
	r = b.get("/tokens")
	wantStatus(t, r, http.StatusOK)

	r = b.post("/signout", url.Values{})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin?signed-out=1" {
		t.Fatalf("sign out: %d %s", r.status, r.header.Get("Location"))
	}
	if n := f.h.sessions.count(); n != 0 {
		t.Errorf("%d sessions left after sign-out", n)
	}
	// The old session ID is worth nothing, even when replayed.
	replay := f.browser()
	replay.c.Jar.SetCookies(mustURL(f.srv.URL), []*http.Cookie{{Name: "berth_session", Value: sess.Value, Path: "/"}})
	if r := replay.get("/tokens"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/signin") {
		t.Fatalf("replayed session after sign-out: %d %s", r.status, r.header.Get("Location"))
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.get("/signin")
	form := url.Values{"username": {"owner"}, "password": {ownerPassword}, "csrf": {b.csrf}}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range b.c.Jar.Cookies(mustURL(f.srv.URL)) {
		req.AddCookie(c)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, line := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(line, "berth_session=") {
			found = true
			for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
				if !strings.Contains(line, attr) {
					t.Errorf("session cookie %q lacks %s", line, attr)
				}
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie set: %v", resp.Header.Values("Set-Cookie"))
	}

	// Under TLS: Secure and the __Host- prefix.
	f.h.secure = true
	rec := httptest.NewRecorder()
	f.h.setCookie(rec, f.h.sessionCookieName(), "x", 60)
	if c := rec.Header().Get("Set-Cookie"); !strings.HasPrefix(c, "__Host-berth_session=") || !strings.Contains(c, "Secure") {
		t.Errorf("secure session cookie = %q", c)
	}
}

func TestSignInRefusesTokensAndAdmin(t *testing.T) {
	f := newFixture(t)
	f.newToken("ci-token", "content/read")
	creds, err := f.ids.GenerateCredentials(context.Background(), owner, "ci-token", []string{"password1"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.get("/signin")
	r := b.post("/signin", url.Values{"username": {"ci-token"}, "password": {creds.Passwords[0].Value}})
	wantStatus(t, r, http.StatusForbidden)
	if !strings.Contains(r.body, "Sign in to the portal with a user account") {
		t.Errorf("token sign-in: no explanation\n%s", r.body)
	}
	if f.h.sessions.count() != 0 {
		t.Errorf("a token got a session")
	}
}

func TestSignInCSRF(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.get("/signin")
	// A sign-in form posted from elsewhere carries no matching token.
	r := b.do(http.MethodPost, "/signin", url.Values{"username": {"owner"}, "password": {ownerPassword}, "csrf": {"forged"}})
	wantStatus(t, r, http.StatusForbidden)
	r = b.do(http.MethodPost, "/signin", url.Values{"username": {"owner"}, "password": {ownerPassword}, "csrf": {b.csrf}},
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	wantStatus(t, r, http.StatusForbidden)
	if f.h.sessions.count() != 0 {
		t.Errorf("a session was created by a forged sign-in")
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t)

	// Idle timeout.
	b := f.signIn("owner", ownerPassword)
	f.clock.Add(29 * time.Minute)
	wantStatus(t, b.get("/tokens"), http.StatusOK)
	f.clock.Add(31 * time.Minute)
	r := b.get("/tokens")
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "expired=1") {
		t.Fatalf("idle session: %d %s", r.status, r.header.Get("Location"))
	}
	if r := b.get("/signin?expired=1"); !strings.Contains(r.body, "Your session has ended") {
		t.Errorf("sign-in page does not say the session ended")
	}

	// Absolute lifetime, however active.
	b = f.signIn("owner", ownerPassword)
	for range 16 {
		f.clock.Add(29 * time.Minute)
		wantStatus(t, b.get("/scope-maps"), http.StatusOK)
	}
	f.clock.Add(20 * time.Minute) // 8h13m after sign-in
	if r := b.get("/scope-maps"); r.status != http.StatusSeeOther {
		t.Fatalf("session past its lifetime: %d", r.status)
	}

	// A POST on an expired session changes nothing.
	b = f.signIn("owner", ownerPassword)
	f.clock.Add(time.Hour)
	r = b.post("/scope-maps", smForm("expired-map", "demo/*", "content/read"))
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/signin") {
		t.Fatalf("POST on expired session: %d %s", r.status, r.header.Get("Location"))
	}
	if f.scopeMapExists("expired-map") {
		t.Errorf("a POST on an expired session created a scope map")
	}
}

func TestDisabledUserLosesSession(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("reader", readerPassword)
	st := identity.StatusDisabled
	if _, err := f.ids.UpdateUser(context.Background(), owner, "reader", identity.UserUpdate{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/repositories"); r.status != http.StatusSeeOther {
		t.Fatalf("disabled user still served: %d", r.status)
	}
}

// A password changed through another face (the CLI, the API) ends the
// portal sessions begun with the old one.
func TestPasswordChangeElsewhereEndsSessions(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("reader", readerPassword)
	wantStatus(t, b.get("/repositories"), http.StatusOK)
	pw := "a-brand-new-reader-password"
	if _, err := f.ids.UpdateUser(context.Background(), owner, "reader", identity.UserUpdate{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/repositories"); r.status != http.StatusSeeOther {
		t.Fatalf("session survives a password change: %d", r.status)
	}
	wantStatus(t, f.signIn("reader", pw).get("/repositories"), http.StatusOK)
}

func smForm(name, pattern string, actions ...string) url.Values {
	return url.Values{"name": {name}, "description": {"test"}, "pattern-0": {pattern}, "action-0": actions}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	f.newToken("ci-token", "content/read")

	cases := []struct {
		name   string
		csrf   string
		header []string
	}{
		{"missing token", "", nil},
		{"wrong token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil},
		{"token of another session", f.signIn("owner", ownerPassword).csrf, nil},
		{"cross-site request", b.csrf, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}},
		{"cross-origin without fetch metadata", b.csrf, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			post := func(path string, form url.Values) {
				t.Helper()
				form.Set("csrf", c.csrf)
				if c.csrf == "" {
					form.Set("csrf", "")
				}
				r := b.do(http.MethodPost, path, form, c.header...)
				wantStatus(t, r, http.StatusForbidden)
			}
			post("/scope-maps", smForm("forged-map", "demo/*", "content/read"))
			post("/tokens/ci-token", url.Values{"op": {"status"}, "status": {"disabled"}})
			post("/tokens/ci-token", url.Values{"op": {"generate"}, "slot": {"password1"}})
			post("/tokens/ci-token/delete", url.Values{})
			post("/signout", url.Values{})

			if f.scopeMapExists("forged-map") {
				t.Errorf("forged POST created a scope map")
			}
			tok, err := f.ids.GetToken(owner, "ci-token")
			if err != nil {
				t.Fatalf("forged POST deleted the token: %v", err)
			}
			if tok.Status != identity.StatusEnabled || len(tok.Passwords) != 0 {
				t.Errorf("forged POST changed the token: %+v", tok)
			}
		})
	}
	// The session survived the forged sign-out.
	wantStatus(t, b.get("/tokens"), http.StatusOK)
}

// postForms lists the POST forms of a page other than sign-out.
func postForms(body string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<form method="post" action="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if m[1] != "/signout" {
			out = append(out, m[1])
		}
	}
	return out
}

func TestReadOnlyRoles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.newToken("ci-token", "content/read")
	if _, err := f.ids.GenerateCredentials(ctx, owner, "ci-token", []string{"password1"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "team-read", Actions: []string{"repositories/team/*/content/read"}}); err != nil {
		t.Fatal(err)
	}
	putImage(t, f.store, "demo/app", "v1")

	reader := f.signIn("reader", readerPassword)
	for _, p := range []string{"/repositories", "/repositories/demo/app", "/scope-maps", "/scope-maps/team-read",
		"/scope-maps/_repositories_pull", "/tokens", "/tokens/ci-token", "/access-keys", "/audit", "/account", "/users", "/users/owner"} {
		r := reader.get(p)
		wantStatus(t, r, http.StatusOK)
		forms := postForms(r.body)
		if p == "/account" {
			if len(forms) != 1 || forms[0] != "/account" {
				t.Errorf("account page forms = %v, want only the own-password form", forms)
			}
			continue
		}
		if len(forms) > 0 {
			t.Errorf("reader sees forms on %s: %v", p, forms)
		}
		for _, link := range []string{`href="/scope-maps/new"`, `href="/tokens/new`, `href="[^"]*/delete"`} {
			if regexp.MustCompile(link).MatchString(r.body) {
				t.Errorf("reader sees a link to %s on %s", link, p)
			}
		}
	}
	wantStatus(t, reader.get("/tokens/new"), http.StatusForbidden)

	// Forged POSTs with a valid CSRF token are refused, and say why.
	forged := []struct {
		path string
		form url.Values
	}{
		{"/scope-maps", smForm("reader-map", "demo/*", "content/read")},
		{"/scope-maps/team-read", url.Values{"pattern-0": {"*"}, "action-0": {"content/write"}}},
		{"/scope-maps/team-read/delete", url.Values{"force": {"1"}}},
		{"/tokens", url.Values{"name": {"reader-token"}, "mode": {"existing"}, "scopeMap": {"_repositories_admin"}}},
		{"/tokens/ci-token", url.Values{"op": {"status"}, "status": {"disabled"}}},
		{"/tokens/ci-token", url.Values{"op": {"generate"}, "slot": {"password2"}}},
		{"/tokens/ci-token", url.Values{"op": {"delete-password"}, "slot": {"password1"}}},
		{"/tokens/ci-token/delete", url.Values{}},
		{"/access-keys", url.Values{"op": {"enable"}}},
		{"/users", url.Values{"name": {"mallory"}, "role": {"owner"}, "password": {"mallory-password"}, "password2": {"mallory-password"}}},
		{"/users/reader", url.Values{"op": {"role"}, "role": {"owner"}}},
		{"/repositories/demo/app/-/attributes", url.Values{"readEnabled": {"on"}}},
		{"/repositories/demo/app/-/delete", url.Values{"confirm": {"demo/app"}}},
	}
	for _, c := range forged {
		r := reader.post(c.path, c.form)
		if r.status != http.StatusForbidden {
			t.Errorf("reader POST %s: %d, want 403", c.path, r.status)
			continue
		}
		if !strings.Contains(r.body, "Nothing was changed") && !strings.Contains(r.body, "nothing was changed") && !strings.Contains(r.body, "not allowed") {
			t.Errorf("reader POST %s: the refusal does not say why:\n%s", c.path, r.body)
		}
	}
	if f.scopeMapExists("reader-map") {
		t.Errorf("reader created a scope map")
	}
	m, _ := f.ids.GetScopeMap(owner, "team-read")
	if len(m.Actions) != 1 {
		t.Errorf("reader changed a scope map: %v", m.Actions)
	}
	tok, err := f.ids.GetToken(owner, "ci-token")
	if err != nil || tok.Status != identity.StatusEnabled || len(tok.Passwords) != 1 {
		t.Errorf("reader changed the token: %+v %v", tok, err)
	}
	if a, _ := f.ids.GetAdmin(owner); a.Enabled {
		t.Errorf("reader enabled the admin user")
	}
	if u, _ := f.ids.GetUser(owner, "reader"); u.Role != "reader" {
		t.Errorf("reader raised their role to %s", u.Role)
	}
	if repo, err := f.store.Repository(ctx, "demo/app"); err != nil || !repo.Attributes.WriteEnabled {
		t.Errorf("reader changed or deleted the repository: %+v %v", repo, err)
	}

	// A pull-only user sees repositories and nothing of management.
	puller := f.signIn("puller", pullPassword)
	r := puller.get("/repositories")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "demo/app") || strings.Contains(r.body, `href="/tokens"`) {
		t.Errorf("pull user's repository page: wrong content")
	}
	if r := puller.get("/repositories/demo/app"); !strings.Contains(r.body, "metadata/read") || len(postForms(r.body)) > 0 {
		t.Errorf("pull user's repository page should be read-only and say that listing tags needs metadata/read")
	}
	wantStatus(t, puller.get("/tokens"), http.StatusForbidden)
}

func TestPasswordShownOnce(t *testing.T) {
	f := newFixture(t)
	f.newToken("ci-token", "content/read", "content/write")
	b := f.signIn("owner", ownerPassword)

	page := b.get("/tokens/ci-token")
	wantStatus(t, page, http.StatusOK)
	once := regexp.MustCompile(`name="once" value="([^"]+)"`).FindStringSubmatch(page.body)
	if once == nil {
		t.Fatal("no one-time nonce in the generate form")
	}
	expiry := time.Now().AddDate(0, 0, 30).Format("2006-01-02")
	form := url.Values{"op": {"generate"}, "slot": {"password1"}, "expiry": {expiry}, "once": {once[1]}}
	r := b.post("/tokens/ci-token", form)
	wantStatus(t, r, http.StatusOK)
	if r.header.Get("Location") != "" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("generate response: Location %q, Cache-Control %q", r.header.Get("Location"), r.header.Get("Cache-Control"))
	}
	m := regexp.MustCompile(`id="pw-password1" class="mono" readonly value="([^"]+)"`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("the generated password is not on the page:\n%s", r.body)
	}
	password := m[1]
	host := strings.TrimPrefix(f.srv.URL, "http://")
	if want := "docker login -u ci-token -p " + password + " " + host; !strings.Contains(r.body, want) {
		t.Errorf("the page lacks the login command %q", want)
	}
	if !strings.Contains(r.body, "it will not be shown again") {
		t.Errorf("the page does not say the password is shown once")
	}
	if _, err := f.ids.Authenticate("ci-token", password); err != nil {
		t.Fatalf("the shown password does not work: %v", err)
	}
	tok, _ := f.ids.GetToken(owner, "ci-token")
	if len(tok.Passwords) != 1 || tok.Passwords[0].Expiry == nil || tok.Passwords[0].Expiry.Format("2006-01-02") != expiry {
		t.Errorf("password1 expiry = %+v, want %s", tok.Passwords, expiry)
	}
	for _, c := range b.c.Jar.Cookies(mustURL(f.srv.URL)) {
		if strings.Contains(c.Value, password) {
			t.Errorf("cookie %s holds the password", c.Name)
		}
	}

	// Never again: not on the token page, the list, or a reload.
	for _, p := range []string{"/tokens/ci-token", "/tokens", "/repositories"} {
		if r := b.get(p); strings.Contains(r.body, password) {
			t.Errorf("GET %s shows the password again", p)
		}
	}
	form.Set("csrf", b.csrf)
	r = b.do(http.MethodPost, "/tokens/ci-token", form) // the browser's "resubmit form?"
	wantStatus(t, r, http.StatusConflict)
	if strings.Contains(r.body, password) || strings.Contains(r.body, `id="pw-password1"`) {
		t.Errorf("a resubmitted form shows a password")
	}
	if _, err := f.ids.Authenticate("ci-token", password); err != nil {
		t.Errorf("a resubmitted form regenerated the password: %v", err)
	}
}

func TestPasswordExpiryWarning(t *testing.T) {
	f := newFixture(t)
	f.newToken("ci-token", "content/read")
	if _, err := f.ids.GenerateCredentials(context.Background(), owner, "ci-token", []string{"password2"}, time.Now().Add(3*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	b := f.signIn("owner", ownerPassword)
	r := b.get("/tokens")
	if !strings.Contains(r.body, "expires soon") || !strings.Contains(r.body, "expires within 7 days") {
		t.Errorf("tokens page does not warn of a password expiring in 3 days")
	}
	if r := b.get("/tokens/ci-token"); !strings.Contains(r.body, "expires soon") {
		t.Errorf("token page does not warn of a password expiring in 3 days")
	}
}

func TestScopeMapEditor(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	wantStatus(t, b.get("/scope-maps/new"), http.StatusOK)

	// A bad pattern: the server's message next to the row, nothing stored,
	// what was typed kept.
	form := url.Values{"name": {"demo-push"}, "description": {"CI pushes"},
		"pattern-0": {"demo/*"}, "action-0": {"content/read", "content/write"},
		"pattern-1": {"a/*/b"}, "action-1": {"content/read"}}
	r := b.post("/scope-maps", form)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, `id="pattern-1-error"`) || !strings.Contains(r.body, "a wildcard may only appear as a whole trailing path segment") {
		t.Errorf("no message next to the bad pattern:\n%s", r.body)
	}
	if !strings.Contains(r.body, `value="a/*/b"`) || !strings.Contains(r.body, `value="CI pushes"`) {
		t.Errorf("the form lost what was typed")
	}
	if f.scopeMapExists("demo-push") {
		t.Fatal("a scope map with a bad pattern was stored")
	}

	// A bad name.
	form.Set("name", "_x")
	form.Set("pattern-1", "")
	form.Del("action-1")
	r = b.post("/scope-maps", form)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "it must be 5 to 50 characters long") {
		t.Errorf("no message for the bad name")
	}

	form.Set("name", "demo-push")
	r = b.post("/scope-maps", form)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/scope-maps/demo-push" {
		t.Fatalf("create: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
	}
	m, err := f.ids.GetScopeMap(owner, "demo-push")
	if err != nil || strings.Join(m.Actions, " ") != "repositories/demo/*/content/read repositories/demo/*/content/write" {
		t.Fatalf("stored scope map: %+v %v", m, err)
	}
	r = b.get("/scope-maps/demo-push")
	if !strings.Contains(r.body, "Scope map demo-push created.") {
		t.Errorf("no confirmation after creating")
	}

	// Duplicate name.
	r = b.post("/scope-maps", form)
	wantStatus(t, r, http.StatusConflict)
	if !strings.Contains(r.body, "already exists") {
		t.Errorf("no message for a duplicate name")
	}

	// Edit: add metadata/read on another pattern.
	r = b.post("/scope-maps/demo-push", url.Values{"description": {"CI"},
		"pattern-0": {"demo/*"}, "action-0": {"content/read", "content/write"},
		"pattern-3": {"shared/base"}, "action-3": {"content/read"}})
	wantStatus(t, r, http.StatusSeeOther)
	m, _ = f.ids.GetScopeMap(owner, "demo-push")
	if len(m.Actions) != 3 || m.Description != "CI" {
		t.Errorf("after edit: %+v", m)
	}

	// Built-ins are read-only.
	r = b.get("/scope-maps/_repositories_admin")
	if len(postForms(r.body)) != 0 {
		t.Errorf("built-in scope map page has forms: %v", postForms(r.body))
	}
	wantStatus(t, b.post("/scope-maps/_repositories_admin", url.Values{"pattern-0": {"*"}, "action-0": {"content/read"}}), http.StatusForbidden)

	// Delete, in use: needs force, names the tokens.
	if _, _, err := f.ids.CreateToken(context.Background(), owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "demo-push"}); err != nil {
		t.Fatal(err)
	}
	r = b.get("/scope-maps/demo-push/delete")
	if !strings.Contains(r.body, `href="/tokens/ci-token"`) || !strings.Contains(r.body, `name="force"`) {
		t.Errorf("delete page does not show the tokens using the map with a force option")
	}
	r = b.post("/scope-maps/demo-push/delete", url.Values{})
	wantStatus(t, r, http.StatusConflict)
	if !f.scopeMapExists("demo-push") {
		t.Fatal("deleted a scope map in use without force")
	}
	r = b.post("/scope-maps/demo-push/delete", url.Values{"force": {"1"}})
	wantStatus(t, r, http.StatusSeeOther)
	if f.scopeMapExists("demo-push") {
		t.Fatal("force delete did not delete")
	}
}

func TestTokenFlow(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)

	// Inline repositories and actions make <name>-scope-map.
	r := b.post("/tokens", url.Values{"name": {"ci-inline"}, "status": {"enabled"}, "mode": {"new"},
		"pattern-0": {"demo/*"}, "action-0": {"content/read"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/tokens/ci-inline" {
		t.Fatalf("create inline: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if !f.scopeMapExists("ci-inline-scope-map") {
		t.Errorf("no scope map made for the inline token")
	}
	// Neither scope map nor rows: an error on the field, nothing created.
	r = b.post("/tokens", url.Values{"name": {"ci-nothing"}, "mode": {"existing"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if _, err := f.ids.GetToken(owner, "ci-nothing"); err == nil {
		t.Errorf("token created without a scope map")
	}
	// An existing scope map, disabled.
	r = b.post("/tokens", url.Values{"name": {"ci-existing"}, "status": {"disabled"}, "mode": {"existing"}, "scopeMap": {"_repositories_pull"}})
	wantStatus(t, r, http.StatusSeeOther)
	tok, err := f.ids.GetToken(owner, "ci-existing")
	if err != nil || tok.Status != identity.StatusDisabled || tok.ScopeMap != "_repositories_pull" {
		t.Fatalf("created token: %+v %v", tok, err)
	}
	// Enable, change scope map, delete a password, delete the token.
	wantStatus(t, b.post("/tokens/ci-existing", url.Values{"op": {"status"}, "status": {"enabled"}}), http.StatusSeeOther)
	wantStatus(t, b.post("/tokens/ci-existing", url.Values{"op": {"scope-map"}, "scopeMap": {"_repositories_push"}}), http.StatusSeeOther)
	if _, err := f.ids.GenerateCredentials(context.Background(), owner, "ci-existing", nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.post("/tokens/ci-existing", url.Values{"op": {"delete-password"}, "slot": {"password2"}}), http.StatusSeeOther)
	tok, _ = f.ids.GetToken(owner, "ci-existing")
	if tok.Status != identity.StatusEnabled || tok.ScopeMap != "_repositories_push" || len(tok.Passwords) != 1 {
		t.Errorf("after updates: %+v", tok)
	}
	// A past expiry is refused next to the field.
	r = b.post("/tokens/ci-existing", url.Values{"op": {"generate"}, "slot": {"password2"}, "expiry": {"2001-01-01"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "is in the past") {
		t.Errorf("no message for a past expiry")
	}
	wantStatus(t, b.get("/tokens/ci-existing/delete"), http.StatusOK)
	wantStatus(t, b.post("/tokens/ci-existing/delete", url.Values{}), http.StatusSeeOther)
	if _, err := f.ids.GetToken(owner, "ci-existing"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("token not deleted: %v", err)
	}
}

func TestAccessKeys(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	r := b.get("/access-keys")
	if !strings.Contains(r.body, "Tokens are the better choice") {
		t.Errorf("access keys page lacks the note about tokens")
	}
	r = b.post("/access-keys", url.Values{"op": {"enable"}, "once": {"n1"}})
	wantStatus(t, r, http.StatusOK)
	m := regexp.MustCompile(`id="pw-password" class="mono" readonly value="([^"]+)"`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("enabling the admin user does not show its password")
	}
	if _, err := f.ids.Authenticate("berth", m[1]); err != nil {
		t.Errorf("admin password shown does not work: %v", err)
	}
	if r := b.get("/access-keys"); strings.Contains(r.body, m[1]) {
		t.Errorf("the admin password is shown again")
	}
	r = b.post("/access-keys", url.Values{"op": {"renew"}, "slot": {"password2"}, "once": {"n2"}})
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `id="pw-password2"`) {
		t.Errorf("renewed password2 not shown")
	}
	wantStatus(t, b.post("/access-keys", url.Values{"op": {"disable"}}), http.StatusSeeOther)
	if a, _ := f.ids.GetAdmin(owner); a.Enabled {
		t.Errorf("admin user still enabled")
	}
}

func TestUsersAndAccount(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	wantStatus(t, b.get("/users"), http.StatusOK)
	r := b.post("/users", url.Values{"name": {"dev"}, "role": {"contributor"}, "password": {"short"}, "password2": {"short"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "too short") {
		t.Errorf("no message for a short password")
	}
	r = b.post("/users", url.Values{"name": {"dev"}, "role": {"contributor"}, "password": {"a long password"}, "password2": {"a long password"}})
	wantStatus(t, r, http.StatusSeeOther)

	dev := f.signIn("dev", "a long password")
	if r := dev.get("/users"); r.status != http.StatusOK || len(postForms(r.body)) != 0 {
		t.Errorf("a contributor's /users: %d, forms %v; want 200 and no forms", r.status, postForms(r.body))
	}
	r = dev.post("/account", url.Values{"current": {"wrong"}, "password": {"another long one"}, "password2": {"another long one"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	r = dev.post("/account", url.Values{"current": {"a long password"}, "password": {"another long one"}, "password2": {"another long one"}})
	wantStatus(t, r, http.StatusSeeOther)
	if _, err := f.ids.Authenticate("dev", "another long one"); err != nil {
		t.Errorf("own password not changed: %v", err)
	}

	// The owner disables dev: dev's session ends.
	wantStatus(t, b.post("/users/dev", url.Values{"op": {"status"}, "status": {"disabled"}}), http.StatusSeeOther)
	if r := dev.get("/repositories"); r.status != http.StatusSeeOther {
		t.Errorf("disabled user's session still works: %d", r.status)
	}
	// The last owner cannot demote themself.
	r = b.post("/users/owner", url.Values{"op": {"role"}, "role": {"reader"}})
	wantStatus(t, r, http.StatusConflict)
}

// putImage stores an image manifest, an index over it and a signature
// referring to it, straight in the metadata store.
func putImage(t *testing.T, store *meta.Store, repo, tag string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	img := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.FromString("config"), "size": 1234},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest.FromString("layer"), "size": 3 << 20}},
	}
	b, _ := json.Marshal(img)
	d := digest.FromBytes(b)
	put := func(content []byte, mt, artifactType string, subject digest.Digest, tags ...string) digest.Digest {
		dg := digest.FromBytes(content)
		err := store.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Tags: tags, Manifest: meta.Manifest{
			Digest: dg, MediaType: mt, ArtifactType: artifactType, Subject: subject, Size: int64(len(content)), Content: content}})
		if err != nil {
			t.Fatal(err)
		}
		return dg
	}
	put(b, "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json", "")
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(b), "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(b), "platform": map[string]string{"os": "linux", "architecture": "arm64", "variant": "v8"}},
		},
	}
	ib, _ := json.Marshal(index)
	id := put(ib, "application/vnd.oci.image.index.v1+json", "", "", tag)
	sig := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","subject":{"digest":"` + id.String() + `"}}`)
	put(sig, "application/vnd.oci.image.manifest.v1+json", "application/vnd.dev.cosign.artifact.sig.v1+json", id)
	return id
}

func TestRepositoryPages(t *testing.T) {
	f := newFixture(t)
	idx := putImage(t, f.store, "demo/app", "v1")
	putImage(t, f.store, "other/app", "latest")
	b := f.signIn("owner", ownerPassword)

	r := b.get("/repositories?q=demo")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `href="/repositories/demo/app"`) || strings.Contains(r.body, "other/app") {
		t.Errorf("search for demo: wrong result")
	}
	r = b.get("/repositories/demo/app")
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{"linux/amd64", "linux/arm64/v8", "OCI index", "1 signature", shortDigest(idx)} {
		if !strings.Contains(r.body, want) {
			t.Errorf("repository page lacks %q", want)
		}
	}
	r = b.get("/repositories/demo/app/-/manifests/" + idx.String())
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "application/vnd.dev.cosign.artifact.sig.v1") {
		t.Errorf("manifest page lacks the referrer")
	}
	wantStatus(t, b.get("/repositories/nope/nope"), http.StatusNotFound)

	// Attributes.
	r = b.post("/repositories/demo/app/-/attributes", url.Values{"readEnabled": {"on"}, "listEnabled": {"on"}, "deleteEnabled": {"on"}})
	wantStatus(t, r, http.StatusSeeOther)
	repo, _ := f.store.Repository(context.Background(), "demo/app")
	if repo.Attributes.WriteEnabled || !repo.Attributes.ReadEnabled {
		t.Errorf("attributes = %+v", repo.Attributes)
	}
	r = b.post("/repositories/demo/app/-/manifests/"+idx.String()+"/attributes", url.Values{"readEnabled": {"on"}, "writeEnabled": {"on"}, "deleteEnabled": {"on"}})
	wantStatus(t, r, http.StatusSeeOther)
	if m, _ := f.store.Manifest(context.Background(), "demo/app", idx.String()); m.Attributes.ListEnabled {
		t.Errorf("manifest attributes not saved: %+v", m.Attributes)
	}

	// Delete needs the name typed.
	wantStatus(t, b.get("/repositories/demo/app/-/delete"), http.StatusOK)
	wantStatus(t, b.post("/repositories/demo/app/-/delete", url.Values{"confirm": {"demo"}}), http.StatusUnprocessableEntity)
	if _, err := f.store.Repository(context.Background(), "demo/app"); err != nil {
		t.Fatal("deleted without confirmation")
	}
	wantStatus(t, b.post("/repositories/demo/app/-/delete", url.Values{"confirm": {"demo/app"}}), http.StatusSeeOther)
	if _, err := f.store.Repository(context.Background(), "demo/app"); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("repository not deleted: %v", err)
	}

	f.audit.Record(audit.Event{Kind: audit.KindPush, Result: audit.ResultSuccess, Identity: "ci-token", IdentityKind: "token",
		Repository: "other/app", Tag: "latest", Digest: idx.String()})
	f.audit.Flush()
	r = b.get("/audit?kind=delete")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "demo/app") {
		t.Errorf("audit page does not show the deletion")
	}
	r = b.get("/audit?kind=push")
	if !strings.Contains(r.body, "other/app:latest") || !strings.Contains(r.body, shortDigest(idx)) {
		t.Errorf("audit page does not show the push")
	}
	r = b.get("/audit?kind=login&result=success&identity=owner")
	if !strings.Contains(r.body, "portal sign-in") {
		t.Errorf("audit page does not show the sign-in")
	}
	wantStatus(t, b.get("/audit?since=yesterday"), http.StatusUnprocessableEntity)
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/tokens":              "/tokens",
		"/tokens?x=1":          "/tokens?x=1",
		"//evil.example":       "",
		"/\\evil.example":      "",
		"https://evil.example": "",
		"/signin":              "",
		"":                     "",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// Manifests no tag points at (an index's platform images, signatures) are
// listed on the repository page, linked to their own pages.
func TestUntaggedManifestsListed(t *testing.T) {
	f := newFixture(t)
	idx := putImage(t, f.store, "demo/app", "v1")
	b := f.signIn("owner", ownerPassword)
	r := b.get("/repositories/demo/app")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "Untagged manifests") {
		t.Fatal("no untagged manifests section")
	}
	if !strings.Contains(r.body, "vnd.dev.cosign.artifact.sig.v1") || !strings.Contains(r.body, "refers to "+shortDigest(idx)) {
		t.Errorf("the signature is not listed with its subject")
	}
	if strings.Count(r.body, `href="/repositories/demo/app/-/manifests/`) < 3 {
		t.Errorf("untagged manifests are not linked")
	}
	// A reader without metadata/read sees none of it.
	pull := f.signIn("puller", pullPassword)
	if r := pull.get("/repositories/demo/app"); strings.Contains(r.body, "Untagged manifests") {
		t.Errorf("a pull-only user sees the untagged manifests")
	}
}
