package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestMigrateClients fills a registry on the embedded defaults with real
// clients (skopeo and podman pushing with a token, a user made with the
// CLI), moves it with berth migrate to PostgreSQL and S3, serves it from
// there, and has the same clients pull everything with the same token
// password and user password.
func TestMigrateClients(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	pm := testutil.NewPodman(t)
	sk := testutil.NewSkopeo(t)
	const readerPassword = "mig-reader-password-1"

	cli.must("scope-map", "create", "-n", "mig-push", "--repository", "mig/*", "content/read", "content/write")
	tok := cli.createToken("mig-pusher", "--scope-map", "mig-push")
	cli.must("user", "create", "-n", "mig-reader", "--role", "reader", "-p", readerPassword)
	creds := tok.name + ":" + tok.password["password1"]

	img := testutil.RandomImage(t, 2, 64<<10)
	want := testutil.DigestsOf(t, img)
	sk.MustRun("copy", "--dest-tls-verify=false", "--dest-creds="+creds, "oci:"+testutil.WriteOCILayout(t, img, "v1")+":v1", "docker://"+srv.Host+"/mig/sk:v1")

	podmanLogin := func(s *testutil.Server, user, password string) {
		t.Helper()
		out, err := pm.RunInput(password, "login", "--tls-verify=false", "--username", user, "--password-stdin", s.Host)
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("podman login as %s to %s: %v\n%s", user, s.Host, err, out)
		}
	}
	podmanLogin(srv, tok.name, tok.password["password1"])
	id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+testutil.WriteOCILayout(t, testutil.RandomImage(t, 2, 32<<10), "v1")+":v1"))
	pm.MustRun("tag", id, srv.Host+"/mig/pm:v1")
	digestFile := filepath.Join(t.TempDir(), "digest")
	pm.MustRun("push", "--tls-verify=false", "--digestfile", digestFile, srv.Host+"/mig/pm:v1")
	pushed, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	pg := testutil.StartPostgres(t)
	s3 := testutil.StartS3(t)
	dbURL, storage := pg.NewDatabase(), s3.URL(s3.NewBucket(), "mig")
	cmd := exec.CommandContext(t.Context(), testutil.BerthBinary(t), "migrate", "--from-data", srv.DataDir, "--to-database", dbURL, "--to-storage", storage)
	cmd.Env = append(os.Environ(), s3.Env()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("berth migrate: %v\n%s", err, out.String())
	}
	t.Logf("berth migrate:\n%s", out.String())

	moved := testutil.StartServer(t, testutil.WithPassword(srv.Password), testutil.WithEnv(s3.Env()...),
		testutil.WithArgs("--database", dbURL, "--storage", storage, "--login-failure-threshold", "1000"))
	for _, c := range []string{creds, "mig-reader:" + readerPassword} {
		o, err := sk.Output("inspect", "--tls-verify=false", "--creds="+c, "docker://"+moved.Host+"/mig/sk:v1")
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Digest string }
		if err := json.Unmarshal([]byte(o), &got); err != nil || got.Digest != want.Manifest.String() {
			t.Fatalf("skopeo inspect as %s: %v: digest %q, want %s", strings.SplitN(c, ":", 2)[0], err, got.Digest, want.Manifest)
		}
		sk.MustRun("copy", "--src-tls-verify=false", "--src-creds="+c, "docker://"+moved.Host+"/mig/sk:v1", "oci:"+t.TempDir()+":v1")
	}
	if o, err := sk.Run("inspect", "--tls-verify=false", "--creds=mig-reader:"+readerPassword+"x", "docker://"+moved.Host+"/mig/sk:v1"); err == nil {
		t.Fatalf("a wrong password was accepted after the migration:\n%s", o)
	}
	podmanLogin(moved, tok.name, tok.password["password1"])
	pm.MustRun("pull", "--tls-verify=false", moved.Host+"/mig/pm:v1")
	if got := ownerManifest(t, moved, "mig/pm:v1"); got != strings.TrimSpace(string(pushed)) {
		t.Fatalf("mig/pm:v1 is %s after the migration, podman pushed %s", got, pushed)
	}
}
