package meta

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkManifest reads a manifest by tag from the embedded database,
// through the read cache and past it: the pull path's query.
func BenchmarkManifest(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	content := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(content)
	if err := s.PutManifest(ctx, PutManifestRequest{Repository: "team/app", Tags: []string{"latest"},
		Manifest: Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Manifest(ctx, "team/app", "latest"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.readManifest(ctx, "team/app", "latest"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
