package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestPostgres: the audit log on PostgreSQL writes, folds, lists, takes
// records in the caller's transaction and prunes as on SQLite.
func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, pg.NewDatabase(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 2 { // the second applies nothing
		if err := audit.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := db.Version(ctx, "audit"); err != nil || v != audit.SchemaVersion(sqldb.Postgres) {
		t.Fatalf("audit schema at %d, %v", v, err)
	}
	now := time.Now()
	l := audit.Open(db, audit.Options{Now: func() time.Time { return now }})
	defer l.Close()
	if err := l.Write(ctx, audit.Event{Kind: audit.KindPush, Result: audit.ResultSuccess, Identity: "ci", Repository: "app", Tag: "v1"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.Record(audit.Event{Kind: audit.KindLogin, Result: audit.ResultFailure, Identity: "ci", CallerIP: "127.0.0.9", Reason: "wrong password"})
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		return l.InsertTx(ctx, tx, audit.Event{Kind: audit.KindPermission, Result: audit.ResultSuccess, Identity: "owner", Target: "token ci"})
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.List(ctx, audit.Filter{Identity: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Kind != audit.KindLogin || got[0].Count != 3 || got[1].Tag != "v1" {
		t.Fatalf("listed %+v; want the folded logins (count 3), then the push", got)
	}
	if perm, err := l.List(ctx, audit.Filter{Kind: audit.KindPermission}); err != nil || len(perm) != 1 || perm[0].Target != "token ci" {
		t.Fatalf("permission records %+v, %v", perm, err)
	}
	pr := audit.Open(db, audit.Options{MaxRecords: 1, PruneInterval: time.Hour})
	defer pr.Close()
	if _, err := pr.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if all, err := l.List(ctx, audit.Filter{}); err != nil || len(all) != 1 {
		t.Fatalf("after pruning to 1 record: %+v, %v", all, err)
	}
}
