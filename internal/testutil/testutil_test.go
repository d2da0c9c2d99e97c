package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestRandomImage(t *testing.T) {
	p := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	a := RandomPlatformImage(t, 3, 1000, p)
	b := RandomPlatformImage(t, 3, 1000, p)
	da, db := DigestsOf(t, a), DigestsOf(t, b)
	if len(da.Layers) != 3 || len(da.DiffIDs) != 3 {
		t.Fatalf("got %d layers, %d diff IDs, want 3", len(da.Layers), len(da.DiffIDs))
	}
	// Random content: two images share nothing, so no test dedups by accident.
	if da.Manifest == db.Manifest || da.Layers[0] == db.Layers[0] {
		t.Errorf("two random images share content: %v %v", da, db)
	}
	// Reading a layer twice gives the same bytes: digests are stable.
	if again := DigestsOf(t, a); again.Manifest != da.Manifest {
		t.Errorf("digest changed between reads: %s then %s", da.Manifest, again.Manifest)
	}
	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture || cf.Variant != p.Variant {
		t.Errorf("config platform = %s/%s/%s, want %s", cf.OS, cf.Architecture, cf.Variant, p)
	}
	if mt, _ := a.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type = %s, want an OCI manifest", mt)
	}
}

func TestOCILayoutRoundTrip(t *testing.T) {
	img := RandomImage(t, 2, 100)
	dir := WriteOCILayout(t, img, "v1")
	if strings.ToLower(dir) != dir {
		t.Errorf("layout path %s has capitals; podman cannot name images after it", dir)
	}
	got := ReadOCILayout(t, dir, "v1")
	if a, b := DigestsOf(t, img), DigestsOf(t, got); a.Manifest != b.Manifest {
		t.Errorf("layout holds %s, wrote %s", b.Manifest, a.Manifest)
	}
}

// recorder is a testing.TB that records errors instead of failing, to test
// helpers whose job is to fail tests.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }

func TestCheckBlobStore(t *testing.T) {
	write := func(root, rel, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte("hello"))
	good := hex.EncodeToString(sum[:])
	other := strings.Repeat("ab", 32)

	tests := []struct {
		name    string
		kind    string
		files   map[string]string
		blobs   int
		wantErr string
	}{
		{"empty store", KindBerth, nil, 0, ""},
		{"good blob", KindBerth, map[string]string{"blobs/sha256/" + good[:2] + "/" + good: "hello"}, 1, ""},
		{"partial blob", KindBerth, map[string]string{"blobs/sha256/" + other[:2] + "/" + other: "hel"}, 1, "partial or corrupt"},
		{"temporary file", KindBerth, map[string]string{"blobs/sha256/" + good[:2] + "/" + good + ".tmp": "hel"}, 0, "not a blob"},
		{"wrong directory", KindBerth, map[string]string{"blobs/sha256/00/" + good: "hello"}, 1, "wrong directory"},
		{"distribution layout", KindDistribution, map[string]string{"docker/registry/v2/blobs/sha256/" + good[:2] + "/" + good + "/data": "hello"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range tt.files {
				write(root, rel, content)
			}
			r := &recorder{TB: t}
			s := &Server{Kind: tt.kind, DataDir: root}
			if n := s.CheckBlobStore(r); n != tt.blobs {
				t.Errorf("checked %d blobs, want %d", n, tt.blobs)
			}
			got := strings.Join(r.errs, "\n")
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Errorf("errors = %q, want one containing %q", got, tt.wantErr)
			}
		})
	}
}
