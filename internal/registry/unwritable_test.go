package registry

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqliteErr looks like the SQLite driver's errors, which carry a result code.
type sqliteErr int

func (e sqliteErr) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e sqliteErr) Code() int     { return int(e) }

func TestUnwritableErrorNamesTheCause(t *testing.T) {
	tests := []struct {
		name string
		err  error
		part string
		msg  string
	}{
		{"blob store full", fmt.Errorf("append to upload: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), "storage", "blob storage is full"},
		{"blob store quota", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, "storage", "blob storage is full"},
		{"blob store read-only", &fs.PathError{Op: "mkdir", Path: "x", Err: syscall.EROFS}, "storage", "blob storage is read-only"},
		{"database full", fmt.Errorf("commit: %w", sqliteErr(13)), "database", "the registry's database is full"},
		{"database read-only", fmt.Errorf("commit: %w", sqliteErr(8)), "database", "the registry's database is read-only"},
		{"database busy", sqliteErr(5), "", ""},
		{"anything else", errors.New("boom"), "", ""},
	}
	for _, tt := range tests {
		e, part := unwritableError(tt.err)
		if tt.part == "" {
			if e != nil {
				t.Errorf("%s: %v, want no such answer", tt.name, e)
			}
			continue
		}
		if e == nil || part != tt.part || e.Code.Status != http.StatusInsufficientStorage || e.Code.Name != "UNAVAILABLE" || !strings.HasPrefix(e.Message, tt.msg) {
			t.Errorf("%s: %v (part %q), want 507 UNAVAILABLE %q from %s", tt.name, e, part, tt.msg, tt.part)
		}
	}
}

// TestUnavailableDatabaseIs503: a database that cannot be reached gets 503
// with Retry-After, not 500, since a retry will likely succeed.
func TestUnavailableDatabaseIs503(t *testing.T) {
	rg := New(Options{})
	for _, err := range []error{
		fmt.Errorf("read manifest: %w", driver.ErrBadConn),
		fmt.Errorf("read manifest: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}),
		fmt.Errorf("commit: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}),
	} {
		w := httptest.NewRecorder()
		rg.writeErr(w, httptest.NewRequest("GET", "/v2/app/manifests/latest", nil), err)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "UNAVAILABLE") {
			t.Errorf("%v: %d %q (Retry-After %q), want 503 UNAVAILABLE with Retry-After", err, w.Code, w.Body, w.Header().Get("Retry-After"))
		}
	}
	w := httptest.NewRecorder()
	rg.writeErr(w, httptest.NewRequest("GET", "/v2/", nil), errors.New("boom"))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("another error: %d, want 500", w.Code)
	}
}
