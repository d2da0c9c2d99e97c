package meta_test

import (
	"context"
	"testing"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/meta/metatest"
	"github.com/berth-registry/berth/internal/sqldb"
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
