package ui

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
)

// TestSingleImagePlatformShown: the platform the registry read from an
// image's config at push time is on the repository page's row of the tag
// and on the manifest page.
func TestSingleImagePlatformShown(t *testing.T) {
	f := newFixture(t)
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromString("cfg").String() + `","size":3},"layers":[]}`)
	d := digest.FromBytes(content)
	if err := f.store.PutManifest(context.Background(), meta.PutManifestRequest{Repository: "solo/app", Tags: []string{"v1"}, Platform: "linux/arm64",
		Manifest: meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn("owner", ownerPassword)
	for _, path := range []string{"/repositories/solo/app", "/repositories/solo/app/-/manifests/" + d.String()} {
		r := b.get(path)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(r.body, `<span class="chip">linux/arm64</span>`) {
			t.Errorf("%s does not show the platform linux/arm64", path)
		}
	}
}
