package server_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestServeOnPostgres: with --database postgres://..., the whole server
// comes up on PostgreSQL (metadata, identities, the audit log), without
// showing the URL's password.
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
	if err != nil {
		t.Fatalf("serving on PostgreSQL: %v", err)
	}
	if !srv.Identity().Following() {
		t.Error("identities on PostgreSQL do not follow other nodes' changes")
	}
	srv.Close()
	db, err := sqldb.Open(context.Background(), cfg.Database, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for c, want := range map[string]int{"meta": meta.SchemaVersion(sqldb.Postgres), "identity": identity.SchemaVersion(sqldb.Postgres), "audit": audit.SchemaVersion(sqldb.Postgres)} {
		if v, err := db.Version(context.Background(), c); err != nil || v != want {
			t.Errorf("%s schema on PostgreSQL at version %d, %v; want %d", c, v, err, want)
		}
	}

	// A server that is down is named, without the password, and nothing starts.
	pg.Stop()
	defer pg.Start()
	_, err = server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err == nil || strings.Contains(err.Error(), "pw-not-to-log") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("with the database down: %v; want an error naming the server without the password", err)
	}
}
