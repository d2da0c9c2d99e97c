package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Test images are made from crypto/rand content so that two images never
// share a blob by accident: a test that means to exercise deduplication or
// mounting shares layers on purpose.

// randomTar returns an uncompressed tar holding one regular file of random
// content per entry of sizes, under dir/.
func randomTar(sizes []int64, dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	if dir != "" {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	for i, size := range sizes {
		name := fmt.Sprintf("random-%d-%s.bin", i, RandomString(6))
		if dir != "" {
			name = dir + "/" + name
		}
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RandomLayer returns a gzip-compressed OCI layer holding one file of size
// random bytes. The compressed bytes are fixed at creation, so the layer's
// digest never changes however often it is read.
func RandomLayer(t testing.TB, size int64) v1.Layer {
	t.Helper()
	raw, err := randomTar([]int64{size}, "")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	// Random content does not compress; the fastest level saves CPU.
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// RandomImage returns an OCI image for linux and the test's architecture with
// layers layers of layerSize random bytes each.
func RandomImage(t testing.TB, layers int, layerSize int64) v1.Image {
	t.Helper()
	return RandomPlatformImage(t, layers, layerSize, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// RandomPlatformImage is RandomImage for the given platform, for building
// multi-platform indexes.
func RandomPlatformImage(t testing.TB, layers int, layerSize int64, p v1.Platform) v1.Image {
	t.Helper()
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, layers)
	for i := range adds {
		adds[i] = mutate.Addendum{
			Layer:     RandomLayer(t, layerSize),
			MediaType: types.OCILayer,
			History:   v1.History{CreatedBy: fmt.Sprintf("berth test layer %d", i), Created: v1.Time{Time: time.Unix(0, 0).UTC()}},
		}
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// RootfsTarball writes an uncompressed tar of a small root filesystem (a
// directory of random files totalling about size bytes) to a temporary file
// and returns its path, for `docker import` and `podman import`.
func RootfsTarball(t testing.TB, size int64) string {
	t.Helper()
	sizes := []int64{size / 2, size / 4, size - size/2 - size/4}
	b, err := randomTar(sizes, "data")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteOCILayout writes img into a new OCI image layout directory, named by
// tag (the org.opencontainers.image.ref.name annotation), and returns the
// directory: skopeo and podman read it as oci:DIR:TAG.
func WriteOCILayout(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	// Not t.TempDir: podman names an image pulled from oci:DIR after DIR,
	// and a test name's capitals would make that an invalid reference.
	dir := filepath.Join(shortTempDir(t, "oci"), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ReadOCILayout returns the image tagged tag in the OCI layout at dir.
func ReadOCILayout(t testing.TB, dir, tag string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image tagged %q in %s", tag, dir)
	return nil
}

// ImageDigests lists the digests that identify img: its manifest, its config,
// its layers (as pushed, compressed) and its layers' diff IDs (uncompressed).
type ImageDigests struct {
	Manifest v1.Hash
	Config   v1.Hash
	Layers   []v1.Hash
	DiffIDs  []v1.Hash
}

// DigestsOf returns the digests of img.
func DigestsOf(t testing.TB, img v1.Image) ImageDigests {
	t.Helper()
	var d ImageDigests
	var err error
	if d.Manifest, err = img.Digest(); err != nil {
		t.Fatal(err)
	}
	if d.Config, err = img.ConfigName(); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		dg, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		diff, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		d.Layers = append(d.Layers, dg)
		d.DiffIDs = append(d.DiffIDs, diff)
	}
	return d
}
