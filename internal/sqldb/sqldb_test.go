package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, postgres string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?`, `SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3`},
		{`SELECT '?', "x?y", ? FROM t WHERE s = 'it''s ?' AND u = ?`, `SELECT '?', "x?y", $1 FROM t WHERE s = 'it''s ?' AND u = $2`},
		{"SELECT a FROM t INDEXED BY t_list\n\t\tJOIN u INDEXED  BY u_x ON u.id = t.id WHERE a = ?", "SELECT a FROM t\n\t\tJOIN u ON u.id = t.id WHERE a = $1"},
	} {
		if got := sqldb.NewDialect(sqldb.SQLite).Rebind(tc.in); got != tc.in {
			t.Errorf("SQLite Rebind(%q) = %q", tc.in, got)
		}
		d := sqldb.NewDialect(sqldb.Postgres)
		for range 2 { // the second from the cache
			if got := d.Rebind(tc.in); got != tc.postgres {
				t.Errorf("PostgreSQL Rebind(%q) = %q, want %q", tc.in, got, tc.postgres)
			}
		}
	}
}

// TestRebindCacheIsBounded: queries built with values in them (a mistake)
// cannot grow the cache without end, and are still rewritten right.
func TestRebindCacheIsBounded(t *testing.T) {
	d := sqldb.NewDialect(sqldb.Postgres)
	for i := range 10000 {
		q := fmt.Sprintf("SELECT a FROM t WHERE b = ? LIMIT %d", i)
		if got, want := d.Rebind(q), fmt.Sprintf("SELECT a FROM t WHERE b = $1 LIMIT %d", i); got != want {
			t.Fatalf("Rebind = %q, want %q", got, want)
		}
	}
	if n := d.Cached(); n > 4096 {
		t.Errorf("%d queries cached, want at most 4096", n)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://berth:s3cret@db:5432/berth?sslmode=require", "postgres://berth:xxxxx@db:5432/berth?sslmode=require"},
		{"postgres://db/berth?user=berth&password=s3cret", "postgres://db/berth?password=xxxxx&user=berth"},
		{"postgres://berth@db/berth", "postgres://berth@db/berth"},
	} {
		if got := sqldb.Redact(tc.in); got != tc.want {
			t.Errorf("sqldb.Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestOpenNamesNoPassword: a database that cannot be opened is named in
// the error without its password.
func TestOpenNamesNoPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, setting := range []string{
		"mysql://berth:s3cret@127.0.0.1/berth",
		"postgres://berth:s3cret@127.0.0.1:1/berth?sslmode=disable&connect_timeout=5",
		"postgres://berth:s3cret@127.0.0.1:1/berth?sslmode=bogus",
	} {
		_, err := sqldb.Open(ctx, setting, t.TempDir())
		if err == nil {
			t.Fatalf("sqldb.Open(%s) succeeded", setting)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open error shows the password: %v", err)
		}
	}
}

func TestSQLite(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Engine() != sqldb.SQLite {
		t.Fatalf("engine %v", db.Engine())
	}
	testEngine(t, db)
}

func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	ctx := context.Background()
	open := func(url string) *sqldb.DB {
		db, err := sqldb.Open(ctx, url, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	t.Run("Engine", func(t *testing.T) { testEngine(t, open(pg.NewDatabase())) })
	t.Run("ChangeOrderIsCommitOrder", func(t *testing.T) {
		url := pg.NewDatabase()
		testChangeOrder(t, open(url), open(url))
	})
	t.Run("ReadOnly", func(t *testing.T) {
		db := open(pg.NewDatabase())
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET TRANSACTION READ ONLY`); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `CREATE TABLE x (a INTEGER)`)
			return err
		})
		if !sqldb.IsReadOnly(err) || sqldb.IsUnavailable(err) {
			t.Errorf("write in a read-only transaction: %v; IsReadOnly %v, IsUnavailable %v", err, sqldb.IsReadOnly(err), sqldb.IsUnavailable(err))
		}
	})
	t.Run("Unavailable", func(t *testing.T) {
		db := open(pg.NewDatabase())
		pg.Stop()
		defer pg.Start()
		err := db.Ping(ctx)
		if err == nil || !sqldb.IsUnavailable(err) {
			t.Fatalf("Ping with the server down = %v, sqldb.IsUnavailable %v; want true", err, sqldb.IsUnavailable(err))
		}
		_, err = db.W().ExecContext(ctx, `SELECT 1`)
		if !sqldb.IsUnavailable(err) {
			t.Errorf("query with the server down: %v not unavailable", err)
		}
	})
}

// testEngine checks the dialect's error classes and the migration runner
// on an open database.
func testEngine(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	steps := []string{
		`CREATE TABLE things (id ` + db.Dialect().IDType() + `, name TEXT NOT NULL UNIQUE, data ` + db.Dialect().BlobType() + `, ok ` + db.Dialect().BoolType() + `, n ` + db.Dialect().BigintType() + `)`,
		`ALTER TABLE things ADD COLUMN extra TEXT NOT NULL DEFAULT ''`,
	}
	for range 2 { // the second run applies nothing
		if err := db.Migrate(ctx, "test", steps); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := db.Version(ctx, "test"); err != nil || v != 2 {
		t.Fatalf("version = %d, %v", v, err)
	}
	if _, err := db.W().ExecContext(ctx, `INSERT INTO things(name, data, ok, n) VALUES (?, ?, ?, ?)`, "a", []byte{0, 1}, true, int64(1)<<40); err != nil {
		t.Fatal(err)
	}
	_, err := db.W().ExecContext(ctx, `INSERT INTO things(name) VALUES (?)`, "a")
	if !sqldb.IsUniqueViolation(err) {
		t.Errorf("duplicate insert: %v, sqldb.IsUniqueViolation false", err)
	}
	if sqldb.IsUnavailable(err) || sqldb.IsDiskFull(err) {
		t.Errorf("a constraint failure counts as unavailable or disk full")
	}
	var data []byte
	var ok bool
	var n int64
	if err := db.R().QueryRowContext(ctx, `SELECT data, ok, n FROM things WHERE name = ?`, "a").Scan(&data, &ok, &n); err != nil || string(data) != "\x00\x01" || !ok || n != 1<<40 {
		t.Errorf("read back %v %v %d, %v", data, ok, n, err)
	}
	// A failing step leaves the schema at the version before it.
	bad := append(steps, `CREATE TABLE broken (`)
	if err := db.Migrate(ctx, "test", bad); err == nil {
		t.Error("a broken migration succeeded")
	}
	if v, _ := db.Version(ctx, "test"); v != 2 {
		t.Errorf("version %d after a failed step, want 2", v)
	}
	// InTx rolls back on error.
	boom := errors.New("boom")
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO things(name) VALUES (?)`, "b"); err != nil {
			return err
		}
		return boom
	})
	var count int
	db.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM things`).Scan(&count)
	if !errors.Is(err, boom) || count != 1 {
		t.Errorf("InTx = %v with %d rows, want boom and 1", err, count)
	}
}

// testChangeOrder holds a transaction that has appended a change open,
// while another node appends and commits one: the second must wait for the
// first, or a reader could see sequence number 2 committed while 1 is still
// to come, and skip 1 for good.
func testChangeOrder(t *testing.T, a, b *sqldb.DB) {
	ctx := context.Background()
	tx, err := a.W().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqldb.AppendChange(ctx, tx, sqldb.Change{Kind: "first", Repository: "a"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- b.InTx(ctx, func(tx *sqldb.Tx) error {
			return sqldb.AppendChange(ctx, tx, sqldb.Change{Kind: "second", Repository: "b"})
		})
	}()
	// Wait until the second append either finishes (wrong) or waits for a
	// lock (right).
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			tx.Rollback()
			t.Fatalf("a change committed (%v) while an earlier one was still open", err)
		default:
		}
		var n int
		if err := a.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		waiting = n > 0
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cs, err := b.Changes(ctx, 0, 10)
	if err != nil || len(cs) != 2 || cs[0].Kind != "first" || cs[1].Kind != "second" || cs[0].Seq >= cs[1].Seq {
		t.Fatalf("changes = %+v, %v", cs, err)
	}
}
