package e2e

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// as returns a CLI that runs as another user.
func (c *berthCLI) as(user, password string) *berthCLI {
	env := make([]string, 0, len(c.env))
	for _, kv := range c.env {
		if !strings.HasPrefix(kv, "BERTH_USERNAME=") && !strings.HasPrefix(kv, "BERTH_PASSWORD=") {
			env = append(env, kv)
		}
	}
	env = append(env, "BERTH_USERNAME="+user, "BERTH_PASSWORD="+password)
	return &berthCLI{t: c.t, srv: c.srv, bin: c.bin, env: env}
}

// TestDelegatedAdministration runs docs/roles.md with the berth binary and
// a registry client (go-containerregistry): a token admin of team-a/* is
// refused a rule on team-b/x and the built-in _repositories_admin with the
// exact message, mints a token for team-a that pushes there and nowhere
// else; a contributor of team-a/* pushes to team-a only, and the catalog
// lists them team-a's repositories only; taking the assignment away
// applies on the next request.
func TestDelegatedAdministration(t *testing.T) {
	srv := startBerth(t)
	owner := newBerthCLI(t, srv)
	ctx := t.Context()
	const alicePW, carolPW = "password-of-alice-e2e", "password-of-carol-e2e"
	owner.must("user", "create", "-n", "alice", "--role", "none", "-p", alicePW)
	owner.must("user", "create", "-n", "carol", "--role", "none", "-p", carolPW)
	owner.must("role", "assignment", "create", "--assignee", "alice", "--role", "token-admin", "--repository", "team-a/*")
	owner.must("role", "assignment", "create", "--assignee", "carol", "--role", "contributor", "--repository", "team-a/*")
	push := func(s *testutil.Server, ref string, img v1.Image) error {
		return remote.Write(s.Ref(t, ref), img, s.RemoteOptions(ctx)...)
	}
	img := testutil.RandomImage(t, 1, 4<<10)
	if err := push(srv, "team-b/app:v1", img); err != nil {
		t.Fatal(err)
	}

	alice := owner.as("alice", alicePW)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scope-map", "create", "-n", "b-scope", "--repository", "team-b/x", "content/read"},
			`user "alice" may not manage "team-b/x" (scope map "b-scope"): they manage scope maps and tokens only on team-a/*`},
		{[]string{"token", "create", "-n", "admin-token", "--scope-map", "_repositories_admin"},
			`user "alice" may not manage "*" (scope map "_repositories_admin"): they manage scope maps and tokens only on team-a/*`},
		{[]string{"token", "create", "-n", "wide-token", "--repository", "*", "content/read"},
			`user "alice" may not manage "*" (scope map "wide-token-scope-map"): they manage scope maps and tokens only on team-a/*`},
	} {
		if _, _, err := alice.run(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("berth %s as alice: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	ci := alice.createToken("team-a-ci", "--repository", "team-a/app", "content/read", "content/write")
	asCI := srv.As(ci.name, ci.password["password1"])
	if err := push(asCI, "team-a/app:v1", img); err != nil {
		t.Errorf("team-a-ci pushes team-a/app: %v", err)
	}
	if err := push(asCI, "team-b/app:v2", img); err == nil {
		t.Error("team-a-ci pushed to team-b/app")
	}
	if out := alice.must("token", "list"); strings.Contains(out, "_repositories") || !strings.Contains(out, "team-a-ci") {
		t.Errorf("alice's token list:\n%s", out)
	}

	asCarol := srv.As("carol", carolPW)
	if err := push(asCarol, "team-a/web:v1", img); err != nil {
		t.Errorf("carol pushes team-a/web: %v", err)
	}
	if err := push(asCarol, "team-b/web:v1", img); err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("carol pushes team-b/web: %v, want a denial", err)
	}
	repos, err := remote.Catalog(ctx, asCarol.Repo(t, "team-a/app").Registry, asCarol.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(repos, " ") != "team-a/app team-a/web" {
		t.Errorf("carol's catalog: %v", repos)
	}

	owner.must("role", "assignment", "delete", "--assignee", "carol", "--role", "contributor", "--repository", "team-a/*")
	if err := push(asCarol, "team-a/web:v2", img); err == nil {
		t.Error("carol pushed after losing her assignment")
	}
}
