package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// The container image builds FROM scratch with the local dockerd (nothing
// is pulled), runs as an unprivileged user with its data in /data, and
// serves pushes and pulls: on the defaults, and on PostgreSQL and S3 set
// by BERTH_DATABASE and BERTH_STORAGE.
func TestContainerImage(t *testing.T) {
	requireE2E(t)
	d := testutil.StartDockerd(t)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-buildvcs=false", "-trimpath", "-ldflags=-s", "-o", filepath.Join(ctxDir, "berth"), "./cmd/berth")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	if err := os.CopyFS(filepath.Join(ctxDir, "data"), os.DirFS(filepath.Join(root, "deploy", "image", "data"))); err != nil {
		t.Fatal(err)
	}
	tag := "berth-e2e:" + strings.ToLower(testutil.RandomString(8))
	d.MustRun("build", "-t", tag, "-f", filepath.Join(root, "Dockerfile"), ctxDir)

	inspect := d.MustRun("image", "inspect", "--format", "{{.Config.User}} {{len .RootFS.Layers}}", tag)
	if got := strings.TrimSpace(inspect); got != "65532:65532 2" {
		t.Errorf("image user and layers = %q, want an unprivileged user and two layers (data dir, binary)", got)
	}

	t.Run("defaults", func(t *testing.T) { runImage(t, d, tag, nil, nil) })
	t.Run("postgres+s3", func(t *testing.T) {
		pg := testutil.StartPostgres(t)
		gw := testutil.StartS3(t)
		bucket := gw.NewBucket()
		db, storage := pg.NewDatabase(), gw.URL(bucket, "image")
		env := append([]string{"BERTH_DATABASE=" + db, "BERTH_STORAGE=" + storage}, gw.Env()...)
		runImage(t, d, tag, env, func(t *testing.T) {
			view := testutil.Server{Kind: testutil.KindBerth, DataDir: filepath.Join(gw.Dir, bucket, "image")}
			if n := view.CheckBlobStore(t); n != 3 {
				t.Errorf("the bucket holds %d blobs, want the image's 3 (config and two layers)", n)
			}
		})
	})
}

// runImage starts a container of tag with --network host and env, pushes
// and pulls an image through it, and runs check (if any) on what it stored.
func runImage(t *testing.T, d *testutil.Dockerd, tag string, env []string, check func(*testing.T)) {
	port := freeLoopbackPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	password := testutil.RandomString(20)
	args := []string{"run", "-d", "--network", "host", "-e", "BERTH_ADDR=" + addr, "-e", "BERTH_OWNER_PASSWORD=" + password}
	for _, kv := range env {
		args = append(args, "-e", kv)
	}
	id := strings.TrimSpace(d.MustRun(append(args, tag)...))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.Run("logs", id)
			t.Logf("container log:\n%s", out)
		}
		_, _ = d.Run("rm", "-f", id)
	})
	waitHTTP(t, "http://"+addr+"/readyz")

	ctx := context.Background()
	img := testutil.RandomImage(t, 2, 4096)
	ref, err := name.NewTag(addr+"/samples/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: testutil.OwnerUsername, Password: password})
	if err := remote.Write(ref, img, auth, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push to the container: %v", err)
	}
	got, err := remote.Image(ref, auth, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull from the container: %v", err)
	}
	verifyImage(t, got, testutil.DigestsOf(t, img))
	if check != nil {
		check(t)
	}

	out := d.MustRun("exec", id, "/berth", "--help")
	if !strings.Contains(out, "serve") {
		t.Errorf("berth --help in the container: %s", out)
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
