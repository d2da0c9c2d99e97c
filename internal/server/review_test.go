package server_test

// Security review: each test here demonstrates a confirmed bug (it fails
// on the code as reviewed) or locks in behaviour that a fix must keep.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
)

func (e *env) passwordGrant(user, pass string, extra ...string) (int, tokenResp) {
	e.t.Helper()
	form := url.Values{"grant_type": {"password"}, "service": {"berth"}, "username": {user}, "password": {pass}, "access_type": {"offline"}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Add(extra[i], extra[i+1])
	}
	st, body := e.doForm(form.Encode())
	var tr tokenResp
	json.Unmarshal([]byte(body), &tr)
	return st, tr
}

func (e *env) refreshGrant(rt string) (int, tokenResp) {
	e.t.Helper()
	st, body := e.doForm(url.Values{"grant_type": {"refresh_token"}, "service": {"berth"}, "refresh_token": {rt}}.Encode())
	var tr tokenResp
	json.Unmarshal([]byte(body), &tr)
	return st, tr
}

// Finding 1. UpdateUser bumps a user's generation with gen++, but new users
// (and tokens, and passwords) take their generation from the registry-wide
// serial. After a password change the user's generation is the *next*
// serial, so deleting the user and creating another of the same name hands
// the new account the old one's generation: the deleted user's refresh and
// access tokens, and its cached Basic password, now act as the new account.
func TestReviewDeletedUserCredentialsRevivedByNameReuse(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: "bob", Role: "pull", Password: "bob-first-password"}); err != nil {
		t.Fatal(err)
	}
	oldPW := "bob-second-password"
	if _, err := e.id.UpdateUser(ctx, owner, "bob", identity.UserUpdate{Password: &oldPW}); err != nil {
		t.Fatal(err)
	}
	st, tr := e.passwordGrant("bob", oldPW)
	if st != 200 || tr.RefreshToken == "" {
		t.Fatalf("old bob login: %d", st)
	}
	// Basic on the API caches the verified password for five minutes.
	if st, _, _ := e.do("GET", "/api/v1/users/bob", basic("bob", oldPW), nil); st != 200 {
		t.Fatalf("old bob reads own record: %d", st)
	}
	gen1, _ := e.id.UserGeneration("bob")

	// bob leaves; a different person named bob joins later, as an owner.
	if err := e.id.DeleteUser(ctx, owner, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: "bob", Role: "owner", Password: "new-bob-own-password"}); err != nil {
		t.Fatal(err)
	}
	gen2, _ := e.id.UserGeneration("bob")
	if gen1 == gen2 {
		t.Errorf("the new user bob got generation %d, the deleted bob's", gen2)
	}
	if st, tr2 := e.refreshGrant(tr.RefreshToken); st == 200 {
		t.Errorf("the deleted bob's refresh token works for the new bob")
		if st, _, _ := e.do("GET", "/api/v1/users", bearer(tr2.AccessToken), nil); st == 200 {
			t.Errorf("... with the new bob's owner rights: GET /api/v1/users = 200")
		}
	}
	if st, _, _ := e.do("GET", "/api/v1/users", basic("bob", oldPW), nil); st == 200 {
		t.Errorf("the deleted bob's password (cached) logs in as the new owner bob")
	}
}

// Finding 2. Any access token of a user, whatever scope it was issued for
// (here one repository, pull), changes that user's password through the
// API without the current password. The portal asks for the current
// password precisely so that "a session left open is not enough to take
// the account over"; the API does not, so a 5-minute pull token leaked
// from a CI log or a proxy becomes the account, permanently.
func TestReviewScopedAccessTokenChangesOwnPasswordWithoutCurrent(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken("owner", ownerPassword, "repository:team/app:pull")
	st, body, _ := e.do("PATCH", "/api/v1/users/owner", bearer(tok),
		strings.NewReader(`{"properties":{"password":"attacker-chosen-password"}}`))
	if st == 200 {
		t.Errorf("PATCH own password with a repository:team/app:pull access token and no current password: 200 %s", body)
	}
	if _, err := e.id.Authenticate("owner", ownerPassword); err != nil {
		t.Errorf("the owner's own password no longer works: %v", err)
	}
}

// Finding 3. docs/api.md: "Disabling a user or changing their password ends
// their sessions (refresh and access tokens)". Disabling only blocks them
// while disabled: UpdateUser does not bump the generation for a status
// change, so re-enabling revives every refresh token issued before.
func TestReviewDisablingUserEndsRefreshTokens(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: "carol", Role: "contributor", Password: "carol-password-1"}); err != nil {
		t.Fatal(err)
	}
	st, tr := e.passwordGrant("carol", "carol-password-1")
	if st != 200 || tr.RefreshToken == "" {
		t.Fatalf("login: %d", st)
	}
	disabled, enabled := identity.StatusDisabled, identity.StatusEnabled
	if _, err := e.id.UpdateUser(ctx, owner, "carol", identity.UserUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.refreshGrant(tr.RefreshToken); st != 401 {
		t.Fatalf("refresh while disabled: %d", st)
	}
	if _, err := e.id.UpdateUser(ctx, owner, "carol", identity.UserUpdate{Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.refreshGrant(tr.RefreshToken); st == 200 {
		t.Errorf("a refresh token issued before the user was disabled works again after re-enabling")
	}
}

// Finding 4. DELETE /v2/<name>/blobs/<digest> ignores deleteEnabled and
// writeEnabled: content/delete unlinks the layers of a locked manifest in
// a locked repository (and the next gc removes the content). The docs:
// "a locked manifest cannot be overwritten or deleted by anyone, the admin
// included, until unlocked".
func TestReviewBlobDeleteHonoursLocks(t *testing.T) {
	e := newEnv(t)
	if err := e.push("locked/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	owner := basic("owner", ownerPassword)
	st, body, _ := e.do("PATCH", "/api/v1/repositories/locked/app", owner, strings.NewReader(`{"deleteEnabled":false,"writeEnabled":false}`))
	if st != 200 {
		t.Fatalf("lock repository: %d %s", st, body)
	}
	st, body, _ = e.do("PATCH", "/api/v1/repositories/locked/app/_manifests/v1", owner, strings.NewReader(`{"deleteEnabled":false,"writeEnabled":false}`))
	if st != 200 {
		t.Fatalf("lock manifest: %d %s", st, body)
	}
	// The lock holds for the manifest itself.
	if st, _, _ := e.do("DELETE", "/v2/locked/app/manifests/v1", owner, nil); st == 202 {
		t.Fatal("locked manifest deleted")
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/v2/locked/app/manifests/v1", nil)
	req.Header.Set("Authorization", owner)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if len(m.Layers) == 0 {
		t.Fatal("no layers")
	}
	st, _, _ = e.do("DELETE", "/v2/locked/app/blobs/"+m.Layers[0].Digest, owner, nil)
	if st == 202 {
		t.Errorf("DELETE of a layer of a locked manifest in a deleteEnabled=false repository: 202")
	}
	if st, _, _ := e.do("GET", "/v2/locked/app/blobs/"+m.Layers[0].Digest, owner, nil); st != 200 {
		t.Errorf("a layer of the locked manifest can no longer be pulled: %d", st)
	}
}

// Finding 5. Request metrics are labelled with r.Method as sent, and
// /metrics is served without authentication: any client mints a new time
// series (a counter and a 14-bucket histogram) per made-up method, without
// bound.
func TestReviewMetricsMethodCardinalityBounded(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 50; i++ {
		e.do(fmt.Sprintf("JUNK%d", i), "/v2/", "", nil)
	}
	_, body, _ := e.do("GET", "/metrics", "", nil)
	n := len(regexp.MustCompile(`berth_http_requests_total\{[^}]*method="JUNK\d+"`).FindAllString(body, -1))
	if n > 1 {
		t.Errorf("/metrics holds %d series for made-up methods sent by an anonymous client", n)
	}
}

// Finding 6. The limiter counts the peer address only (X-Forwarded-For is
// never believed, not even from TrustedProxies). Behind a reverse proxy
// every client has the proxy's address, so 50 failed logins by anyone,
// with any usernames, refuse every login of every user, token and admin
// (429) for up to five minutes, renewable at will.
func TestReviewLimiterBehindTrustedProxyLocksOutEveryone(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"} })
	pw, _ := e.newToken("ci-victim", actions("app", "content/read")...)
	get := func(user, pass, xff string) int {
		req, _ := http.NewRequest("GET", e.http.URL+"/oauth2/token?service=berth", nil)
		req.SetBasicAuth(user, pass)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 51; i++ {
		get(fmt.Sprintf("nobody%d", i), "guess", "203.0.113.66")
	}
	if st := get("ci-victim", pw, "198.51.100.7"); st != 200 {
		t.Errorf("a different client with the right password, after an attacker's 51 failures: %d", st)
	}
}

// Finding 7. Limiter.Allow and Limiter.Fail are separate steps around the
// password check, so concurrent attempts all pass Allow before the first
// Fail: the threshold (5) does not bound how many guesses (or argon2id
// computations, ~45 ms of CPU each) one burst gets.
func TestReviewLimiterBoundsConcurrentGuesses(t *testing.T) {
	e := newEnv(t)
	const burst = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("GET", e.http.URL+"/oauth2/token?service=berth", nil)
			req.SetBasicAuth("owner", fmt.Sprintf("guess-%d", i))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	close(start)
	wg.Wait()
	evs, err := e.srv.Audit().List(t.Context(), audit.Filter{Identity: "owner", Kind: audit.KindLogin, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, ev := range evs {
		if ev.Reason == "wrong password" {
			checked++
		}
	}
	// Threshold 5 plus the address threshold's slack would be generous.
	if checked > 10 {
		t.Errorf("%d of %d concurrent guesses at owner's password were checked (argon2id each); the threshold is 5", checked, burst)
	}
}

// Finding 8. A user's password is checked with argon2id (~45 ms); an
// unknown username costs two HMACs (µs). Authenticate's "same work as for
// a real name" holds for tokens only, so user names are enumerable by
// timing, unauthenticated, through the token endpoint.
func TestReviewUnknownUserTakesAsLongAsKnownUser(t *testing.T) {
	e := newEnv(t)
	median := func(user string) time.Duration {
		var ds []time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			e.id.Authenticate(user, fmt.Sprintf("wrong-%d", i))
			ds = append(ds, time.Since(t0))
		}
		for i := range ds {
			for j := i + 1; j < len(ds); j++ {
				if ds[j] < ds[i] {
					ds[i], ds[j] = ds[j], ds[i]
				}
			}
		}
		return ds[len(ds)/2]
	}
	known, unknown := median("owner"), median("no-such-user")
	if known > 10*unknown+5*time.Millisecond {
		t.Errorf("wrong password for an existing user takes %v, for an unknown user %v: user names leak by timing", known, unknown)
	}
}

// Finding 9. A failed login stores the username as sent, unclipped, in the
// audit log (Reason and UserAgent are clipped to 512, Identity is not) and
// in the limiter's keys (100,000 of them, "some 20 MB" by the comment).
// Rate-limited attempts are audited too, so an anonymous client writes
// ~64 KiB rows at will.
func TestReviewAuditClipsAttackerChosenUsername(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 60000)
	e.doForm(url.Values{"grant_type": {"password"}, "service": {"berth"}, "username": {long}, "password": {"x"}}.Encode())
	evs, err := e.srv.Audit().List(t.Context(), audit.Filter{Kind: audit.KindLogin, Result: audit.ResultFailure, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if len(ev.Identity) > 512 {
			t.Errorf("audit row holds a %d-byte username chosen by an anonymous client", len(ev.Identity))
		}
	}
}

// Finding 10 (correctness). With anonymousPull, the token endpoint issues
// anonymous access tokens, but ResolveClaims refuses every token of kind
// anonymous, so clients that follow the Bearer challenge (docker, crane,
// oras: all of them) cannot pull anonymously.
func TestReviewAnonymousPullWithBearerToken(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.AnonymousPull = true })
	if err := e.push("public/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	st, body, _ := e.do("GET", "/oauth2/token?service=berth&scope=repository:public/app:pull", "", nil)
	var tr tokenResp
	json.Unmarshal([]byte(body), &tr)
	if st != 200 || tr.Token == "" {
		t.Fatalf("anonymous token: %d %s", st, body)
	}
	if st, _, _ := e.do("GET", "/v2/public/app/manifests/v1", "", nil); st != 200 {
		t.Fatalf("anonymous pull without a token: %d", st)
	}
	if st, body, _ := e.do("GET", "/v2/public/app/manifests/v1", bearer(tr.Token), nil); st != 200 {
		t.Errorf("anonymous pull with the anonymous access token: %d %s", st, body)
	}
	// It must still grant nothing else.
	if st, _, _ := e.do("PUT", "/v2/public/app/manifests/v2", bearer(tr.Token), strings.NewReader("{}")); st == 201 {
		t.Fatal("anonymous push")
	}
}

// Lock-in: an upload session belongs to the repository it was started in,
// and a mount from a repository the token cannot read falls back to a
// plain upload, with real tokens and access tokens end to end.
func TestReviewUploadSessionsAndMountsStayInScope(t *testing.T) {
	e := newEnv(t)
	if err := e.push("secret/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	pw, _ := e.newToken("team-pusher", actions("team/*", "content/read", "content/write")...)
	tok := bearer(e.accessToken("team-pusher", pw, "repository:team/app:pull,push", "repository:secret/app:pull"))
	ownerAuth := basic("owner", ownerPassword)

	// The owner's upload in secret/app cannot be driven through team/app.
	_, _, h := e.do("POST", "/v2/secret/app/blobs/uploads/", ownerAuth, nil)
	id := h.Get("Docker-Upload-UUID")
	if id == "" {
		t.Fatal("no upload id")
	}
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		if st, _, _ := e.do(m, "/v2/team/app/blobs/uploads/"+id, tok, strings.NewReader("x")); st != 404 {
			t.Errorf("%s of secret/app's upload through team/app: %d, want 404", m, st)
		}
	}
	if st, _, _ := e.do("PUT", "/v2/team/app/blobs/uploads/"+id+"?digest=sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", tok, strings.NewReader("x")); st != 404 {
		t.Errorf("PUT of secret/app's upload through team/app: %d, want 404", st)
	}
	// The owner's session is intact.
	if st, _, _ := e.do("GET", "/v2/secret/app/blobs/uploads/"+id, ownerAuth, nil); st != 204 {
		t.Errorf("owner's upload after the attempts: %d", st)
	}

	// Mount of a secret layer: falls back to an upload session, links nothing.
	req, _ := http.NewRequest("GET", e.http.URL+"/v2/secret/app/manifests/v1", nil)
	req.Header.Set("Authorization", ownerAuth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	layer := m.Layers[0].Digest
	for _, q := range []string{"?mount=" + layer + "&from=secret/app", "?mount=" + layer} {
		st, _, h := e.do("POST", "/v2/team/app/blobs/uploads/"+q, tok, nil)
		if st != 202 || !strings.Contains(h.Get("Location"), "/blobs/uploads/") {
			t.Errorf("mount %s: %d %s, want 202 and an upload session", q, st, h.Get("Location"))
		}
	}
	if st, _, _ := e.do("HEAD", "/v2/team/app/blobs/"+layer, tok, nil); st != 404 {
		t.Errorf("secret layer visible in team/app after refused mounts: %d", st)
	}
}
