package testutil

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
)

// Stores are what berth's faces are built on, for tests of one face
// without the whole server: a SQLite metadata store in a temporary
// directory, the audit log and the identity service over it.
type Stores struct {
	Meta     *meta.Store
	Audit    *audit.Log
	Identity *identity.Service
}

// NewStores opens Stores whose first owner user, OwnerUsername, has the
// password ownerPassword; options, if given, change the identity service's
// other options (a clock, token lifetimes). Everything is closed when the
// test ends.
func NewStores(t testing.TB, ownerPassword string, options ...func(*identity.Options)) *Stores {
	t.Helper()
	ctx := context.Background()
	store, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.DiscardHandler)
	if err := audit.Migrate(ctx, store.Database()); err != nil {
		t.Fatal(err)
	}
	al := audit.New(store.Database(), log)
	t.Cleanup(al.Close)
	o := identity.Options{OwnerPassword: ownerPassword, Audit: al, Logger: log, Console: io.Discard}
	for _, f := range options {
		f(&o)
	}
	ids, err := identity.Open(ctx, store.Database(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ids.Close)
	return &Stores{Meta: store, Audit: al, Identity: ids}
}
