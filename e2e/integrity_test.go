package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestDamagedLayersRepairedByRepush damages two layers of a pushed image on
// disk (one truncated, one with a byte changed), and checks the whole way
// back with a real client and the real binary: the truncated layer is
// refused at once, `berth fsck` finds both and exits 1, `--repair`
// quarantines them, pushing the layers again restores them, and the image
// pulls intact again.
func TestDamagedLayersRepairedByRepush(t *testing.T) {
	srv := startRegistry(t, testutil.WithArgs("--scrub-rate", "0"))
	opts := srv.RemoteOptions(t.Context())
	img := testutil.RandomImage(t, 3, 2<<20) // above the size hashed on every response
	want := testutil.DigestsOf(t, img)
	ref := srv.Ref(t, "e2e/integrity:v1")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}
	file := func(h v1.Hash) string {
		return filepath.Join(srv.DataDir, "blobs", h.Algorithm, h.Hex[:2], h.Hex)
	}
	cut, flipped := want.Layers[0], want.Layers[1]
	if err := os.Truncate(file(cut), 1000); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file(flipped))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(file(flipped), b, 0o640)

	layer, err := remote.Layer(srv.Digest(t, "e2e/integrity", cut.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := layer.Compressed(); err == nil {
		rc.Close()
		t.Fatal("the truncated layer is served")
	}

	run := func(args ...string) (fsck.Report, error) {
		t.Helper()
		cmd := exec.Command(testutil.BerthBinary(t), append([]string{"fsck", "--data", srv.DataDir, "-o", "json"}, args...)...)
		out, err := cmd.Output()
		var rep fsck.Report
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			t.Fatalf("berth fsck %v: %v (%v)\n%s", args, jerr, err, out)
		}
		return rep, err
	}
	var exit *exec.ExitError
	rep, err := run()
	var missing []string
	for _, m := range rep.MissingBlobs {
		missing = append(missing, m.Digest.String())
	}
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("fsck of a damaged store: %v", err)
	}
	// The truncated layer was quarantined when it was refused; the changed
	// byte is for fsck to find.
	if len(rep.DamagedBlobs) != 1 || rep.DamagedBlobs[0].Digest.String() != flipped.String() || !slices.Equal(missing, []string{cut.String()}) {
		t.Fatalf("fsck report: damaged %+v, missing %v", rep.DamagedBlobs, missing)
	}
	if rep, _ = run("--repair"); len(rep.DamagedBlobs) != 1 || !rep.DamagedBlobs[0].Quarantined {
		t.Fatalf("repair: %+v", rep.DamagedBlobs)
	}

	// go-containerregistry (like crane) skips a push whose manifest is
	// there already, so push the layers themselves, as docker push does
	// after asking about each with HEAD.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if err := remote.WriteLayer(srv.Repo(t, "e2e/integrity"), l, opts...); err != nil {
			t.Fatalf("re-push of a layer: %v", err)
		}
	}
	if rep, err := run(); err != nil || rep.Problems() != 0 {
		t.Fatalf("fsck after the re-push: %v %+v", err, rep)
	}
	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	verifyImage(t, got, want)
	for _, l := range []v1.Hash{cut, flipped} {
		layer, err := got.LayerByDigest(l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := layer.Uncompressed(); err != nil {
			t.Fatalf("layer %s: %v", l, err)
		}
	}
}
