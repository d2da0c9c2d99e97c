package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestImageRoundTrip pushes a three-layer image with go-containerregistry
// and reads it back every way a client can: HEAD, GET, tag list, catalog,
// by digest, under a second tag, and finally deletes it.
func TestImageRoundTrip(t *testing.T) {
	srv := startRegistry(t)
	ctx := t.Context()
	opts := srv.RemoteOptions(ctx)
	const repo = "e2e/ggcr/image"

	img := testutil.RandomImage(t, 3, 512<<10)
	want := testutil.DigestsOf(t, img)
	ref := srv.Ref(t, repo+":v1")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}

	desc, err := remote.Head(ref, opts...)
	if err != nil {
		t.Fatalf("HEAD manifest: %v", err)
	}
	if desc.Digest != want.Manifest || desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("HEAD = %s %s, want %s %s", desc.MediaType, desc.Digest, types.OCIManifestSchema1, want.Manifest)
	}

	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	verifyImage(t, got, want)
	wantRaw, _ := img.RawManifest()
	if gotRaw, err := got.RawManifest(); err != nil || !bytes.Equal(gotRaw, wantRaw) {
		t.Errorf("manifest bytes changed on the way (err %v):\n got %s\nwant %s", err, gotRaw, wantRaw)
	}

	byDigest, err := remote.Image(srv.Digest(t, repo, want.Manifest.String()), opts...)
	if err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	verifyImage(t, byDigest, want)

	if err := remote.Tag(srv.Ref(t, repo+":v2").(name.Tag), got, opts...); err != nil {
		t.Fatalf("tag v2: %v", err)
	}
	tags, err := remote.List(srv.Repo(t, repo), opts...)
	if err != nil {
		t.Fatalf("list tags: %v", err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("tags = %v, want [v1 v2]", tags)
	}

	reg, _ := name.NewRegistry(srv.Host, name.Insecure)
	repos, err := remote.Catalog(ctx, reg, remote.WithAuth(srv.Auth()))
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	if !slices.Contains(repos, repo) {
		t.Errorf("catalog = %v, want it to list %s", repos, repo)
	}

	// Deleting the manifest by digest removes it under both tags.
	if err := remote.Delete(srv.Digest(t, repo, want.Manifest.String()), opts...); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, tag := range []string{"v1", "v2"} {
		_, err := remote.Head(srv.Ref(t, repo+":"+tag), opts...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD %s after delete: %v, want 404", tag, err)
		}
	}
}

// TestIndexRoundTrip pushes a two-platform OCI index and pulls it back, each
// child by digest and by platform.
func TestIndexRoundTrip(t *testing.T) {
	srv := startRegistry(t)
	opts := srv.RemoteOptions(t.Context())
	const repo = "e2e/ggcr/index"

	platforms := []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	children := map[string]testutil.ImageDigests{}
	for _, p := range platforms {
		img := testutil.RandomPlatformImage(t, 2, 128<<10, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
		children[p.String()] = testutil.DigestsOf(t, img)
	}
	wantDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	ref := srv.Ref(t, repo+":multi")
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		t.Fatalf("push index: %v", err)
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		t.Fatalf("get index: %v", err)
	}
	if desc.Digest != wantDigest || desc.MediaType != types.OCIImageIndex {
		t.Errorf("index = %s %s, want %s %s", desc.MediaType, desc.Digest, types.OCIImageIndex, wantDigest)
	}
	got, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(platforms) {
		t.Fatalf("index lists %d manifests, want %d", len(im.Manifests), len(platforms))
	}
	for _, child := range im.Manifests {
		if child.Platform == nil {
			t.Errorf("child %s lost its platform", child.Digest)
			continue
		}
		want, ok := children[child.Platform.String()]
		if !ok || child.Digest != want.Manifest {
			t.Errorf("child %s for %s is not one that was pushed", child.Digest, child.Platform)
			continue
		}
		img, err := remote.Image(srv.Digest(t, repo, child.Digest.String()), opts...)
		if err != nil {
			t.Errorf("pull child %s: %v", child.Digest, err)
			continue
		}
		verifyImage(t, img, want)

		// What `docker pull --platform` does: resolve the tag through the index.
		img, err = remote.Image(ref, append(opts, remote.WithPlatform(*child.Platform))...)
		if err != nil {
			t.Errorf("pull %s by platform: %v", child.Platform, err)
			continue
		}
		if d, _ := img.Digest(); d != want.Manifest {
			t.Errorf("platform %s resolved to %s, want %s", child.Platform, d, want.Manifest)
		}
	}
}

// pushArtifact pushes an artifact manifest (an image manifest with an
// artifactType, an empty config and one text layer) that refers to subject,
// by digest as ORAS does, and checks the response headers a referrers-aware
// registry must send. It returns the artifact's descriptor.
func pushArtifact(t *testing.T, srv *testutil.Server, client *http.Client, repo, artifactType string, subject v1.Descriptor, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	opts := srv.RemoteOptions(t.Context())
	payload := []byte("artifact " + artifactType + " " + testutil.RandomString(8))
	layer := static.NewLayer(payload, "text/plain")
	emptyConfig := static.NewLayer(ocispec.DescriptorEmptyJSON.Data, types.MediaType(ocispec.MediaTypeEmptyJSON))
	for _, l := range []v1.Layer{emptyConfig, layer} {
		if err := remote.WriteLayer(srv.Repo(t, repo), l, opts...); err != nil {
			t.Fatalf("push artifact blob: %v", err)
		}
	}
	layerDigest, _ := layer.Digest()
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers: []ocispec.Descriptor{{
			MediaType: "text/plain",
			Digest:    digestOf(layerDigest),
			Size:      int64(len(payload)),
		}},
		Subject: &ocispec.Descriptor{
			MediaType: string(subject.MediaType),
			Digest:    digestOf(subject.Digest),
			Size:      subject.Size,
		},
		Annotations: annotations,
	}
	m.SchemaVersion = 2
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dig := "sha256:" + sha256Hex(body)
	x := do(t, client, http.MethodPut, srv.URL+"/v2/"+repo+"/manifests/"+dig, body, "Content-Type", ocispec.MediaTypeImageManifest)
	if x.resp.StatusCode != http.StatusCreated {
		t.Fatalf("push artifact: want 201\n%s", x)
	}
	if got := x.resp.Header.Get("OCI-Subject"); got != subject.Digest.String() {
		t.Errorf("push artifact: OCI-Subject = %q, want %s (the header tells clients that the registry indexed the referrer)\n%s", got, subject.Digest, x)
	}
	if got := x.resp.Header.Get("Docker-Content-Digest"); got != dig {
		t.Errorf("push artifact: Docker-Content-Digest = %q, want %s", got, dig)
	}
	return ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Digest:       digestOf(v1.Hash{Algorithm: "sha256", Hex: sha256Hex(body)}),
		Size:         int64(len(body)),
		Annotations:  annotations,
	}
}

// TestReferrers attaches two artifacts of different types to an image and
// finds them through the referrers API, with and without an artifactType
// filter. The tag-schema fallback is disabled: berth must serve the API.
func TestReferrers(t *testing.T) {
	srv := startRegistry(t)
	ctx := t.Context()
	const repo = "e2e/ggcr/referrers"
	const sbomType = "application/vnd.berth.test.sbom.v1+json"
	const sigType = "application/vnd.berth.test.signature.v1"
	noFallback := srv.RemoteOptions(ctx, remote.WithReferrersTagFallback(false))
	client := srv.Client(t, ctx, "repository:"+repo+":pull,push,delete")

	img := testutil.RandomImage(t, 1, 4<<10)
	if err := remote.Write(srv.Ref(t, repo+":v1"), img, srv.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("push subject: %v", err)
	}
	subject, err := partialDescriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	sbom := pushArtifact(t, srv, client, repo, sbomType, subject, map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
	sig := pushArtifact(t, srv, client, repo, sigType, subject, nil)

	subjectRef := srv.Digest(t, repo, subject.Digest.String())
	list := func(opts ...remote.Option) []v1.Descriptor {
		t.Helper()
		idx, err := remote.Referrers(subjectRef, append(noFallback, opts...)...)
		if err != nil {
			t.Fatalf("referrers: %v", err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		return im.Manifests
	}
	check := func(what string, got []v1.Descriptor, want ...ocispec.Descriptor) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d referrers %v, want %d", what, len(got), got, len(want))
			return
		}
		for _, w := range want {
			i := slices.IndexFunc(got, func(d v1.Descriptor) bool { return d.Digest.String() == w.Digest.String() })
			if i < 0 {
				t.Errorf("%s: %s missing from %v", what, w.Digest, got)
				continue
			}
			g := got[i]
			if string(g.MediaType) != w.MediaType || g.ArtifactType != w.ArtifactType || g.Size != w.Size {
				t.Errorf("%s: descriptor %+v, want mediaType %s artifactType %s size %d", what, g, w.MediaType, w.ArtifactType, w.Size)
			}
			for k, v := range w.Annotations {
				if g.Annotations[k] != v {
					t.Errorf("%s: descriptor of %s lacks the manifest's annotation %s=%s", what, w.Digest, k, v)
				}
			}
		}
	}
	check("all referrers", list(), sbom, sig)
	check("sbom referrers", list(remote.WithFilter("artifactType", sbomType)), sbom)

	// The registry may filter or leave filtering to the client, but if it
	// says it filtered (OCI-Filters-Applied), it must have.
	x := do(t, client, http.MethodGet, srv.URL+"/v2/"+repo+"/referrers/"+subject.Digest.String()+"?artifactType="+sigType, nil)
	if x.resp.StatusCode != http.StatusOK || x.resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
		t.Fatalf("filtered referrers: want 200 with an OCI index\n%s", x)
	}
	if x.resp.Header.Get("OCI-Filters-Applied") == "artifactType" {
		var im v1.IndexManifest
		if err := json.Unmarshal(x.result, &im); err != nil {
			t.Fatal(err)
		}
		check("server-filtered referrers", im.Manifests, sig)
	}

	// A digest nothing refers to still answers 200, with an empty list.
	nothing := "sha256:" + sha256Hex([]byte(testutil.RandomString(8)))
	x = do(t, client, http.MethodGet, srv.URL+"/v2/"+repo+"/referrers/"+nothing, nil)
	var fields map[string]json.RawMessage
	if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &fields) != nil || string(bytes.TrimSpace(fields["manifests"])) != "[]" {
		t.Errorf("referrers of an unknown digest: want 200 and an index with \"manifests\": []\n%s", x)
	}

	// Deleting a referrer removes it from the list.
	x = do(t, client, http.MethodDelete, srv.URL+"/v2/"+repo+"/manifests/"+sig.Digest.String(), nil)
	if x.resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete referrer: want 202\n%s", x)
	}
	check("referrers after delete", list(), sbom)
}

func partialDescriptor(img v1.Image) (v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}
