package meta_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/meta/metatest"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

func TestConformanceSQLite(t *testing.T) {
	metatest.Run(t, func(t *testing.T) (*meta.Store, func() *meta.Store) {
		s, err := meta.OpenSQLite(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		// One process owns the embedded database: the "other node" is the
		// same store.
		return s, func() *meta.Store { return s }
	})
}

// TestPostgres runs the conformance suite on one private PostgreSQL
// cluster, each test in a database of its own, with a second node as a
// second store on the same database; and the migrations.
func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	t.Run("Migrations", func(t *testing.T) { testPostgresMigrations(t, pg.NewDatabase()) })
	t.Run("MigrationsFromEveryVersion", func(t *testing.T) {
		for k := range len(meta.PostgresMigrations) {
			t.Run(fmt.Sprint("from", k), func(t *testing.T) { testPostgresFrom(t, pg.NewDatabase(), k) })
		}
	})
	t.Run("Conformance", func(t *testing.T) { conformancePostgres(t, pg) })
}

func conformancePostgres(t *testing.T, pg *testutil.Postgres) {
	metatest.Run(t, func(t *testing.T) (*meta.Store, func() *meta.Store) {
		url := pg.NewDatabase()
		open := func() *meta.Store {
			db, err := sqldb.OpenPostgres(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			s, err := meta.Open(context.Background(), db)
			if err != nil {
				db.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	})
}

// testPostgresMigrations applies the schema to an empty database from
// several nodes starting at once, then opens it again: each step runs once
// and a re-open changes nothing.
func testPostgresMigrations(t *testing.T, url string) {
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			db, err := sqldb.OpenPostgres(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			s, err := meta.Open(ctx, db)
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent first open: %v", err)
		}
	}
	db, err := sqldb.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for component, want := range map[string]int{"meta": meta.SchemaVersion(sqldb.Postgres), "sqldb": 1} {
		v, err := db.Version(ctx, component)
		if err != nil || v != want {
			t.Errorf("%s schema version = %d, %v; want %d", component, v, err, want)
		}
		var n int
		table := map[string]string{"meta": "schema_migrations", "sqldb": "schema_migrations_sqldb"}[component]
		if err := db.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil || n != want {
			t.Errorf("%s holds %d versions, %v; want %d (each step once)", table, n, err, want)
		}
	}
}

// testPostgresFrom builds a database at schema version k with rows valid
// there, opens it with the current code and reads them back.
func testPostgresFrom(t *testing.T, url string, k int) {
	ctx := context.Background()
	db, err := sqldb.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "meta", meta.PostgresMigrations[:k]); err != nil {
		t.Fatal(err)
	}
	man := digest.FromString("{}")
	if k >= 1 {
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO repositories(name, created_at, list_enabled) VALUES (?, ?, ?)`, []any{"team/app", 1000, false}},
			{`INSERT INTO repository_blobs(repository_id, digest, size, created_at, referenced_at) SELECT id, ?, 42, 1000, 1000 FROM repositories`, []any{digest.FromString("layer").String()}},
			{`INSERT INTO manifests(repository_id, digest, media_type, size, content, created_at, write_enabled, summary) SELECT id, ?, ?, 2, ?, 2000, ?, ? FROM repositories`,
				[]any{man.String(), "application/vnd.oci.image.manifest.v1+json", []byte("{}"), false, `{"size":2}`}},
			{`INSERT INTO tags(repository_id, name, digest, updated_at) SELECT id, 'v1', ?, 2000 FROM repositories`, []any{man.String()}},
			{`INSERT INTO uploads(id, repository, owner, state, size, started_at, updated_at) VALUES ('u1', 'team/app', 'owner', ?, 5, 1000, 3000)`, []any{[]byte{1, 2}}},
		} {
			if _, err := db.W().ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatalf("fixture at version %d: %v\n%s", k, err, q.sql)
			}
		}
	}
	db.Close()
	db, err = sqldb.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatalf("open at version %d: %v", k, err)
	}
	defer s.Close()
	if v, err := db.Version(ctx, "meta"); err != nil || v != meta.SchemaVersion(sqldb.Postgres) {
		t.Fatalf("version %d, %v; want %d", v, err, meta.SchemaVersion(sqldb.Postgres))
	}
	if k >= 1 {
		r, err := s.Repository(ctx, "team/app")
		if err != nil || r.Attributes.ListEnabled || !r.Attributes.WriteEnabled {
			t.Errorf("repository = %+v, %v", r, err)
		}
		m, err := s.Manifest(ctx, "team/app", "v1")
		if err != nil || m.Digest != man || string(m.Content) != "{}" || m.Attributes.WriteEnabled || m.Summary.Size != 2 {
			t.Errorf("manifest = %+v, %v", m, err)
		}
		if n, err := s.Blob(ctx, "team/app", digest.FromString("layer")); err != nil || n != 42 {
			t.Errorf("blob = %d, %v", n, err)
		}
		u, err := s.ClaimUpload(ctx, "u1", "token", time.Minute)
		if err != nil || u.Size != 5 || string(u.State) != "\x01\x02" {
			t.Errorf("claim of a session from version %d = %+v, %v", k, u, err)
		}
	}
	if err := s.CreateUpload(ctx, meta.Upload{ID: "new", Repository: "team/app", Owner: "owner"}, storage.UploadLimits{}); err != nil {
		t.Errorf("CreateUpload: %v", err)
	}
}

// BenchmarkManifestPostgres reads a manifest by tag from PostgreSQL, the
// pull path's query when a node has no cache.
func BenchmarkManifestPostgres(b *testing.B) {
	ctx := context.Background()
	pg := testutil.StartPostgres(b)
	db, err := sqldb.OpenPostgres(ctx, pg.NewDatabase())
	if err != nil {
		b.Fatal(err)
	}
	s, err := meta.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	content := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(content)
	if err := s.PutManifest(ctx, meta.PutManifestRequest{Repository: "team/app", Tags: []string{"latest"},
		Manifest: meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Manifest(ctx, "team/app", "latest"); err != nil {
			b.Fatal(err)
		}
	}
}
