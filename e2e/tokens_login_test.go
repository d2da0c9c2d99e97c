package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestDockerLoginOutlivesRefreshTTL: a `docker login` with a token's
// password keeps working for as long as the password does, past the
// refresh-token lifetime. docker keeps the refresh token of the login as its
// identity token, uses it for every push and pull, never replaces it with
// the one a refresh returns and never falls back to the password; so the
// server is started with the shortest refresh-token lifetime it accepts,
// and docker must still push and pull after it. Disabling the token must
// still end the login at once.
func TestDockerLoginOutlivesRefreshTTL(t *testing.T) {
	const (
		refreshTTL = 61 * time.Second // just over the access-token lifetime, the least allowed
		leeway     = 10 * time.Second // the verifier's clock-skew tolerance
	)
	srv := startBerth(t, testutil.WithArgs("--access-token-ttl", "1m", "--refresh-token-ttl", refreshTTL.String()))
	d := testutil.StartDockerd(t)
	cli := newBerthCLI(t, srv)
	dc := dockerClient{t, d, srv}

	tok := cli.createToken("long-ci", "--repository", "long/*", "content/read", "content/write")
	dc.mustLogin(tok.name, tok.password["password1"])
	loggedIn := time.Now()

	// What docker saved is an identity token, not the password: that is
	// what has to keep working.
	b, err := os.ReadFile(filepath.Join(d.ConfigDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct {
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths[srv.Host].IdentityToken == "" || strings.Contains(string(b), tok.password["password1"]) {
		t.Fatalf("docker config after login: %v: want an identity token for %s and no password\n%s", err, srv.Host, b)
	}

	dc.mustPush("long/app:v1")
	waitUntil(t, loggedIn.Add(refreshTTL+leeway+5*time.Second))
	dc.mustPush("long/app:v2")
	ref := srv.Host + "/long/app:v1"
	d.MustRun("rmi", ref)
	if out, err := d.Run("pull", ref); err != nil {
		t.Fatalf("pull past the refresh-token lifetime: %v\n%s", err, out)
	}

	cli.must("token", "update", "-n", tok.name, "--status", "disabled")
	out, err := dc.push("long/app:v3")
	mustFail(t, "push with a disabled token", out, err, "unauthorized: ", "token disabled")
	d.MustRun("rmi", ref)
	out, err = d.Run("pull", ref)
	mustFail(t, "pull with a disabled token", out, err, "unauthorized: ", "token disabled")
}
