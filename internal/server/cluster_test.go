package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// cluster is several `berth serve` processes on one PostgreSQL database.
type cluster struct {
	url   string
	pg    *testutil.Postgres
	nodes []*testutil.Server
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase()
	c := &cluster{pg: pg, url: url}
	pw := testutil.RandomString(16)
	for range n {
		c.nodes = append(c.nodes, testutil.StartServer(t, testutil.WithName("cluster"), testutil.WithPassword(pw),
			testutil.WithArgs("--database", url)))
	}
	return c
}

// call sends one request as user:pass (Basic) or with a bearer token,
// and returns the status, the Retry-After header and the body.
func call(t *testing.T, method, url, body, authorization string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

func (c *cluster) owner(i int) string {
	return basic(c.nodes[i].Username, c.nodes[i].Password)
}

// mustAPI calls the management API of node i as the owner.
func (c *cluster) mustAPI(t *testing.T, i int, method, path, body string, want int) string {
	t.Helper()
	code, _, out := call(t, method, c.nodes[i].URL+path, body, c.owner(i))
	if code != want {
		t.Fatalf("%s %s on node %d: %d %s, want %d", method, path, i+1, code, out, want)
	}
	return out
}

// createToken makes a token with password1 through node i and returns the password.
func (c *cluster) createToken(t *testing.T, i int, name, body string) string {
	t.Helper()
	out := c.mustAPI(t, i, "PUT", "/api/v1/tokens/"+name, body, http.StatusCreated)
	var resp struct {
		Properties struct {
			Credentials struct {
				Passwords []struct{ Value string } `json:"passwords"`
			} `json:"credentials"`
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Properties.Credentials.Passwords) == 0 {
		t.Fatalf("token %s: %s (%v)", name, out, err)
	}
	return resp.Properties.Credentials.Passwords[0].Value
}

// accessToken gets an access token from node i's token endpoint.
func accessToken(t *testing.T, s *testutil.Server, user, pass, scope string) string {
	t.Helper()
	code, _, out := call(t, "GET", s.URL+"/oauth2/token?service=cluster&scope="+scope, "", basic(user, pass))
	var resp struct {
		Token string `json:"access_token"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(out), &resp) != nil || resp.Token == "" {
		t.Fatalf("token endpoint: %d %s", code, out)
	}
	return resp.Token
}

// TestRevocationAcrossNodes: a change committed through one node is
// refused by every other node on its very next request, with no wait in
// between.
func TestRevocationAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	pw := c.createToken(t, 0, "ci-token", `{"properties":{"scopeMapId":"_repositories_push","credentials":{"passwords":[{"name":"password1"}]}}}`)
	access := accessToken(t, c.nodes[0], "ci-token", pw, "repository:app:pull,push")
	for i, n := range c.nodes {
		if code, _, out := call(t, "GET", n.URL+"/v2/", "", basic("ci-token", pw)); code != http.StatusOK {
			t.Fatalf("node %d before the change, Basic: %d %s", i+1, code, out)
		}
		if code, _, out := call(t, "GET", n.URL+"/v2/", "", bearer(access)); code != http.StatusOK {
			t.Fatalf("node %d before the change, Bearer: %d %s", i+1, code, out)
		}
	}
	c.mustAPI(t, 0, "PATCH", "/api/v1/tokens/ci-token", `{"properties":{"status":"disabled"}}`, http.StatusOK)
	for i, n := range c.nodes[1:] {
		if code, _, out := call(t, "GET", n.URL+"/v2/", "", basic("ci-token", pw)); code != http.StatusUnauthorized {
			t.Errorf("node %d right after the token was disabled on node 1, Basic: %d %s", i+2, code, out)
		}
		if code, _, out := call(t, "GET", n.URL+"/v2/", "", bearer(access)); code != http.StatusUnauthorized {
			t.Errorf("node %d right after the token was disabled on node 1, Bearer: %d %s", i+2, code, out)
		}
		if code, _, out := call(t, "GET", n.URL+"/oauth2/token?service=cluster", "", basic("ci-token", pw)); code != http.StatusUnauthorized {
			t.Errorf("node %d right after the token was disabled on node 1, token endpoint: %d %s", i+2, code, out)
		}
	}

	// A scope map shrunk on node 2 denies a push on node 3 at once.
	c.mustAPI(t, 1, "PUT", "/api/v1/scopeMaps/app-rw", `{"properties":{"actions":["repositories/app/content/read","repositories/app/content/write"]}}`, http.StatusCreated)
	ppw := c.createToken(t, 1, "pusher", `{"properties":{"scopeMapId":"app-rw","credentials":{"passwords":[{"name":"password1"}]}}}`)
	if code, _, out := call(t, "POST", c.nodes[2].URL+"/v2/app/blobs/uploads/", "", basic("pusher", ppw)); code != http.StatusAccepted {
		t.Fatalf("push on node 3 before the scope map shrank: %d %s", code, out)
	}
	c.mustAPI(t, 1, "PATCH", "/api/v1/scopeMaps/app-rw", `{"properties":{"removeActions":["repositories/app/content/write"]}}`, http.StatusOK)
	if code, _, out := call(t, "POST", c.nodes[2].URL+"/v2/app/blobs/uploads/", "", basic("pusher", ppw)); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("push on node 3 right after the scope map shrank on node 2: %d %s", code, out)
	}
	if code, _, out := call(t, "GET", c.nodes[2].URL+"/v2/app/manifests/latest", "", basic("pusher", ppw)); code == http.StatusUnauthorized || code == http.StatusForbidden {
		t.Errorf("pull on node 3 after only push was taken away: %d %s", code, out)
	}

	// A user disabled on node 3 is refused on node 1.
	c.mustAPI(t, 2, "PUT", "/api/v1/users/dev", `{"properties":{"role":"reader","password":"a-long-password-1"}}`, http.StatusCreated)
	if code, _, out := call(t, "GET", c.nodes[0].URL+"/api/v1/repositories", "", basic("dev", "a-long-password-1")); code != http.StatusOK {
		t.Fatalf("new user on node 1: %d %s", code, out)
	}
	c.mustAPI(t, 2, "PATCH", "/api/v1/users/dev", `{"properties":{"status":"disabled"}}`, http.StatusOK)
	if code, _, out := call(t, "GET", c.nodes[0].URL+"/api/v1/repositories", "", basic("dev", "a-long-password-1")); code != http.StatusUnauthorized {
		t.Errorf("user disabled on node 3, on node 1: %d %s", code, out)
	}
}

// TestFailClosedWithoutDatabase: with PostgreSQL stopped, credential
// checks answer 503 with Retry-After once a node cannot confirm its
// identities are current (never 200 after that, never 401), and the nodes
// recover by themselves when it is back.
func TestFailClosedWithoutDatabase(t *testing.T) {
	c := startCluster(t, 2)
	pw := c.createToken(t, 0, "ci-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1"}]}}}`)
	access := accessToken(t, c.nodes[1], "ci-token", pw, "repository:app:pull")
	c.pg.Stop()
	stopped := true
	defer func() {
		if stopped {
			c.pg.Start()
		}
	}()
	for i, n := range c.nodes {
		checks := map[string]string{"basic": basic("ci-token", pw), "bearer": bearer(access)}
		for name, set := range checks {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, retry, out := call(t, "GET", n.URL+"/v2/", "", set)
				if code == http.StatusServiceUnavailable {
					if retry == "" {
						t.Errorf("node %d %s: 503 without Retry-After", i+1, name)
					}
					break
				}
				if code != http.StatusOK || time.Now().After(deadline) {
					t.Fatalf("node %d %s with the database down: %d %s; want 200 until it cannot confirm, then 503", i+1, name, code, out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// From then on: never an answer from stale identities.
			for range 5 {
				if code, _, out := call(t, "GET", n.URL+"/v2/", "", set); code != http.StatusServiceUnavailable {
					t.Fatalf("node %d %s after failing closed: %d %s", i+1, name, code, out)
				}
			}
		}
		if code, _, out := call(t, "GET", n.URL+"/oauth2/token?service=cluster", "", basic("ci-token", pw)); code != http.StatusServiceUnavailable {
			t.Errorf("node %d token endpoint with the database down: %d %s", i+1, code, out)
		}
		if code, _, _ := call(t, "GET", n.URL+"/readyz", "", ""); code != http.StatusServiceUnavailable {
			t.Errorf("node %d /readyz with the database down: %d", i+1, code)
		}
	}
	c.pg.Start()
	stopped = false
	for i, n := range c.nodes {
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, _, out := call(t, "GET", n.URL+"/v2/", "", basic("ci-token", pw))
			if code == http.StatusOK {
				break
			}
			if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("node %d after the database came back: %d %s", i+1, code, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		code, _, out := call(t, "GET", n.URL+"/readyz?format=json", "", "")
		if code != http.StatusOK || !strings.Contains(out, `"changes":{"status":"ok"}`) {
			t.Errorf("node %d /readyz after recovery: %d %s", i+1, code, out)
		}
	}
	// And revocation works again across them.
	c.mustAPI(t, 0, "DELETE", "/api/v1/tokens/ci-token", "", http.StatusNoContent)
	if code, _, out := call(t, "GET", c.nodes[1].URL+"/v2/", "", basic("ci-token", pw)); code != http.StatusUnauthorized {
		t.Errorf("node 2 after the token was deleted on node 1: %d %s", code, out)
	}
}

// TestSigningKeyRotationAcrossNodes: a key rotated through one node is
// known to every node before any signs with it, so tokens issued before
// and after the rotation work on every node throughout.
func TestSigningKeyRotationAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	pw := c.createToken(t, 0, "ci-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1"}]}}}`)
	before := accessToken(t, c.nodes[0], "ci-token", pw, "repository:app:pull")
	out := c.mustAPI(t, 1, "POST", "/api/v1/signingKeys", "", http.StatusCreated)
	var k struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Kid == "" {
		t.Fatalf("rotate: %s", out)
	}
	works := func(tok, when string) {
		t.Helper()
		for i, n := range c.nodes {
			if code, _, out := call(t, "GET", n.URL+"/v2/", "", bearer(tok)); code != http.StatusOK {
				t.Errorf("node %d, token issued %s: %d %s", i+1, when, code, out)
			}
		}
	}
	works(before, "before the rotation")
	// Each node switches to the new key at its activation time; until
	// then it signs with the old one, and every token works everywhere.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		tok := accessToken(t, c.nodes[i%3], "ci-token", pw, "repository:app:pull")
		works(tok, "during the rotation")
		if kidOf(t, tok) == k.Kid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no node signs with the new key")
		}
		time.Sleep(100 * time.Millisecond)
	}
	works(before, "before the rotation, after the new key signs")
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// TestPortalSessionsAcrossNodes: a portal session begun on one node is
// good on the others, its CSRF token too, signing out on any node ends it
// on all, and the database holds only the session id's hash.
func TestPortalSessionsAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(req *http.Request, cookies ...*http.Cookie) (*http.Response, string) {
		t.Helper()
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	cookie := func(resp *http.Response, name string) *http.Cookie {
		for _, ck := range resp.Cookies() {
			if ck.Name == name {
				return ck
			}
		}
		t.Fatalf("no cookie %s", name)
		return nil
	}
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	req, _ := http.NewRequest("GET", n1.URL+"/signin", nil)
	resp, _ := do(req)
	signin := cookie(resp, "berth_signin")
	form := url.Values{"username": {n1.Username}, "password": {n1.Password}, "csrf": {signin.Value}}
	req, _ = http.NewRequest("POST", n1.URL+"/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", n1.URL)
	resp, body := do(req, signin)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in on node 1: %d %s", resp.StatusCode, body)
	}
	sess := cookie(resp, "berth_session")

	req, _ = http.NewRequest("GET", n2.URL+"/repositories", nil)
	resp, page := do(req, sess)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("node 2 with node 1's session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}

	db, err := sqldb.Open(context.Background(), c.url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sum := sha256.Sum256([]byte(sess.Value))
	var byID, byHash int
	db.R().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM portal_sessions WHERE id_hash = ?`, sess.Value).Scan(&byID)
	db.R().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM portal_sessions WHERE id_hash = ?`, hex.EncodeToString(sum[:])).Scan(&byHash)
	if byID != 0 || byHash != 1 {
		t.Errorf("sessions stored by id: %d, by its hash: %d; want 0 and 1", byID, byHash)
	}

	// A wrong CSRF token is refused on node 3, the right one (from node 2's page) signs out.
	for _, tc := range []struct {
		csrf string
		want int
	}{{"wrong", http.StatusForbidden}, {m[1], http.StatusSeeOther}} {
		req, _ = http.NewRequest("POST", n3.URL+"/signout", strings.NewReader(url.Values{"csrf": {tc.csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", n3.URL)
		if resp, body := do(req, sess); resp.StatusCode != tc.want {
			t.Fatalf("sign-out on node 3 with CSRF %q: %d %s", tc.csrf, resp.StatusCode, body)
		}
	}
	for i, n := range c.nodes {
		req, _ = http.NewRequest("GET", n.URL+"/repositories", nil)
		if resp, _ := do(req, sess); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("node %d after signing out on node 3: %d %s", i+1, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}
