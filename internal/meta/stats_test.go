package meta_test

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestRepositoryStats: each repository's size (its blobs and manifests),
// last push and manifest count, and the storage used counting a blob
// shared by two repositories once; on SQLite and PostgreSQL.
func TestRepositoryStats(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		s, err := meta.OpenSQLite(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		testStats(t, s)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		pg := testutil.StartPostgres(t)
		db, err := sqldb.OpenPostgres(context.Background(), pg.NewDatabase())
		if err != nil {
			t.Fatal(err)
		}
		s, err := meta.Open(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		testStats(t, s)
	})
}

func testStats(t *testing.T, s *meta.Store) {
	ctx := context.Background()
	shared := digest.FromString("shared layer")
	put := func(repo string, blobs map[digest.Digest]int64, manifest string) {
		t.Helper()
		for d, n := range blobs {
			if err := s.LinkBlob(ctx, repo, d, n); err != nil {
				t.Fatal(err)
			}
		}
		b := []byte(manifest)
		if err := s.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Tags: []string{"v1"}, Manifest: meta.Manifest{
			Digest: digest.FromBytes(b), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(b)), Content: b}}); err != nil {
			t.Fatal(err)
		}
	}
	put("a/app", map[digest.Digest]int64{shared: 1000, digest.FromString("a"): 10}, `{"schemaVersion":2,"a":1}`)
	put("b/app", map[digest.Digest]int64{shared: 1000}, `{"schemaVersion":2,"b":22}`)
	all, err := s.AllRepositoryStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "a/app" || all[1].Name != "b/app" {
		t.Fatalf("stats: %+v", all)
	}
	a, b := all[0], all[1]
	if a.Size != 1010+int64(len(`{"schemaVersion":2,"a":1}`)) || b.Size != 1000+int64(len(`{"schemaVersion":2,"b":22}`)) {
		t.Errorf("sizes %d and %d", a.Size, b.Size)
	}
	if a.Manifests != 1 || a.LastPushed.IsZero() || a.CreatedAt.IsZero() || !a.Listed {
		t.Errorf("a/app: %+v", a)
	}
	used, err := s.StorageUsed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1010 + len(`{"schemaVersion":2,"a":1}`) + len(`{"schemaVersion":2,"b":22}`)); used != want {
		t.Errorf("storage used %d, want %d (the shared blob once)", used, want)
	}
}
