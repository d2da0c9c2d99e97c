package gc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

func TestCollect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	put := func(repo, content string) digest.Digest {
		d := digest.FromString(content)
		if _, err := blobs.Put(ctx, d, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if err := md.LinkBlob(ctx, repo, d, int64(len(content))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg, kept, orphan, shared := put("app", "{}"), put("app", "kept layer"), put("app", "orphan layer"), put("app", "shared layer")
	put("other", "shared layer")
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + kept.String() + `","size":10}]}`
	if err := md.PutManifest(ctx, meta.PutManifestRequest{Repository: "app", Tags: []string{"v1"}, Manifest: meta.Manifest{
		Digest: digest.FromString(man), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(man)), Content: []byte(man)}}); err != nil {
		t.Fatal(err)
	}

	// Everything is younger than the grace period: nothing goes.
	r, err := gc.Collect(ctx, md, blobs, gc.Options{})
	if err != nil || len(r.UnlinkedBlobs) != 0 || len(r.DeletedBlobs) != 0 {
		t.Fatalf("young content collected: %+v %v", r, err)
	}

	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	dry, err := gc.Collect(ctx, md, blobs, gc.Options{DryRun: true, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	r, err = gc.Collect(ctx, md, blobs, gc.Options{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	// "orphan" is referenced by no manifest; "shared" is unreferenced in
	// app but every link of "other" is unreferenced too (no manifests there).
	if len(r.UnlinkedBlobs) != 3 {
		t.Fatalf("unlinked %+v, want orphan and shared in app, shared in other", r.UnlinkedBlobs)
	}
	if len(r.DeletedBlobs) != 2 || r.FreedBytes != int64(len("orphan layer")+len("shared layer")) {
		t.Fatalf("deleted %v (%d bytes)", r.DeletedBlobs, r.FreedBytes)
	}
	if len(dry.UnlinkedBlobs) != len(r.UnlinkedBlobs) || len(dry.DeletedBlobs) != len(r.DeletedBlobs) {
		t.Errorf("dry run said %d/%d, the collection did %d/%d", len(dry.UnlinkedBlobs), len(dry.DeletedBlobs), len(r.UnlinkedBlobs), len(r.DeletedBlobs))
	}
	for _, d := range []digest.Digest{cfg, kept} {
		if _, err := blobs.Stat(ctx, d); err != nil {
			t.Errorf("referenced blob %s deleted: %v", d, err)
		}
		if _, err := md.Blob(ctx, "app", d); err != nil {
			t.Errorf("referenced blob %s unlinked: %v", d, err)
		}
	}
	for _, d := range []digest.Digest{orphan, shared} {
		if _, err := blobs.Stat(ctx, d); err == nil {
			t.Errorf("unreferenced blob %s kept", d)
		}
	}
}
