package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestSkopeoEncryptedRegistry copies an image with skopeo into a registry
// that encrypts content at rest and back out, digests unchanged; every blob
// file on disk is sealed; berth encryption rotate-key rewraps the data keys
// while the registry serves, and the image still copies out; berth fsck
// with the key finds nothing wrong.
func TestSkopeoEncryptedRegistry(t *testing.T) {
	requireE2E(t)
	key := filepath.Join(t.TempDir(), "kek")
	if err := encryption.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	sk := testutil.NewSkopeo(t)
	srv := startRegistry(t, testutil.WithArgs("--encryption-key", "file:"+key))
	sk.Login(srv)

	img := testutil.RandomImage(t, 3, 300<<10)
	want := testutil.DigestsOf(t, img)
	dir := testutil.WriteOCILayout(t, img, "v1")
	ref := srv.Host + "/e2e/sealed:v1"
	sk.MustRun("copy", "--dest-tls-verify=false", "oci:"+dir+":v1", "docker://"+ref)
	info, _ := skopeoInspect(t, sk, ref)
	if info.Digest != want.Manifest.String() || !slices.Equal(info.Layers, hashStrings(want.Layers)) {
		t.Fatalf("inspect = %+v, want %s %v", info, want.Manifest, want.Layers)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(srv.DataDir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte("BERTHENC")) {
			t.Errorf("blob file %s is stored unencrypted", filepath.Base(p))
		}
		n++
		return nil
	})
	if err != nil || n < 4 {
		t.Fatalf("%d blob files: %v", n, err)
	}

	berth := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(testutil.BerthBinary(t), args...)
		cmd.Env = append(os.Environ(), "BERTH_SERVER="+srv.URL, "BERTH_USERNAME="+srv.Username, "BERTH_PASSWORD="+srv.Password)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var st encryption.Status
	if err := json.Unmarshal([]byte(berth("encryption", "rotate-key", "--wait", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != 2 || st.Rewrapping != 0 || !st.Available {
		t.Fatalf("status after rotate-key --wait: %+v", st)
	}
	if out := berth("encryption", "status"); !strings.Contains(out, "version 2, available") {
		t.Fatalf("berth encryption status:\n%s", out)
	}
	back := filepath.Join(t.TempDir(), "back")
	sk.MustRun("copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+back+":v1")
	verifyImage(t, testutil.ReadOCILayout(t, back, "v1"), want)
}
