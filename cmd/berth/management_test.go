package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/server"
)

const ownerPassword = "owner-password-for-cli-tests"

// testServer is berth's whole HTTP handler, as `berth serve` builds it (the
// management API, the real /oauth2/token and the rest), on an httptest
// server, so that the CLI is tested against what it talks to in use.
type testServer struct {
	url   string
	ids   *identity.Service
	store *meta.Store
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	return startServerOn(t, t.TempDir())
}

// startServerOn serves the data directory dir.
func startServerOn(t *testing.T, dir string) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Data = dir
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &testServer{url: hs.URL, ids: srv.Identity(), store: srv.Metadata()}
}

func (s *testServer) putManifest(t *testing.T, repo, tag string) digest.Digest {
	t.Helper()
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","tag":"` + repo + tag + `"}`)
	d := digest.FromBytes(content)
	if err := s.store.PutManifest(context.Background(), meta.PutManifestRequest{Repository: repo, Tags: []string{tag},
		Manifest: meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		t.Fatal(err)
	}
	return d
}

// cli runs management commands with an environment of its own.
type cli struct {
	t        *testing.T
	vars     map[string]string
	terminal bool
}

func newCLI(t *testing.T, vars map[string]string) *cli {
	v := map[string]string{"XDG_CONFIG_HOME": t.TempDir()}
	for k, x := range vars {
		v[k] = x
	}
	return &cli{t: t, vars: v}
}

func (c *cli) env() *cliEnv {
	return &cliEnv{
		getenv:     func(k string) string { return c.vars[k] },
		isTerminal: func(io.Reader) bool { return c.terminal },
		http:       &http.Client{Timeout: 10 * time.Second},
		now:        time.Now,
	}
}

// run runs one command line with stdin, returning stdout, stderr and the error.
func (c *cli) run(stdin string, args ...string) (string, string, error) {
	root := &cobra.Command{Use: "berth", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(managementCmds(c.env())...)
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// ok runs a command that must succeed and returns its output.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run("", args...)
	if err != nil {
		c.t.Fatalf("berth %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs a command that must fail with an error containing want.
func (c *cli) fails(want string, args ...string) {
	c.t.Helper()
	_, _, err := c.run("", args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		c.t.Fatalf("berth %s: error %v, want one containing %q", strings.Join(args, " "), err, want)
	}
}

// jsonOut decodes the CLI's JSON output into an API type, putting back the
// "properties" object that the CLI flattens away (as az does).
func jsonOut[T any](t *testing.T, s string) T {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	b, _ := json.Marshal(nest(doc))
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("output does not decode: %v\n%s", err, s)
	}
	return v
}

// nest undoes the CLI's flattening of ARM-shaped resources (those with an
// id, a name and a type).
func nest(v any) any {
	switch v := v.(type) {
	case []any:
		for i := range v {
			v[i] = nest(v[i])
		}
	case map[string]any:
		_, hasID := v["id"]
		_, hasType := v["type"]
		if hasID && hasType {
			props := map[string]any{}
			for k, pv := range v {
				if k != "id" && k != "name" && k != "type" {
					props[k] = pv
					delete(v, k)
				}
			}
			v["properties"] = props
		}
	}
	return v
}

var dockerLoginRE = regexp.MustCompile(`docker login -u (\S+) -p (\S+) (\S+)`)

func TestCLIScopeMapsAndTokens(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	host := strings.TrimPrefix(srv.url, "http://")

	out := c.ok("scope-map", "create", "-n", "ci-scope", "--repository", "samples/*", "content/read", "content/write",
		"--repository", "other", "metadata/read", "--description", "CI pushes")
	for _, want := range []string{"ci-scope", "UserDefined", "CI pushes", "samples/*", "content/read, content/write", "other", "metadata/read"} {
		if !strings.Contains(out, want) {
			t.Errorf("scope-map create output lacks %q:\n%s", want, out)
		}
	}
	c.ok("scope-map", "update", "-n", "ci-scope", "--add-repository", "team/app", "content/delete", "--remove-repository", "samples/*", "content/write")
	m := jsonOut[api.ScopeMap](t, c.ok("scope-map", "show", "-n", "ci-scope", "-o", "json"))
	if got := strings.Join(m.Properties.Actions, " "); got != "repositories/other/metadata/read repositories/samples/*/content/read repositories/team/app/content/delete" {
		t.Errorf("actions after update: %s", got)
	}
	if out := c.ok("scope-map", "list"); !strings.Contains(out, "_repositories_admin") || !regexp.MustCompile(`ci-scope\s+UserDefined\s+0`).MatchString(out) {
		t.Errorf("scope-map list:\n%s", out)
	}
	c.fails("a wildcard may only appear", "scope-map", "create", "-n", "bad-scope", "--repository", "a/*/b", "content/read")
	c.fails("nothing to change", "scope-map", "update", "-n", "ci-scope")
	c.fails(`scope map "nope-nope" not found`, "scope-map", "show", "-n", "nope-nope")

	// token create prints the passwords once, with the docker login command.
	out = c.ok("token", "create", "-n", "ci-token", "--scope-map", "ci-scope")
	match := dockerLoginRE.FindStringSubmatch(out)
	if match == nil || match[1] != "ci-token" || match[3] != host || !strings.Contains(out, "shown only now") {
		t.Fatalf("token create output:\n%s", out)
	}
	if _, err := srv.ids.Authenticate("ci-token", match[2]); err != nil {
		t.Errorf("the printed password does not log in: %v", err)
	}
	// JSON output carries credentials.username and passwords[].value.
	tok := jsonOut[api.Token](t, c.ok("token", "create", "-n", "inline-token", "--repository", "a/*", "content/read", "--expiration-in-days", "30", "-o", "json"))
	cr := tok.Properties.Credentials
	if cr.Username != "inline-token" || len(cr.Passwords) != 2 || cr.Passwords[0].Value == "" || cr.Passwords[0].Expiry == nil || tok.Properties.ScopeMapID != "/scopeMaps/inline-token-scope-map" {
		t.Errorf("token create -o json: %+v", tok)
	}
	out = c.ok("token", "create", "-n", "quiet-token", "--scope-map", "_repositories_pull", "--no-passwords", "--status", "disabled")
	if strings.Contains(out, "docker login") || !strings.Contains(out, "disabled") {
		t.Errorf("token create --no-passwords:\n%s", out)
	}
	c.fails("if any flags in the group [scope-map repository] are set none of the others can be", "token", "create", "-n", "both-token", "--scope-map", "x", "--repository", "a", "content/read")
	c.fails("at least one of the flags in the group [scope-map repository] is required", "token", "create", "-n", "none-token")

	// Show and list never print password values; expiring passwords warn.
	out = c.ok("token", "show", "-n", "ci-token")
	if strings.Contains(out, match[2]) || !strings.Contains(out, "password1") || !strings.Contains(out, "ci-scope") {
		t.Errorf("token show:\n%s", out)
	}
	out, errOut, err := c.run("", "token", "credential", "generate", "-n", "ci-token", "--password2", "--expiration-in-days", "3")
	if err != nil || !strings.Contains(out, "password2") || strings.Contains(out, "password1") || !dockerLoginRE.MatchString(out) {
		t.Fatalf("credential generate: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = c.run("", "token", "list")
	if err != nil || !strings.Contains(errOut, `warning: password2 of token "ci-token" expires in`) ||
		!strings.Contains(out, "EXPIRES SOON") || !regexp.MustCompile(`ci-token\s+ci-scope\s+enabled`).MatchString(out) {
		t.Errorf("token list: %v\n%s\n%s", err, out, errOut)
	}
	creds := jsonOut[api.Credentials](t, c.ok("token", "credential", "generate", "-n", "ci-token", "-o", "json"))
	if creds.Username != "ci-token" || len(creds.Passwords) != 2 || creds.Passwords[1].Value == "" {
		t.Errorf("credential generate -o json: %+v", creds)
	}
	c.ok("token", "credential", "delete", "-n", "ci-token", "--password1")
	tok = jsonOut[api.Token](t, c.ok("token", "show", "-n", "ci-token", "-o", "json"))
	if pws := tok.Properties.Credentials.Passwords; len(pws) != 1 || pws[0].Name != "password2" || pws[0].Value != "" {
		t.Errorf("after credential delete: %+v", pws)
	}
	c.fails("at least one of the flags in the group [password1 password2] is required", "token", "credential", "delete", "-n", "ci-token")
	out = c.ok("token", "update", "-n", "ci-token", "--status", "disabled")
	if !regexp.MustCompile(`Status:\s+disabled`).MatchString(out) {
		t.Errorf("token update:\n%s", out)
	}

	// Deleting asks; without a terminal it refuses and says to pass --yes.
	c.fails("pass --yes to confirm", "token", "delete", "-n", "quiet-token")
	c.terminal = true
	if _, _, err := c.run("n\n", "token", "delete", "-n", "quiet-token"); !errors.Is(err, errCancelled) {
		t.Errorf("answering no: %v", err)
	}
	if out, errOut, err := c.run("y\n", "token", "delete", "-n", "quiet-token"); err != nil || !strings.Contains(errOut, `Delete token "quiet-token"? [y/N]`) || !strings.Contains(out, "Deleted") {
		t.Errorf("answering yes: %v\n%s%s", err, out, errOut)
	}
	c.terminal = false
	c.fails(`token "quiet-token" not found`, "token", "delete", "-n", "quiet-token", "--yes")

	c.fails("pass --force", "scope-map", "delete", "-n", "ci-scope", "--yes")
	out = c.ok("scope-map", "delete", "-n", "ci-scope", "--yes", "--force")
	if !strings.Contains(out, "no longer have any permissions: ci-token") {
		t.Errorf("scope-map delete --force:\n%s", out)
	}
}

func TestCLIAdminUsersAudit(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})

	out := c.ok("admin", "enable")
	match := dockerLoginRE.FindStringSubmatch(out)
	if match == nil || match[1] != "berth" || !strings.Contains(out, "password2") {
		t.Fatalf("admin enable:\n%s", out)
	}
	if _, err := srv.ids.Authenticate("berth", match[2]); err != nil {
		t.Errorf("the admin password does not log in: %v", err)
	}
	out = c.ok("admin", "credential", "show")
	if strings.Contains(out, match[2]) || !regexp.MustCompile(`Status:\s+enabled`).MatchString(out) || !strings.Contains(out, "password2") {
		t.Errorf("admin credential show:\n%s", out)
	}
	creds := jsonOut[api.Credentials](t, c.ok("admin", "credential", "renew", "--password-name", "password2", "-o", "json"))
	if len(creds.Passwords) != 1 || creds.Passwords[0].Name != "password2" || creds.Passwords[0].Value == "" {
		t.Errorf("renew: %+v", creds)
	}
	c.fails("use password or password2", "admin", "credential", "renew", "--password-name", "password1")
	if out := c.ok("admin", "disable"); !strings.Contains(out, "disabled") || strings.Contains(out, "docker login") {
		t.Errorf("admin disable:\n%s", out)
	}

	out, _, err := c.run("alice-password-1\n", "user", "create", "-n", "alice", "--role", "reader", "--password-stdin")
	if err != nil || !regexp.MustCompile(`Role:\s+reader`).MatchString(out) {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	if _, err := srv.ids.Authenticate("alice", "alice-password-1"); err != nil {
		t.Errorf("alice cannot log in: %v", err)
	}
	_, errOut, err := c.run("", "user", "create", "-n", "bob-user", "--role", "pull", "-p", "bob-password-123")
	if err != nil || !strings.Contains(errOut, "prefer --password-stdin") {
		t.Errorf("user create -p: %v %s", err, errOut)
	}
	c.fails("give the user's password", "user", "create", "-n", "carol", "--role", "pull")
	c.ok("user", "update", "-n", "alice", "--role", "contributor")
	users := jsonOut[[]api.User](t, c.ok("user", "list", "-o", "json"))
	if len(users) != 3 || users[0].Name != "alice" || users[0].Properties.Role != "contributor" {
		t.Errorf("user list: %+v", users)
	}

	// A contributor cannot manage users; a pull user cannot read management.
	alice := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "alice", "BERTH_PASSWORD": "alice-password-1"})
	alice.fails("needs a role with the right to manage users", "user", "delete", "-n", "bob-user", "--yes")
	alice.ok("token", "create", "-n", "alice-token", "--scope-map", "_repositories_pull")
	bob := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "bob-user", "BERTH_PASSWORD": "bob-password-123"})
	bob.fails(`user "bob-user" is not allowed`, "token", "list")
	wrong := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "bob-user", "BERTH_PASSWORD": "wrong-password"})
	wrong.fails("BERTH_USERNAME and BERTH_PASSWORD", "token", "list")

	c.ok("user", "delete", "-n", "bob-user", "--yes")
	events := jsonOut[[]audit.Event](t, c.ok("audit", "list", "--kind", "permission", "--since", "1h", "-o", "json"))
	if len(events) == 0 || events[0].Target != "user bob-user" {
		t.Errorf("audit list: %+v", events)
	}
	out = c.ok("audit", "list", "--identity", "owner", "--limit", "3")
	if !strings.Contains(out, "TIME") || !strings.Contains(out, "user bob-user") || strings.Count(out, "\n") != 4 {
		t.Errorf("audit list table:\n%s", out)
	}
	c.fails("invalid --since", "audit", "list", "--since", "yesterday")
}

func TestCLIRepositories(t *testing.T) {
	srv := startServer(t)
	v1 := srv.putManifest(t, "team/app", "v1")
	srv.putManifest(t, "team/app", "v2")
	srv.putManifest(t, "private/db", "v1")
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})

	if repos := jsonOut[[]string](t, c.ok("repository", "list", "-o", "json")); strings.Join(repos, " ") != "private/db team/app" {
		t.Errorf("repository list: %v", repos)
	}
	out := c.ok("repository", "show", "-n", "team/app")
	if !regexp.MustCompile(`Tags:\s+2`).MatchString(out) || !regexp.MustCompile(`Write enabled:\s+true`).MatchString(out) {
		t.Errorf("repository show:\n%s", out)
	}
	out = c.ok("repository", "show-tags", "-n", "team/app")
	if !regexp.MustCompile(`v1\s+` + regexp.QuoteMeta(v1.String())).MatchString(out) {
		t.Errorf("show-tags:\n%s", out)
	}
	out = c.ok("repository", "update", "--image", "team/app:v1", "--write-enabled", "false", "--delete-enabled", "false")
	if !regexp.MustCompile(`Write enabled:\s+false`).MatchString(out) || !strings.Contains(out, v1.String()) {
		t.Errorf("update --image:\n%s", out)
	}
	c.fails("deleteEnabled=false", "repository", "delete", "--image", "team/app@"+v1.String(), "--yes")
	c.fails("use true or false", "repository", "update", "-n", "team/app", "--write-enabled", "maybe")
	c.fails("nothing to change", "repository", "update", "-n", "team/app")
	c.ok("repository", "update", "--image", "team/app@"+v1.String(), "--write-enabled", "true", "--delete-enabled", "true")
	c.ok("repository", "untag", "--image", "team/app:v2")
	tags := jsonOut[[]api.Tag](t, c.ok("repository", "show-tags", "-n", "team/app", "-o", "json"))
	if len(tags) != 1 || tags[0].Name != "v1" {
		t.Errorf("after untag: %+v", tags)
	}
	c.ok("repository", "delete", "--image", "team/app:v1", "--yes")
	c.ok("repository", "delete", "-n", "private/db", "--yes")
	c.fails("repository \"private/db\" not found", "repository", "show", "-n", "private/db")
	c.fails("invalid repository name", "repository", "show", "-n", "Team/App")

	// A token sees and may change only what its scope map allows.
	tok := jsonOut[api.Token](t, c.ok("token", "create", "-n", "team-reader", "--repository", "team/*", "metadata/read", "-o", "json"))
	tc := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "team-reader", "BERTH_PASSWORD": tok.Properties.Credentials.Passwords[0].Value})
	if repos := jsonOut[[]string](t, tc.ok("repository", "list", "-o", "json")); strings.Join(repos, " ") != "team/app" {
		t.Errorf("token's repository list: %v", repos)
	}
	tc.fails(`token "team-reader" lacks metadata/write on repository "team/app"`, "repository", "update", "-n", "team/app", "--list-enabled", "false")
}

// TestCLILogin logs in through the token endpoint, uses the saved refresh
// token for later commands (with the scopes repository commands need), and
// logs out.
func TestCLILogin(t *testing.T) {
	srv := startServer(t)
	srv.putManifest(t, "team/app", "v1")
	c := newCLI(t, nil)

	_, _, err := c.run("wrong\n", "login", srv.url, "-u", "owner", "--password-stdin")
	if err == nil || !strings.Contains(err.Error(), "invalid username or password") {
		t.Fatalf("login with a wrong password: %v", err)
	}
	out, _, err := c.run(ownerPassword+"\n", "login", srv.url, "-u", "owner", "--password-stdin")
	if err != nil || !strings.Contains(out, "Login succeeded") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	path := filepath.Join(c.vars["XDG_CONFIG_HOME"], "berth", "config.json")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), ownerPassword) {
		t.Errorf("the password is saved:\n%s", b)
	}
	cfg := jsonOut[loginFile](t, string(b))
	if cfg.Current != srv.url || len(cfg.Logins) != 1 || cfg.Logins[0].Username != "owner" || cfg.Logins[0].RefreshToken == "" {
		t.Errorf("saved %+v", cfg)
	}

	// No --server and no BERTH_SERVER: the saved server is used.
	c.ok("token", "create", "-n", "via-login", "--scope-map", "_repositories_pull")
	if repos := jsonOut[[]string](t, c.ok("repository", "list", "-o", "json")); len(repos) != 1 {
		t.Errorf("repository list with a saved login: %v", repos)
	}
	c.ok("repository", "show", "-n", "team/app")
	c.ok("repository", "update", "-n", "team/app", "--list-enabled", "false")

	// Revoking the login (here: changing the password) is reported with what to do.
	newPW := "another-owner-password"
	c2 := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	if _, _, err := c2.run(newPW+"\n", "user", "update", "-n", "owner", "--password-stdin", "--current-password", ownerPassword); err != nil {
		t.Fatal(err)
	}
	c.fails("is no longer valid", "token", "list")
	c.fails("berth login "+srv.url, "token", "list")

	out = c.ok("logout")
	if !strings.Contains(out, "Removed the saved login for "+srv.url) {
		t.Errorf("logout: %s", out)
	}
	c.vars["BERTH_SERVER"] = srv.url
	c.fails("run `berth login "+srv.url+"` or set BERTH_USERNAME and BERTH_PASSWORD", "token", "list")
	if out := c.ok("logout"); !strings.Contains(out, "Not logged in") {
		t.Errorf("second logout: %s", out)
	}
}

func TestCLIUnreachable(t *testing.T) {
	c := newCLI(t, map[string]string{"BERTH_SERVER": "http://127.0.0.1:1", "BERTH_USERNAME": "x", "BERTH_PASSWORD": "y"})
	c.fails("cannot reach the berth server at http://127.0.0.1:1", "token", "list")
	c.fails("invalid --output", "token", "list", "-o", "yaml")
	c = newCLI(t, map[string]string{"BERTH_USERNAME": "x"})
	c.fails("set both BERTH_USERNAME and BERTH_PASSWORD", "token", "list")
}

// TestCLISigningKeys: rotate adds a key that signs later, list shows which
// one signs, retire refuses the signing key and removes an old one.
func TestCLISigningKeys(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	before := jsonOut[api.List[identity.SigningKey]](t, c.ok("signing-key", "list", "-o", "json"))
	if len(before.Value) != 1 || !before.Value[0].Signing || before.Value[0].ID == "" {
		t.Fatalf("signing keys at start: %+v", before)
	}
	out := c.ok("signing-key", "rotate")
	if !strings.Contains(out, "signs new tokens from") {
		t.Errorf("signing-key rotate:\n%s", out)
	}
	out = c.ok("signing-key", "list")
	if !regexp.MustCompile(before.Value[0].ID + `\s.*\syes`).MatchString(out) {
		t.Errorf("signing-key list right after rotate: the old key should still sign:\n%s", out)
	}
	after := jsonOut[api.List[identity.SigningKey]](t, c.ok("signing-key", "list", "-o", "json"))
	if len(after.Value) != 2 {
		t.Fatalf("signing keys after rotate: %+v", after)
	}
	c.fails("signs now", "signing-key", "retire", before.Value[0].ID)
	c.fails("not found", "signing-key", "retire", "no-such-kid")
}

// TestCLIUntagWithDelete: untagging takes metadata/write or content/delete,
// on every face; a login whose token has content/delete alone may untag with
// the CLI too, which asks the token endpoint for both.
func TestCLIUntagWithDelete(t *testing.T) {
	srv := startServer(t)
	srv.putManifest(t, "team/app", "v1")
	srv.putManifest(t, "team/app", "v2")
	owner := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	tok := jsonOut[api.Token](t, owner.ok("token", "create", "-n", "team-deleter", "--repository", "team/*", "content/delete", "-o", "json"))
	c := newCLI(t, nil)
	if out, _, err := c.run(tok.Properties.Credentials.Passwords[0].Value+"\n", "login", srv.url, "-u", "team-deleter", "--password-stdin"); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	c.ok("repository", "untag", "--image", "team/app:v2")
	tags := jsonOut[[]api.Tag](t, owner.ok("repository", "show-tags", "-n", "team/app", "-o", "json"))
	if len(tags) != 1 || tags[0].Name != "v1" {
		t.Errorf("after untag: %+v", tags)
	}
}
