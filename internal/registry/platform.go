package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
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
	p, _ := readPlatform(ctx, rg.blobs, m)
	return p
}

// readPlatform is imagePlatform, with an error when the config could not
// be read for a reason that may pass (storage unavailable): a config that
// is missing, damaged or no image config names no platform, without error.
func readPlatform(ctx context.Context, blobs Blobs, m meta.Manifest) (string, error) {
	if !imageTypes[m.MediaType] {
		return "", nil
	}
	var doc struct {
		Config *struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"config"`
	}
	if json.Unmarshal(m.Content, &doc) != nil || doc.Config == nil {
		return "", nil
	}
	c := doc.Config
	if c.MediaType != ocispec.MediaTypeImageConfig && c.MediaType != mediaTypeDockerConfig || c.Size <= 0 || c.Size > maxConfigRead || c.Digest.Validate() != nil {
		return "", nil
	}
	f, err := blobs.Open(ctx, c.Digest)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigRead+1))
	if err != nil {
		return "", err
	}
	// The content is trusted only if it is the blob the manifest names.
	if int64(len(b)) != c.Size || c.Digest.Algorithm().FromBytes(b) != c.Digest {
		return "", nil
	}
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(b, &cfg) != nil || cfg.OS == "" || cfg.Architecture == "" {
		return "", nil
	}
	p := cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		p += "/" + cfg.Variant
	}
	// A platform is shown as a short label; a config with kilobytes of
	// "architecture" is not one.
	if len(p) > 64 {
		return "", nil
	}
	return p, nil
}

// PlatformFiller is what FillPlatforms needs of the metadata store.
type PlatformFiller interface {
	PlatformFills(ctx context.Context, n int) ([]meta.PlatformFill, error)
	FillPlatform(ctx context.Context, repo string, d digest.Digest, platform string) error
}

// FillPlatforms records the platforms of the images stored before pushes
// recorded them, reading each config from blobs, until none is left (a
// database from before holds a list of them; a new one, none). Several
// nodes may run it at once: each entry ends the same whoever fills it.
func FillPlatforms(ctx context.Context, blobs Blobs, md PlatformFiller) error {
	for {
		todo, err := md.PlatformFills(ctx, 100)
		if err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
		for _, f := range todo {
			p, err := readPlatform(ctx, blobs, f.Manifest)
			if err != nil {
				// Left on the list for the next start.
				return fmt.Errorf("read the config of %s@%s: %w", f.Repository, f.Manifest.Digest, err)
			}
			if err := md.FillPlatform(ctx, f.Repository, f.Manifest.Digest, p); err != nil {
				return fmt.Errorf("fill the platform of %s@%s: %w", f.Repository, f.Manifest.Digest, err)
			}
		}
	}
}
