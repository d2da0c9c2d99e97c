package e2e

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestServerLifecycle checks the server's process contract, which every other
// test relies on through the harness: health endpoints, a graceful restart,
// a crash and restart, and a new process on the data left by an old one. The
// content pushed first must survive all of it.
func TestServerLifecycle(t *testing.T) {
	srv := startRegistry(t)
	ctx := t.Context()
	if srv.Kind == testutil.KindBerth {
		if srv.Username != testutil.OwnerUsername || srv.Password == "" {
			t.Errorf("credentials = %q/%q, want the owner with a password", srv.Username, srv.Password)
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			x := do(t, http.DefaultClient, http.MethodGet, srv.URL+path, nil)
			if x.resp.StatusCode != http.StatusOK {
				t.Errorf("want 200\n%s", x)
			}
		}
	}

	img := testutil.RandomImage(t, 2, 64<<10)
	want := testutil.DigestsOf(t, img)
	const repo = "e2e/lifecycle:v1"
	if err := remote.Write(srv.Ref(t, repo), img, srv.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("push: %v", err)
	}
	pull := func(srv *testutil.Server, when string) {
		t.Helper()
		got, err := remote.Image(srv.Ref(t, repo), srv.RemoteOptions(ctx)...)
		if err != nil {
			t.Fatalf("pull %s: %v", when, err)
		}
		verifyImage(t, got, want)
	}

	host := srv.Host
	srv.Restart() // SIGTERM, which must end berth with status 0, then start again
	pull(srv, "after a graceful restart")

	srv.Kill()
	if srv.Running() {
		t.Fatal("server still running after Kill")
	}
	srv.Restart()
	pull(srv, "after kill -9 and restart")
	if srv.Host != host {
		t.Errorf("restart moved the server from %s to %s", host, srv.Host)
	}

	// A second server on the first one's data. The owner password was set
	// on first start; the second server must know it.
	srv.Stop()
	second := newRegistry(t, testutil.WithDataDir(srv.DataDir), testutil.WithPassword(srv.Password))
	pull(second, "from a new process on the same data")
}
