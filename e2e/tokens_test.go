package e2e

// Repository-scoped tokens end to end: tokens and scope maps made with
// berth's own CLI, used by real clients against a real server process.
// This file holds the docker tests and the helpers the other tokens_*
// files share; tokens_podman_test.go repeats the core with podman and
// skopeo, tokens_wire_test.go checks what clients cannot show (tag lists,
// the catalog, cross-repository mounts, access tokens issued before a
// change) with raw requests.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-registry/berth/internal/testutil"
)

// startBerth starts a berth server for a tokens test. Tokens are berth's
// own, so these tests do not run against the reference registry.
//
// The tests fail logins on purpose (a disabled token, a deleted or expired
// password), all from 127.0.0.1, and berth rightly slows down an address
// with many failures; a high threshold keeps its windows out of tests that
// are about something else.
func startBerth(t *testing.T, opts ...testutil.Option) *testutil.Server {
	t.Helper()
	requireE2E(t)
	if r := os.Getenv("BERTH_E2E_REGISTRY"); r != "" && r != testutil.KindBerth {
		t.Skipf("repository-scoped tokens are berth's; BERTH_E2E_REGISTRY=%s has none", r)
	}
	opts = append([]testutil.Option{testutil.WithArgs("--login-failure-threshold", "1000")}, opts...)
	return testutil.StartServer(t, opts...)
}

// cliTimeout bounds one management command; no test asserts on it.
const cliTimeout = time.Minute

// berthCLI runs berth's management commands (the binary the harness built)
// against one server as its owner, with BERTH_SERVER, BERTH_USERNAME and
// BERTH_PASSWORD, and a home directory of its own so that no saved login
// of the machine can interfere.
type berthCLI struct {
	t   *testing.T
	srv *testutil.Server
	bin string
	env []string
}

func newBerthCLI(t *testing.T, srv *testutil.Server) *berthCLI {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BERTH_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"BERTH_SERVER="+srv.URL, "BERTH_USERNAME="+srv.Username, "BERTH_PASSWORD="+srv.Password)
	return &berthCLI{t: t, srv: srv, bin: testutil.BerthBinary(t), env: env}
}

// run runs `berth args...` and returns its stdout and stderr apart.
func (c *berthCLI) run(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(c.t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("berth %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String(), err
}

// must runs `berth args...`, fails the test unless it succeeds, and returns
// its stdout.
func (c *berthCLI) must(args ...string) string {
	c.t.Helper()
	out, _, err := c.run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// json runs `berth args... -o json` and decodes its stdout into v.
func (c *berthCLI) json(v any, args ...string) {
	c.t.Helper()
	out := c.must(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("berth %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The JSON the CLI prints, as docs/cli.md and the API's ARM shapes have it.
type cliPassword struct {
	Name   string     `json:"name"`
	Value  string     `json:"value"`
	Expiry *time.Time `json:"expiry"`
}

type cliCredentials struct {
	Username  string        `json:"username"`
	Passwords []cliPassword `json:"passwords"`
}

// cliToken is `berth token create -o json`, flattened as az flattens it.
type cliToken struct {
	Name        string         `json:"name"`
	ScopeMapID  string         `json:"scopeMapId"`
	Status      string         `json:"status"`
	Credentials cliCredentials `json:"credentials"`
}

// token is a token's name and the passwords generated with it.
type token struct {
	name     string
	password map[string]string // by slot: password1, password2
}

// createToken runs `berth token create -n name args... -o json` and
// returns the token with its passwords, checking that the answer is a new
// enabled token with both passwords, shown this once.
func (c *berthCLI) createToken(name string, args ...string) token {
	c.t.Helper()
	var tok cliToken
	c.json(&tok, append([]string{"token", "create", "-n", name}, args...)...)
	p := tok
	if tok.Name != name || p.Status != "enabled" || p.Credentials.Username != name {
		c.t.Fatalf("token create -n %s: name %q, status %q, username %q; want %[1]s, enabled, %[1]s", name, tok.Name, p.Status, p.Credentials.Username)
	}
	return token{name: name, password: passwordsOf(c.t, "token create -n "+name, p.Credentials, "password1", "password2")}
}

// passwordsOf checks that creds holds a value for exactly the slots named,
// all different, and returns them by slot.
func passwordsOf(t *testing.T, what string, creds cliCredentials, slots ...string) map[string]string {
	t.Helper()
	pw := map[string]string{}
	for _, p := range creds.Passwords {
		if p.Value == "" {
			t.Fatalf("%s: %s has no value", what, p.Name)
		}
		if slices.Contains(slices.Collect(maps.Values(pw)), p.Value) {
			t.Fatalf("%s: two slots have the same password", what)
		}
		pw[p.Name] = p.Value
	}
	got := slices.Sorted(maps.Keys(pw))
	if !slices.Equal(got, slots) {
		t.Fatalf("%s: passwords for %v, want %v", what, got, slots)
	}
	return pw
}

// dockerClient is the docker CLI of a private dockerd, used against one
// berth server. Its logins live in the dockerd's own DOCKER_CONFIG.
type dockerClient struct {
	t   *testing.T
	d   *testutil.Dockerd
	srv *testutil.Server
}

// login runs `docker login --username user --password-stdin host`.
func (c dockerClient) login(user, password string) (string, error) {
	return c.d.RunInput(password, "login", "--username", user, "--password-stdin", c.srv.Host)
}

func (c dockerClient) mustLogin(user, password string) {
	c.t.Helper()
	out, err := c.login(user, password)
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.Contains(out, "Login Succeeded") {
		c.t.Fatalf("docker login as %s succeeded without saying so:\n%s", user, out)
	}
}

// image makes a new image (one small random layer) in the docker store
// under srv's repo:tag, so that every push uploads content of its own.
func (c dockerClient) image(repoTag string) string {
	c.t.Helper()
	ref := c.srv.Host + "/" + repoTag
	c.d.MustRun("import", testutil.RootfsTarball(c.t, 32<<10), ref)
	return ref
}

// push makes a new image as repoTag and pushes it.
func (c dockerClient) push(repoTag string) (string, error) {
	c.t.Helper()
	return c.d.Run("push", c.image(repoTag))
}

// mustPush pushes a new image as repoTag, fails the test unless docker
// reports success, and checks that the registry holds what docker pushed.
func (c dockerClient) mustPush(repoTag string) {
	c.t.Helper()
	out, err := c.push(repoTag)
	if err != nil {
		c.t.Fatalf("push %s: %v", repoTag, err)
	}
	m := pushDigest.FindStringSubmatch(out)
	if m == nil {
		c.t.Fatalf("push %s: no digest in docker's output:\n%s", repoTag, out)
	}
	if got := ownerManifest(c.t, c.srv, repoTag); got != m[1] {
		c.t.Fatalf("push %s: registry has %q, docker pushed %s", repoTag, got, m[1])
	}
}

// mustFail checks that a client command failed and that its output says
// each of want. skopeo logs its error quoted, with \" for each quote; that
// is undone first.
func mustFail(t *testing.T, what, out string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want it refused:\n%s", what, out)
		return
	}
	unquoted := strings.ReplaceAll(out, `\"`, `"`)
	for _, w := range want {
		if !strings.Contains(unquoted, w) {
			t.Errorf("%s failed, but its output lacks %q:\n%s", what, w, out)
		}
	}
}

// ownerManifest returns the digest of repoTag's manifest as the owner sees
// it, or "" if there is none.
func ownerManifest(t *testing.T, srv *testutil.Server, repoTag string) string {
	t.Helper()
	desc, err := remote.Head(srv.Ref(t, repoTag), srv.RemoteOptions(t.Context())...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return ""
	}
	if err != nil {
		t.Fatalf("HEAD %s as the owner: %v", repoTag, err)
	}
	return desc.Digest.String()
}

// Messages the clients print, from the registry's answers (docs/wire.md).
const (
	msgDenied = "denied: requested access to the resource is denied"
)

// lacks is the end of berth's denial message for a token.
func lacks(tok, action, repo string) string {
	return fmt.Sprintf("token %q lacks %s on repository %q", tok, action, repo)
}

// deniedLine is the whole denial as docker, podman and skopeo print it
// from the registry's 403 DENIED body.
func deniedLine(tok, action, repo string) string {
	return msgDenied + ": " + lacks(tok, action, repo)
}

// TestTokensDocker runs the token flows of docs/tokens.md with a real
// docker CLI and dockerd: tokens made with the berth CLI, `docker login`
// with a token's name and password, pushes and pulls allowed and denied by
// its scope map, and every change (disable, enable, password deletion and
// expiry, scope-map edits) taking effect on docker's very next command.
// The subtests share one dockerd and one server, and run in order; each
// logs docker in with a token of its own.
func TestTokensDocker(t *testing.T) {
	srv := startBerth(t)
	d := testutil.StartDockerd(t)
	cli := newBerthCLI(t, srv)

	cli.must("scope-map", "create", "-n", "team-push", "--repository", "team/*", "content/read", "content/write")

	t.Run("PushAllowedAndDenied", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		pusher := cli.createToken("ci-push", "--scope-map", "team-push")
		puller := cli.createToken("ci-pull", "--repository", "team/app", "content/read")

		// Each case logs in as its token and pushes a new image.
		cases := []struct {
			name    string
			tok     token
			repoTag string
			denied  string // "" when the push must succeed; else the missing action
		}{
			{"push inside the scope map", pusher, "team/app:v1", ""},
			{"push to a new repository under the wildcard", pusher, "team/new/deep:v1", ""},
			{"push outside the scope map", pusher, "other/app:v1", "content/write"},
			{"push next to the pattern", pusher, "teamx/app:v1", "content/write"},
			{"pull-only token pushes", puller, "team/app:v2", "content/write"},
		}
		for _, tc := range cases {
			dc.mustLogin(tc.tok.name, tc.tok.password["password1"])
			if tc.denied == "" {
				dc.mustPush(tc.repoTag)
				continue
			}
			out, err := dc.push(tc.repoTag)
			repo, _, _ := strings.Cut(tc.repoTag, ":")
			mustFail(t, tc.name, out, err, deniedLine(tc.tok.name, tc.denied, repo))
			if got := ownerManifest(t, srv, tc.repoTag); got != "" {
				t.Errorf("%s: refused, yet the registry holds %s under %s", tc.name, got, tc.repoTag)
			}
		}

		// The pull-only token pulls what the other pushed.
		dc.mustLogin(puller.name, puller.password["password2"])
		ref := srv.Host + "/team/app:v1"
		want := ownerManifest(t, srv, "team/app:v1")
		d.MustRun("rmi", ref)
		out := d.MustRun("pull", ref)
		if !strings.Contains(out, "Digest: "+want) {
			t.Errorf("docker pull %s as %s: want digest %s:\n%s", ref, puller.name, want, out)
		}
		// ... but nothing it may not read.
		out, err := d.Run("pull", srv.Host+"/other/app:v1")
		mustFail(t, "pull outside the scope map", out, err, deniedLine(puller.name, "content/read", "other/app"))

		// Each token, and each of its passwords, shows when it was last
		// used: ci-push only ever used password1.
		var shown struct {
			LastUsed    *time.Time `json:"lastUsed"`
			Credentials struct {
				Passwords []struct {
					Name     string     `json:"name"`
					Value    string     `json:"value"`
					LastUsed *time.Time `json:"lastUsed"`
				} `json:"passwords"`
			} `json:"credentials"`
		}
		cli.json(&shown, "token", "show", "-n", pusher.name)
		used := map[string]bool{}
		for _, p := range shown.Credentials.Passwords {
			used[p.Name] = p.LastUsed != nil
			if p.Value != "" {
				t.Errorf("token show reveals the value of %s", p.Name)
			}
		}
		if shown.LastUsed == nil || !used["password1"] || used["password2"] {
			t.Errorf("token show after pushes with password1: token last used %v, password1 used %v, password2 used %v; want set, true, false",
				shown.LastUsed, used["password1"], used["password2"])
		}
	})

	t.Run("DisableAndEnable", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		tok := cli.createToken("ci-toggle", "--scope-map", "team-push")
		dc.mustLogin(tok.name, tok.password["password1"])
		dc.mustPush("team/toggle:v1")

		cli.must("token", "update", "-n", tok.name, "--status", "disabled")
		out, err := dc.push("team/toggle:v2")
		mustFail(t, "push with a disabled token", out, err, "unauthorized: ", "token disabled")
		out, err = dc.login(tok.name, tok.password["password1"])
		mustFail(t, "login with a disabled token", out, err, "unauthorized: token disabled")
		out, err = dc.login(tok.name, tok.password["password2"])
		mustFail(t, "login with the other password of a disabled token", out, err, "unauthorized: token disabled")

		cli.must("token", "update", "-n", tok.name, "--status", "enabled")
		// docker kept the login it had (a refresh token from the token
		// endpoint, not the password): enabled again, it works at once,
		// as docs/tokens.md promises.
		if out, err := dc.push("team/toggle:v2"); err != nil {
			t.Errorf("push with docker's existing login after the token was enabled again: %v\n%s", err, out)
			// Say whether a new login would have helped.
			dc.mustLogin(tok.name, tok.password["password1"])
		}
		dc.mustPush("team/toggle:v3")
	})

	t.Run("RotatePasswords", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		tok := cli.createToken("ci-rotate", "--scope-map", "team-push")
		// A client moved to password2 ...
		dc.mustLogin(tok.name, tok.password["password2"])
		dc.mustPush("team/rotate:v1")
		// ... keeps working when password1 is deleted,
		out := cli.must("token", "credential", "delete", "-n", tok.name, "--password1")
		if !strings.Contains(out, "password1") {
			t.Errorf("token credential delete --password1 printed:\n%s", out)
		}
		dc.mustPush("team/rotate:v2")
		// password1 no longer logs in,
		out, err := dc.login(tok.name, tok.password["password1"])
		mustFail(t, "login with a deleted password", out, err, "unauthorized: invalid username or password")
		// and password2 does.
		dc.mustLogin(tok.name, tok.password["password2"])
		dc.mustPush("team/rotate:v3")

		// A regenerated password1 works, and the old value still does not.
		var creds cliCredentials
		cli.json(&creds, "token", "credential", "generate", "-n", tok.name, "--password1")
		if creds.Username != tok.name {
			t.Errorf("credential generate: username %q, want %q", creds.Username, tok.name)
		}
		pw := passwordsOf(t, "credential generate --password1", creds, "password1")
		out, err = dc.login(tok.name, tok.password["password1"])
		mustFail(t, "login with the replaced password1", out, err, "unauthorized: invalid username or password")
		dc.mustLogin(tok.name, pw["password1"])
		dc.mustPush("team/rotate:v4")

		// Regenerating the password docker logged in with ends that
		// login at once.
		cli.json(&creds, "token", "credential", "generate", "-n", tok.name, "--password1")
		out, err = dc.push("team/rotate:v5")
		mustFail(t, "push through a password regenerated since the login", out, err, "unauthorized: ", "password1 regenerated")
	})

	t.Run("ScopeMapChangesApplyAtOnce", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		cli.must("scope-map", "create", "-n", "change-me", "--repository", "team/change", "content/read", "content/write")
		tok := cli.createToken("ci-change", "--scope-map", "change-me")
		dc.mustLogin(tok.name, tok.password["password1"])
		dc.mustPush("team/change:v1")

		cli.must("scope-map", "update", "-n", "change-me", "--remove-repository", "team/change", "content/write")
		out, err := dc.push("team/change:v2")
		mustFail(t, "push after content/write was removed", out, err, deniedLine(tok.name, "content/write", "team/change"))
		// Reading is still allowed.
		d.MustRun("pull", srv.Host+"/team/change:v1")

		cli.must("scope-map", "update", "-n", "change-me", "--add-repository", "team/change", "content/write")
		dc.mustPush("team/change:v2")

		// Widening works on a repository the map never named.
		out, err = dc.push("team/elsewhere:v1")
		mustFail(t, "push to a repository not yet in the scope map", out, err, deniedLine(tok.name, "content/write", "team/elsewhere"))
		cli.must("scope-map", "update", "-n", "change-me", "--add-repository", "team/elsewhere", "content/read", "content/write")
		dc.mustPush("team/elsewhere:v1")
	})

	t.Run("PrintedLoginCommand", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		out := cli.must("token", "create", "-n", "ci-printed", "--repository", "team/printed", "content/read", "content/write")
		line := loginLine.FindString(out)
		if line == "" {
			t.Fatalf("token create prints no `docker login -u NAME -p PASSWORD HOST` line:\n%s", out)
		}
		args := strings.Fields(line)
		if len(args) != 7 || args[2] != "-u" || args[3] != "ci-printed" || args[4] != "-p" || args[6] != srv.Host {
			t.Fatalf("printed login command %q: want docker login -u ci-printed -p PASSWORD %s", line, srv.Host)
		}
		if !strings.Contains(out, "password1") || !strings.Contains(out, "password2") {
			t.Errorf("token create shows no password slots:\n%s", out)
		}
		// Exactly as printed, word for word.
		out, err := d.Run(args[1:]...)
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("the printed command does not log in: %v\n%s", err, out)
		}
		dc.mustPush("team/printed:v1")
	})

	// Last, because it waits for the password to expire.
	t.Run("ExpiredPassword", func(t *testing.T) {
		dc := dockerClient{t, d, srv}
		tok := cli.createToken("ci-expire", "--scope-map", "team-push")
		// A few seconds: long enough to log in, short enough to wait for.
		expiry := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
		var creds cliCredentials
		cli.json(&creds, "token", "credential", "generate", "-n", tok.name, "--password2", "--expiration", expiry.Format(time.RFC3339))
		pw := passwordsOf(t, "credential generate --password2 --expiration", creds, "password2")["password2"]
		if e := creds.Passwords[0].Expiry; e == nil || !e.Equal(expiry) {
			t.Errorf("credential generate: expiry %v, want %v", e, expiry)
		}
		// Before it expires, the password logs docker in and gets an access
		// token that would be valid for minutes.
		out, err := dc.login(tok.name, pw)
		x := requestToken(t, srv, tok.name, pw, "repository:team/expire:pull,push")
		if !time.Now().Before(expiry) {
			t.Fatalf("this machine took until after the password's expiry to log in, so the test proves nothing: %v\n%s", err, out)
		}
		if err != nil {
			t.Fatalf("login before the password expired: %v", err)
		}
		var tr struct{ Token string }
		if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &tr) != nil || tr.Token == "" {
			t.Fatalf("access token before the password expired: want 200\n%s", x)
		}

		waitUntil(t, expiry)
		x = do(t, http.DefaultClient, http.MethodPost, srv.URL+"/v2/team/expire/blobs/uploads/", nil, "Authorization", "Bearer "+tr.Token)
		if x.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(x.result), "password2 expired") {
			t.Errorf("access token issued through a password that has expired since: want 401 saying password2 expired\n%s", x)
		}
		out, err = dc.push("team/expire:v1")
		mustFail(t, "push with an expired password", out, err, "unauthorized: ", "password2 expired")
		out, err = dc.login(tok.name, pw)
		mustFail(t, "login with an expired password", out, err, "unauthorized: password2 expired")
		// The other slot is unaffected.
		dc.mustLogin(tok.name, tok.password["password1"])
		dc.mustPush("team/expire:v1")
	})
}

// loginLine is the docker login command that `token create` and
// `credential generate` print in table output.
var loginLine = regexp.MustCompile(`(?m)docker login -u \S+ -p \S+ \S+[ \t]*$`)

// waitUntil returns once the clock has passed when: a bounded wait for an
// expiry, with no assertion on how long it took.
func waitUntil(t *testing.T, when time.Time) {
	t.Helper()
	deadline := time.Now().Add(time.Until(when) + 30*time.Second)
	for !time.Now().After(when) {
		if time.Now().After(deadline) {
			t.Fatalf("clock did not pass %v", when)
		}
		time.Sleep(min(200*time.Millisecond, time.Until(when)+time.Millisecond))
	}
}

// basicAuth is the value of an Authorization header for user:password.
func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// challengeParams matches the key="value" pairs of a WWW-Authenticate header.
var challengeParams = regexp.MustCompile(`(\w+)="([^"]*)"`)

// tokenEndpoint reads the realm and service of srv's Bearer challenge, as
// clients do, and checks that the realm is srv's own token endpoint.
func tokenEndpoint(t *testing.T, srv *testutil.Server) (realm, service string) {
	t.Helper()
	x := do(t, http.DefaultClient, http.MethodGet, srv.URL+"/v2/", nil)
	h := x.resp.Header.Get("WWW-Authenticate")
	if x.resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(h, "Bearer ") {
		t.Fatalf("want 401 with a Bearer challenge\n%s", x)
	}
	p := map[string]string{}
	for _, m := range challengeParams.FindAllStringSubmatch(h, -1) {
		p[m[1]] = m[2]
	}
	if p["realm"] != srv.URL+"/oauth2/token" || p["service"] == "" {
		t.Fatalf("challenge %q: want realm %s/oauth2/token and a service", h, srv.URL)
	}
	return p["realm"], p["service"]
}

// requestToken asks srv's token endpoint for scopes with Basic credentials,
// as docker does, and returns the exchange.
func requestToken(t *testing.T, srv *testutil.Server, user, password string, scopes ...string) exchange {
	t.Helper()
	realm, service := tokenEndpoint(t, srv)
	q := url.Values{"service": {service}, "scope": scopes}
	return do(t, http.DefaultClient, http.MethodGet, realm+"?"+q.Encode(), nil, "Authorization", basicAuth(user, password))
}

// accessToken returns an access token for scopes, failing the test unless
// the token endpoint issues one.
func accessToken(t *testing.T, srv *testutil.Server, user, password string, scopes ...string) string {
	t.Helper()
	x := requestToken(t, srv, user, password, scopes...)
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &tr) != nil || tr.Token == "" || tr.AccessToken != tr.Token {
		t.Fatalf("want 200 with an access token in token and access_token\n%s", x)
	}
	return tr.Token
}
