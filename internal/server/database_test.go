package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestServeOnPostgres: with --database postgres://..., the metadata store
// is brought up on PostgreSQL, and serving is then refused with a message
// naming what cannot run there yet, without the URL's password.
func TestServeOnPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	u, err := url.Parse(pg.NewDatabase())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(pg.User, "pw-not-to-log") // loopback trusts it anyway
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Database = u.String()
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err == nil {
		srv.Close()
		t.Fatal("serving on PostgreSQL started, though identities and the audit log cannot live there yet")
	}
	if !errors.Is(err, server.ErrDatabaseNotSupported) || !strings.Contains(err.Error(), "identities") || !strings.Contains(err.Error(), "audit log") {
		t.Errorf("error %q does not say what is not supported", err)
	}
	if strings.Contains(err.Error(), "pw-not-to-log") {
		t.Errorf("error shows the password: %v", err)
	}
	db, err := sqldb.Open(context.Background(), cfg.Database, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Version(context.Background(), "meta"); err != nil || v != meta.SchemaVersion(sqldb.Postgres) {
		t.Errorf("metadata schema on PostgreSQL at version %d, %v; want %d", v, err, meta.SchemaVersion(sqldb.Postgres))
	}

	// A server that is down is named, without the password, and nothing starts.
	pg.Stop()
	defer pg.Start()
	_, err = server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err == nil || strings.Contains(err.Error(), "pw-not-to-log") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("with the database down: %v; want an error naming the server without the password", err)
	}
}
