package api

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
)

// TestManifestPlatforms: the manifest view carries the image's platform
// that the registry recorded at push time, and none when it is unknown.
func TestManifestPlatforms(t *testing.T) {
	f := newFixture(t)
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	d := digest.FromBytes(content)
	if err := f.store.PutManifest(context.Background(), meta.PutManifestRequest{Repository: "team/app", Tags: []string{"arm"}, Platform: "linux/arm64",
		Manifest: meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		t.Fatal(err)
	}
	other := f.putManifest("team/app", "plain")
	for ref, want := range map[string][]string{"arm": {"linux/arm64"}, other.String(): nil} {
		man := decodeAs[ManifestInfo](t, f.must(http.StatusOK, "owner", "GET", "/api/v1/repositories/team/app/_manifests/"+ref, nil))
		if !slices.Equal(man.Manifest.Platforms, want) {
			t.Errorf("%s: platforms %q, want %q", ref, man.Manifest.Platforms, want)
		}
	}
}
