package audit_test

import (
	"context"
	"slices"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// testRepositoryScope: Filter.Repositories keeps the events on the
// repositories its patterns match, with '_' and '%' in names taken
// literally, and Own adds that user's own events.
func testRepositoryScope(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	l := audit.Open(db, audit.Options{})
	defer l.Close()
	for _, e := range []audit.Event{
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "team-a/app"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "team-a/sub/app"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "team-a"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "team-ab/app"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "team_a/app"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "teamxa/app"},
		{Kind: audit.KindPush, Identity: "ci", IdentityKind: "token", Repository: "shared/base"},
		{Kind: audit.KindPermission, Identity: "owner", IdentityKind: "user", Target: "user rita"},
		{Kind: audit.KindLogin, Identity: "rita", IdentityKind: "user"},
		{Kind: audit.KindLogin, Identity: "rita", IdentityKind: "token"},
	} {
		e.Result = audit.ResultSuccess
		if err := l.Write(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	names := func(f audit.Filter) []string {
		t.Helper()
		f.Limit = 1000
		evs, err := l.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			out = append(out, e.Repository+"|"+e.Identity)
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		f    audit.Filter
		want []string
	}{
		{audit.Filter{Repositories: []string{"team-a/*"}}, []string{"team-a/app|ci", "team-a/sub/app|ci"}},
		{audit.Filter{Repositories: []string{"team-a/*", "shared/base"}}, []string{"shared/base|ci", "team-a/app|ci", "team-a/sub/app|ci"}},
		{audit.Filter{Repositories: []string{"team-a"}}, []string{"team-a|ci"}},
		{audit.Filter{Repositories: []string{}}, nil},
		{audit.Filter{Repositories: []string{"team-a/*"}, Own: "rita"}, []string{"team-a/app|ci", "team-a/sub/app|ci", "|rita"}},
		{audit.Filter{Repositories: []string{"team_a/*"}}, []string{"team_a/app|ci"}}, // '_' is no wildcard
		{audit.Filter{Repositories: []string{"*"}}, []string{"shared/base|ci", "team-a/app|ci", "team-a/sub/app|ci", "team-ab/app|ci", "team-a|ci", "team_a/app|ci", "teamxa/app|ci"}},
	}
	for _, tt := range tests {
		if got := names(tt.f); !slices.Equal(got, tt.want) {
			t.Errorf("Repositories %q, Own %q: %q, want %q", tt.f.Repositories, tt.f.Own, got, tt.want)
		}
	}
	if got := names(audit.Filter{}); len(got) != 10 {
		t.Errorf("no scope: %d events, want all 10", len(got))
	}
}

func TestRepositoryScopeSQLite(t *testing.T) {
	md, err := meta.OpenSQLite(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if err := audit.Migrate(t.Context(), md.Database()); err != nil {
		t.Fatal(err)
	}
	testRepositoryScope(t, md.Database())
}

func TestRepositoryScopePostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	db, err := sqldb.Open(context.Background(), pg.NewDatabase(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := audit.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	testRepositoryScope(t, db)
}
