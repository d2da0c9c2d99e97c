package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestUnwritable takes its SQLite errors from a real database: one that may
// not grow (what a full disk looks like to SQLite) and one opened read-only.
func TestUnwritable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v BLOB); PRAGMA max_page_count = 3`); err != nil {
		t.Fatal(err)
	}
	var full error
	for range 100 {
		if _, full = db.ExecContext(ctx, `INSERT INTO t VALUES (randomblob(4000))`); full != nil {
			break
		}
	}
	if full == nil || !strings.Contains(full.Error(), "full") {
		t.Fatalf("a database that may not grow took every insert: %v", full)
	}
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, readOnly := ro.ExecContext(ctx, `DELETE FROM t`)
	if readOnly == nil {
		t.Fatal("a read-only database took a write")
	}
	_, syntax := db.ExecContext(ctx, `SELEC 1`)

	tests := []struct {
		name string
		err  error
		want error
	}{
		{"SQLITE_FULL", fmt.Errorf("commit: %w", full), ErrNoSpace},
		{"SQLITE_READONLY", fmt.Errorf("put manifest: %w", readOnly), ErrReadOnly},
		{"ENOSPC", fmt.Errorf("x: %w", syscall.ENOSPC), ErrNoSpace},
		{"EROFS", fmt.Errorf("x: %w", syscall.EROFS), ErrReadOnly},
		{"syntax error", syntax, nil},
		{"not found", ErrRepositoryNotFound, nil},
		{"other", errors.New("boom"), nil},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		if got := Unwritable(tt.err); got != tt.want {
			t.Errorf("%s (%v): %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestUnwritablePostgres: PostgreSQL's disk_full and read-only refusals are
// the same causes as SQLite's.
func TestUnwritablePostgres(t *testing.T) {
	for _, tc := range []struct {
		code string
		want error
	}{
		{"53100", ErrNoSpace},  // disk_full
		{"25006", ErrReadOnly}, // read_only_sql_transaction
		{"23505", nil},         // unique_violation
	} {
		err := fmt.Errorf("commit: %w", &pgconn.PgError{Code: tc.code})
		if got := Unwritable(err); got != tc.want {
			t.Errorf("Unwritable(SQLSTATE %s) = %v, want %v", tc.code, got, tc.want)
		}
	}
}
