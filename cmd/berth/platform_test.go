package main

import (
	"context"
	"regexp"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
)

// TestCLIShowImagePlatform: berth repository show --image prints the
// platform the registry recorded for an image, and no Platforms line for
// a manifest without one.
func TestCLIShowImagePlatform(t *testing.T) {
	srv := startServer(t)
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	if err := srv.store.PutManifest(context.Background(), meta.PutManifestRequest{Repository: "team/app", Tags: []string{"arm"}, Platform: "linux/arm64/v8",
		Manifest: meta.Manifest{Digest: digest.FromBytes(content), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		t.Fatal(err)
	}
	srv.putManifest(t, "team/app", "plain")
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	if out := c.ok("repository", "show", "--image", "team/app:arm"); !regexp.MustCompile(`(?m)^Platforms:\s+linux/arm64/v8$`).MatchString(out) {
		t.Errorf("show --image of an arm64 image:\n%s", out)
	}
	if out := c.ok("repository", "show", "--image", "team/app:plain"); regexp.MustCompile(`Platforms:`).MatchString(out) {
		t.Errorf("show --image of a manifest without a platform:\n%s", out)
	}
}
