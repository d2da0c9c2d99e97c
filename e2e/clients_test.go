package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// skopeoInfo is the part of `skopeo inspect` output the tests compare.
type skopeoInfo struct {
	Digest string
	Layers []string
}

func skopeoInspect(t *testing.T, sk *testutil.Skopeo, ref string) (skopeoInfo, []byte) {
	t.Helper()
	out, err := sk.Output("inspect", "--tls-verify=false", "docker://"+ref)
	if err != nil {
		t.Fatal(err)
	}
	var info skopeoInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	raw, err := sk.Output("inspect", "--tls-verify=false", "--raw", "docker://"+ref)
	if err != nil {
		t.Fatal(err)
	}
	return info, []byte(raw)
}

func hashStrings(hs []v1.Hash) []string {
	var s []string
	for _, h := range hs {
		s = append(s, h.String())
	}
	return s
}

// TestPodmanPushPull pushes a three-layer image with podman, checks what the
// registry holds with skopeo, and pulls it back into an empty podman store.
// podman stores layers uncompressed and compresses them again on push, so
// the pushed layer digests are podman's own; what must survive the round
// trip is the config (the image ID), the diff IDs and the manifest digest
// that podman reported.
func TestPodmanPushPull(t *testing.T) {
	requireE2E(t)
	pm := testutil.NewPodman(t)
	sk := testutil.NewSkopeo(t)
	srv := startRegistry(t)
	pm.Login(srv)
	sk.Login(srv)

	img := testutil.RandomImage(t, 3, 256<<10)
	want := testutil.DigestsOf(t, img)
	dir := testutil.WriteOCILayout(t, img, "v1")
	id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+dir+":v1"))
	if id != want.Config.Hex {
		t.Fatalf("podman loaded image ID %q, want %s", id, want.Config.Hex)
	}

	ref := srv.Host + "/e2e/podman:v1"
	pm.MustRun("tag", id, ref)
	digestFile := filepath.Join(t.TempDir(), "digest")
	pm.MustRun("push", "--tls-verify=false", "--digestfile", digestFile, ref)
	b, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	pushed := strings.TrimSpace(string(b))

	info, raw := skopeoInspect(t, sk, ref)
	if info.Digest != pushed {
		t.Errorf("skopeo inspect digest = %s, podman pushed %s", info.Digest, pushed)
	}
	if got := "sha256:" + sha256Hex(raw); got != pushed {
		t.Errorf("raw manifest hashes to %s, podman pushed %s", got, pushed)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, raw)
	}
	if m.Config.Digest != want.Config {
		t.Errorf("pushed config = %s, want %s", m.Config.Digest, want.Config)
	}
	var manifestLayers []string
	for _, l := range m.Layers {
		manifestLayers = append(manifestLayers, l.Digest.String())
	}
	if len(manifestLayers) != 3 || !slices.Equal(info.Layers, manifestLayers) {
		t.Errorf("skopeo inspect layers = %v, manifest layers = %v, want the same 3", info.Layers, manifestLayers)
	}

	pm.MustRun("rmi", "--all", "--force")
	pm.MustRun("pull", "--tls-verify=false", ref)
	out, err := pm.Output("image", "inspect", ref)
	if err != nil {
		t.Fatal(err)
	}
	var inspected []struct {
		ID          string `json:"Id"`
		Digest      string
		RepoDigests []string
		RootFS      struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	got := inspected[0]
	if got.ID != want.Config.Hex {
		t.Errorf("pulled image ID = %s, want %s", got.ID, want.Config.Hex)
	}
	if got.Digest != pushed {
		t.Errorf("pulled manifest digest = %s, want %s", got.Digest, pushed)
	}
	if !slices.Equal(got.RootFS.Layers, hashStrings(want.DiffIDs)) {
		t.Errorf("pulled diff IDs = %v, want %v", got.RootFS.Layers, hashStrings(want.DiffIDs))
	}
	if !slices.Contains(got.RepoDigests, srv.Host+"/e2e/podman@"+pushed) {
		t.Errorf("pulled repo digests = %v, want one for %s", got.RepoDigests, pushed)
	}
}

// TestSkopeoCopy copies a three-layer OCI image from a layout to the
// registry, from one repository to another on the same registry (where
// skopeo may mount blobs instead of uploading them), and back to a layout.
// skopeo copies OCI content unchanged, so every digest must be the
// original's.
func TestSkopeoCopy(t *testing.T) {
	requireE2E(t)
	sk := testutil.NewSkopeo(t)
	srv := startRegistry(t)
	sk.Login(srv)

	img := testutil.RandomImage(t, 3, 256<<10)
	want := testutil.DigestsOf(t, img)
	dir := testutil.WriteOCILayout(t, img, "v1")

	first := srv.Host + "/e2e/skopeo:v1"
	second := srv.Host + "/e2e/skopeo-copy:v1"
	sk.MustRun("copy", "--dest-tls-verify=false", "oci:"+dir+":v1", "docker://"+first)
	sk.MustRun("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+first, "docker://"+second)

	for _, ref := range []string{first, second} {
		info, raw := skopeoInspect(t, sk, ref)
		if info.Digest != want.Manifest.String() {
			t.Errorf("%s: skopeo inspect digest = %s, want %s", ref, info.Digest, want.Manifest)
		}
		if got := "sha256:" + sha256Hex(raw); got != want.Manifest.String() {
			t.Errorf("%s: raw manifest hashes to %s, want %s", ref, got, want.Manifest)
		}
		if !slices.Equal(info.Layers, hashStrings(want.Layers)) {
			t.Errorf("%s: layers = %v, want %v", ref, info.Layers, hashStrings(want.Layers))
		}
	}

	back := filepath.Join(t.TempDir(), "back")
	sk.MustRun("copy", "--src-tls-verify=false", "docker://"+second, "oci:"+back+":v1")
	verifyImage(t, testutil.ReadOCILayout(t, back, "v1"), want)
}

// pushDigest matches the last line of `docker push`: "v1: digest: sha256:... size: 528".
var pushDigest = regexp.MustCompile(`(?m)^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+`)

// TestDockerPushPull imports a generated root filesystem into a private
// dockerd, pushes it under two tags, removes it locally, and pulls it back by
// tag and by digest. docker pushes Docker schema 2 manifests, which berth
// must store as they are.
func TestDockerPushPull(t *testing.T) {
	requireE2E(t)
	d := testutil.StartDockerd(t)
	srv := startRegistry(t)
	d.Login(srv)

	ref := srv.Host + "/e2e/docker:v1"
	ref2 := srv.Host + "/e2e/docker:v2"
	id := strings.TrimSpace(d.MustRun("import", testutil.RootfsTarball(t, 1<<20), ref))
	d.MustRun("tag", ref, ref2)

	out := d.MustRun("push", ref)
	m := pushDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no digest in docker push output:\n%s", out)
	}
	pushed := m[1]
	out = d.MustRun("push", ref2)
	if m := pushDigest.FindStringSubmatch(out); m == nil || m[1] != pushed {
		t.Errorf("second tag pushed as %v, want %s:\n%s", m, pushed, out)
	}

	// What the registry holds is what docker reported.
	desc, err := remote.Get(srv.Ref(t, "e2e/docker:v2"), srv.RemoteOptions(t.Context())...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != pushed {
		t.Errorf("registry has %s for v2, docker pushed %s", desc.Digest, pushed)
	}
	if desc.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("media type = %s, want the Docker schema 2 manifest docker pushed", desc.MediaType)
	}

	d.MustRun("rmi", ref, ref2)
	if _, err := d.Run("image", "inspect", id); err == nil {
		t.Fatalf("image %s still present after rmi", id)
	}

	d.MustRun("pull", ref)
	inspect := func(ref string) (string, []string) {
		t.Helper()
		out := d.MustRun("image", "inspect", "--format", "{{json .Id}} {{json .RepoDigests}}", ref)
		var gotID string
		var digests []string
		idPart, digestPart, _ := strings.Cut(strings.TrimSpace(out), " ")
		if err := json.Unmarshal([]byte(idPart), &gotID); err != nil {
			t.Fatalf("docker image inspect: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(digestPart), &digests); err != nil {
			t.Fatalf("docker image inspect: %v\n%s", err, out)
		}
		return gotID, digests
	}
	gotID, digests := inspect(ref)
	if gotID != id {
		t.Errorf("pulled image ID = %s, want %s", gotID, id)
	}
	if want := srv.Host + "/e2e/docker@" + pushed; !slices.Contains(digests, want) {
		t.Errorf("repo digests = %v, want %s", digests, want)
	}

	byDigest := srv.Host + "/e2e/docker@" + pushed
	d.MustRun("rmi", ref)
	d.MustRun("pull", byDigest)
	if gotID, _ := inspect(byDigest); gotID != id {
		t.Errorf("image pulled by digest has ID %s, want %s", gotID, id)
	}
}
