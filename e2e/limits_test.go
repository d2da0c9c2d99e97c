package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestTokenRateLimitClients: a token over its rate limit is refused with
// 429 TOOMANYREQUESTS, and docker and podman show the message that names
// the limit.
func TestTokenRateLimitClients(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	img := testutil.RandomImage(t, 1, 16<<10)
	if err := remote.Write(srv.Ref(t, "lim/app:v1"), img, srv.RemoteOptions(t.Context())...); err != nil {
		t.Fatal(err)
	}
	tok := cli.createToken("lim-puller", "--repository", "lim/*", "content/read")
	// limit sets (again) a rate limit of one request now and 4 an hour:
	// a limit set starts with a full bucket, which the client's login
	// (its GET /v2/ with the password) then empties.
	limit := func(t *testing.T) {
		t.Helper()
		out := cli.must("token", "update", "-n", tok.name, "--rate-limit", "4/h", "--burst", "1")
		if !strings.Contains(out, "4 requests/h, burst 1") {
			t.Fatalf("token update --rate-limit:\n%s", out)
		}
	}
	want := `token "lim-puller" is over its rate limit of 4 requests/h (burst 1)`
	// exhaust takes the one request of the bucket, so that the client's
	// first counted request is over the limit.
	exhaust := func(t *testing.T) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/v2/", nil)
		req.SetBasicAuth(tok.name, tok.password["password1"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("GET /v2/ as %s: %d", tok.name, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}

	t.Run("Docker", func(t *testing.T) {
		d := testutil.StartDockerd(t)
		dc := dockerClient{t, d, srv}
		limit(t)
		dc.mustLogin(tok.name, tok.password["password1"])
		exhaust(t)
		out, err := d.Run("pull", srv.Host+"/lim/app:v1")
		mustFail(t, "docker pull over the rate limit", out, err, "toomanyrequests", want)
	})
	// podman (containers/image) retries a 429 five times, waiting what
	// Retry-After says up to a minute each, before it gives up and shows
	// the message: this part takes about five minutes.
	t.Run("Podman", func(t *testing.T) {
		pm := testutil.NewPodman(t)
		limit(t)
		if out, err := pm.RunInput(tok.password["password1"], "login", "--tls-verify=false", "--username", tok.name, "--password-stdin", srv.Host); err != nil {
			t.Fatalf("podman login: %v\n%s", err, out)
		}
		out, err := pm.Run("pull", "--tls-verify=false", srv.Host+"/lim/app:v1")
		mustFail(t, "podman pull over the rate limit", out, err, want)
	})
}
