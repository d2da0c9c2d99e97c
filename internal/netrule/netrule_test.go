package netrule_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

// node opens the rules and an identity service on the database at place,
// as berth serve does; a second call with the same place is a restart.
func node(t *testing.T, engine sqldb.Engine, place string, denied *[]*netrule.Denied) (*netrule.Service, *identity.Service) {
	t.Helper()
	ctx := context.Background()
	setting := ""
	if engine == sqldb.Postgres {
		setting = place
	}
	db, err := sqldb.Open(ctx, setting, place)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if err := identity.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	rules, err := netrule.Open(ctx, db, netrule.Options{OnDenied: func(_ *http.Request, d *netrule.Denied) { *denied = append(*denied, d) }})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.Open(ctx, db, identity.Options{OwnerPassword: "owner password 123", Console: io.Discard,
		Logger: slog.New(slog.DiscardHandler), Extensions: []identity.Extension{rules}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ids.Close)
	rules.Attach(ids)
	return rules, ids
}

func TestSQLite(t *testing.T) {
	dir := t.TempDir()
	testRules(t, sqldb.SQLite, func() string { return dir })
}

func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase()
	testRules(t, sqldb.Postgres, func() string { return url })
}

func testRules(t *testing.T, engine sqldb.Engine, place func() string) {
	ctx := context.Background()
	var denied []*netrule.Denied
	rules, ids := node(t, engine, place(), &denied)
	if _, _, err := ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "_repositories_pull"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.AddRules(ctx, owner, []string{"10.1.0.0/16", "::ffff:192.0.2.0/120", "2001:db8::/32", "10.1.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.SetTokenAddresses(ctx, owner, "ci-token", []string{"10.1.2.0/24"}); err != nil {
		t.Fatal(err)
	}

	// Refusals of the management rights, and of bad input, change nothing.
	reader := auth.Identity{Kind: auth.KindUser, Name: "r", Role: auth.RoleReader}
	if _, err := rules.AddRules(ctx, reader, []string{"0.0.0.0/0"}); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("a reader adds a rule: %v", err)
	}
	if _, err := rules.SetDefaultAction(ctx, reader, netrule.Allow); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("a reader sets the default action: %v", err)
	}
	if _, err := rules.Settings(reader); err != nil {
		t.Errorf("a reader reads the rules: %v", err)
	}
	if _, err := rules.AddRules(ctx, owner, []string{"10.9.0.0/16", "bad"}); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("a bad rule: %v", err)
	}
	if _, err := rules.RemoveRules(ctx, owner, []string{"2001:db8::/32", "10.8.0.0/16"}); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("removing a rule that is not there: %v", err)
	}

	check := func(rules *netrule.Service, when string) {
		t.Helper()
		s, err := rules.Settings(owner)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range s.IPRules {
			got = append(got, r.IPAddressOrRange)
		}
		if s.DefaultAction != netrule.Deny || strings.Join(got, " ") != "10.1.0.0/16 192.0.2.0/24 2001:db8::/32" {
			t.Errorf("%s: settings %s %v", when, s.DefaultAction, got)
		}
		r := httptest.NewRequest("GET", "/v2/", nil)
		for _, tt := range []struct {
			ip   string
			want bool
		}{
			{"10.1.200.1", true}, {"::ffff:10.1.0.9", true}, {"192.0.2.255", true}, {"2001:db8:1::1", true},
			{"10.2.0.1", false}, {"192.0.3.1", false}, {"2001:db9::1", false}, {"garbage", false}, {"", false},
		} {
			if err := rules.CheckRegistry(r, tt.ip); (err == nil) != tt.want {
				t.Errorf("%s: CheckRegistry(%q) = %v, want allowed %v", when, tt.ip, err, tt.want)
			}
		}
		if err := rules.CheckToken(r, "ci-token", "::ffff:10.1.2.3"); err != nil {
			t.Errorf("%s: the token from an allowed address: %v", when, err)
		}
		var d *netrule.Denied
		if err := rules.CheckToken(r, "ci-token", "10.1.3.1"); !errors.As(err, &d) || d.Error() != "client address 10.1.3.1 is not allowed for token ci-token" {
			t.Errorf("%s: the token from elsewhere: %v", when, err)
		}
		if err := rules.CheckToken(r, "other-token", "203.0.113.1"); err != nil {
			t.Errorf("%s: a token without allowed addresses: %v", when, err)
		}
	}
	check(rules, "after the changes")
	if len(denied) == 0 || denied[0].Addr != "10.2.0.1" {
		t.Errorf("OnDenied was told %v", denied)
	}
	// What is stored is what a restart (or another node) loads.
	again, _ := node(t, engine, place(), &denied)
	check(again, "after a restart")
}
