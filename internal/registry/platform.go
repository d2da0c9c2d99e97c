package registry

import (
	"context"
	"encoding/json"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/meta"
)

// maxConfigRead bounds the config blob imagePlatform reads: image configs
// are a few kilobytes; a larger "config" is some artifact's data.
const maxConfigRead = 1 << 20

// mediaTypeDockerConfig is Docker's image config, the config of
// mediaTypeDockerManifest images.
const mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"

// imagePlatform returns the platform ("linux/arm64/v8") that an image
// manifest's config names, for its summary, or "" when m is not an image,
// its config is not an image config, or the config cannot be read (the push
// then goes on: the platform is only shown, and PutManifest reports a
// missing config itself).
func (rg *Registry) imagePlatform(ctx context.Context, m meta.Manifest) string {
	if !imageTypes[m.MediaType] {
		return ""
	}
	var doc struct {
		Config *struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"config"`
	}
	if json.Unmarshal(m.Content, &doc) != nil || doc.Config == nil {
		return ""
	}
	c := doc.Config
	if c.MediaType != ocispec.MediaTypeImageConfig && c.MediaType != mediaTypeDockerConfig || c.Size <= 0 || c.Size > maxConfigRead || c.Digest.Validate() != nil {
		return ""
	}
	f, err := rg.blobs.Open(ctx, c.Digest)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigRead+1))
	// The content is trusted only if it is the blob the manifest names.
	if err != nil || int64(len(b)) != c.Size || c.Digest.Algorithm().FromBytes(b) != c.Digest {
		return ""
	}
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(b, &cfg) != nil || cfg.OS == "" || cfg.Architecture == "" {
		return ""
	}
	p := cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		p += "/" + cfg.Variant
	}
	// A platform is shown as a short label; a config with kilobytes of
	// "architecture" is not one.
	if len(p) > 64 {
		return ""
	}
	return p
}
