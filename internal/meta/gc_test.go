package meta

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestUnlinkRechecksInWriteTransaction changes a repository between the
// read that picks garbage links and the write that removes them, as a push
// running beside a collection does: what became referenced meanwhile stays.
func TestUnlinkRechecksInWriteTransaction(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	s.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })

	cfg, layer, relinked, garbage := digest.FromString("{}"), digest.FromString("layer"), digest.FromString("relinked"), digest.FromString("garbage")
	for _, d := range []digest.Digest{cfg, layer, relinked, garbage} {
		if err := s.LinkBlob(ctx, "app", d, 1); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(int64(2 * time.Hour))
	cutoff := s.now().Add(-time.Hour)

	c, err := s.unlinkCandidates(ctx, "app", cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.links) != 4 {
		t.Fatalf("candidates %v, want all four links", c.links)
	}
	// Meanwhile: a manifest that needs cfg and layer, and a re-push of relinked.
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + layer.String() + `","size":1}]}`
	if err := s.PutManifest(ctx, PutManifestRequest{Repository: "app", Requires: []digest.Digest{cfg, layer}, Manifest: Manifest{
		Digest: digest.FromString(man), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(man)), Content: []byte(man)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkBlob(ctx, "app", relinked, 1); err != nil {
		t.Fatal(err)
	}

	// In batches, as UnlinkUnreferenced removes them: the manifest parsed
	// in the first batch must protect the links of the later ones too.
	var removed []digest.Digest
	for _, batch := range [][]BlobLink{c.links[:1], c.links[1:2], c.links[2:]} {
		r, err := s.unlinkStale(ctx, "app", cutoff, batch, &c)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range r {
			removed = append(removed, l.Digest)
		}
	}
	if !slices.Equal(removed, []digest.Digest{garbage}) {
		t.Fatalf("removed %v, want only %s", removed, garbage)
	}
	for _, d := range []digest.Digest{cfg, layer, relinked} {
		if _, err := s.Blob(ctx, "app", d); err != nil {
			t.Errorf("link %s removed: %v", d, err)
		}
	}
}

// TestReferenceBlob refreshes a link's last reference, and answers
// ErrBlobNotFound where there is no link.
func TestReferenceBlob(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	s.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	d := digest.FromString("layer")
	if err := s.LinkBlob(ctx, "app", d, 5); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Hour))
	if err := s.ReferenceBlob(ctx, "app", d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UnlinkUnreferenced(ctx, s.now().Add(-time.Hour), false); err != nil || len(got) != 0 {
		t.Fatalf("collected a link referenced just now: %v %v", got, err)
	}
	for _, tc := range []struct{ repo, digest string }{{"app", digest.FromString("other").String()}, {"nowhere", d.String()}} {
		if err := s.ReferenceBlob(ctx, tc.repo, digest.Digest(tc.digest)); !errors.Is(err, ErrBlobNotFound) {
			t.Errorf("ReferenceBlob(%s, %s) = %v, want ErrBlobNotFound", tc.repo, tc.digest, err)
		}
	}
}
