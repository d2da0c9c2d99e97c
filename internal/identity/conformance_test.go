package identity_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// The identity store's conformance suite: every test runs on the embedded
// SQLite database and on a real PostgreSQL server, with the same
// expectations.

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func grants(t *testing.T, pattern string, acts ...string) []string {
	out, err := auth.RepositoryActions(pattern, acts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// backend is one engine: place makes a fresh database (a directory for
// SQLite, a URL for PostgreSQL) and db opens one, with the metadata and
// audit tables, closed when the test ends.
type backend struct {
	engine sqldb.Engine
	place  func(t *testing.T) string
}

func (b backend) db(t *testing.T, place string) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, map[sqldb.Engine]string{sqldb.Postgres: place}[b.engine], place)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

// service opens an identity service on the database at place (a second
// call with the same place is a second node, or a restart).
func (b backend) service(t *testing.T, place string, clk *clock) *identity.Service {
	t.Helper()
	return b.open(t, b.db(t, place), identity.Options{OwnerPassword: "owner-password-1", Now: clk.now, Console: io.Discard})
}

func (b backend) open(t *testing.T, db *sqldb.DB, o identity.Options) *identity.Service {
	t.Helper()
	s, err := identity.Open(context.Background(), db, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var conformance = []struct {
	name string
	test func(*testing.T, backend)
}{
	{"PasswordExpiry", testPasswordExpiry},
	{"StateSurvivesRestart", testStateSurvivesRestart},
	{"ScopeMapRules", testScopeMapRules},
	{"ManagementPermissions", testManagementPermissions},
	{"NamesAreUniqueAcrossIdentities", testNamesAreUniqueAcrossIdentities},
	{"AdminUser", testAdminUser},
	{"UserLogin", testUserLogin},
	{"ConcurrentChangesMatchDatabase", testConcurrentChangesMatchDatabase},
	{"PermissionChangesAreRecordedInTheirTransaction", testPermissionChangesAreRecordedInTheirTransaction},
	{"DatabaseEnforcesRules", testDatabaseEnforcesRules},
	{"RulesHoldAgainstAStaleNode", testRulesHoldAgainstAStaleNode},
	{"LastOwnerRace", testLastOwnerRace},
	{"SharedNameRace", testSharedNameRace},
	{"SigningKeyRotation", testSigningKeyRotation},
	{"SharedLoginLimits", testSharedLoginLimits},
	{"FollowerMatchesFullLoad", testFollowerMatchesFullLoad},
}

func runConformance(t *testing.T, b backend) {
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

func TestSQLite(t *testing.T) {
	runConformance(t, backend{engine: sqldb.SQLite, place: func(t *testing.T) string { return t.TempDir() }})
}

func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	runConformance(t, backend{engine: sqldb.Postgres, place: func(*testing.T) string { return pg.NewDatabase() }})
}

// testDatabaseEnforcesRules writes past the service, straight to the
// database: it must refuse names that differ only in case, taking away
// the last enabled owner, and deleting a scope map that tokens use.
func testDatabaseEnforcesRules(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	s := b.service(t, place, &clock{t: time.Now()})
	if _, err := s.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "db-map", Actions: grants(t, "app", "content/read")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "db-token", ScopeMap: "db-map"}); err != nil {
		t.Fatal(err)
	}
	db := b.db(t, place)
	for _, tc := range []struct {
		name, sql string
		unique    bool
	}{
		{"user name in another case", `INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('OWNER', 'reader', 'h', TRUE, 1000, 1)`, true},
		{"token name in another case", `INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('DB-Token', 'db-map', TRUE, 1001, 1)`, true},
		{"token named as a user", `INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('Owner', 'db-map', TRUE, 1003, 1)`, true},
		{"user named as a token", `INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('DB-TOKEN', 'reader', 'h', TRUE, 1004, 1)`, true},
		{"scope map name in another case", `INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES ('DB-MAP', '', '[]', 1, 1)`, true},
		{"demote the last owner", `UPDATE users SET role = 'reader' WHERE name = 'owner'`, false},
		{"disable the last owner", `UPDATE users SET enabled = FALSE WHERE name = 'owner'`, false},
		{"delete the last owner", `DELETE FROM users WHERE name = 'owner'`, false},
		{"delete a scope map in use", `DELETE FROM scope_maps WHERE name = 'db-map'`, false},
	} {
		_, err := db.W().ExecContext(ctx, tc.sql)
		if err == nil {
			t.Errorf("%s: the database allowed it", tc.name)
			continue
		}
		if tc.unique != sqldb.IsUniqueViolation(err) {
			t.Errorf("%s: %v (unique violation: %v)", tc.name, err, sqldb.IsUniqueViolation(err))
		}
	}
	// With a second owner, the first may go.
	if _, err := db.W().ExecContext(ctx, `INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('owner2', 'owner', 'h', TRUE, 1002, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W().ExecContext(ctx, `UPDATE users SET role = 'reader' WHERE name = 'owner'`); err != nil {
		t.Errorf("demoting an owner while another is enabled: %v", err)
	}
}

// testRulesHoldAgainstAStaleNode changes identities through a second
// service on the same database that has not seen the first one's
// changes: the database refuses what memory would have allowed, with the
// errors the faces show.
func testRulesHoldAgainstAStaleNode(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	if _, err := s1.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "shared-map", Actions: grants(t, "app", "content/read")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateUser(ctx, owner, identity.UserSpec{Name: "second", Role: "owner", Password: "a-long-password"}); err != nil {
		t.Fatal(err)
	}
	s2 := b.open(t, b.db(t, place), identity.Options{Now: clk.now, Console: io.Discard, Feed: identity.FeedOff})
	if _, _, err := s1.CreateToken(ctx, owner, identity.TokenSpec{Name: "uses-shared", ScopeMap: "shared-map"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "later-map", Actions: grants(t, "app", "content/read")}); err != nil {
		t.Fatal(err)
	}
	role := "reader"
	if _, err := s1.UpdateUser(ctx, owner, "second", identity.UserUpdate{Role: &role}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "LATER-map", Actions: grants(t, "x", "content/read")}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("stale node creating a scope map named like another in another case: %v, want ErrConflict", err)
	}
	if _, err := s2.DeleteScopeMap(ctx, owner, "shared-map", false); !errors.Is(err, identity.ErrInUse) {
		t.Errorf("stale node deleting a scope map in use: %v, want ErrInUse", err)
	}
	if err := s2.DeleteUser(ctx, owner, "owner"); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("stale node deleting the last enabled owner: %v, want ErrForbidden", err)
	}
}

// testLastOwnerRace: two nodes demote two different owners at the same
// time; one of them must be refused, or no owner would be left. First
// deterministically: one node's demotion is held open in its transaction
// while the other node tries; then with both nodes racing freely.
func testLastOwnerRace(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	if _, err := s1.CreateUser(ctx, owner, identity.UserSpec{Name: "second", Role: "owner", Password: "a-long-password"}); err != nil {
		t.Fatal(err)
	}
	db1 := b.db(t, place)
	s2 := b.open(t, b.db(t, place), identity.Options{Now: clk.now, Console: io.Discard})
	countOwners := func() int {
		var n int
		if err := db1.W().QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE role = 'owner' AND enabled`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if b.engine == sqldb.Postgres {
		tx, err := db1.W().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = 'reader' WHERE name = 'owner'`); err != nil {
			t.Fatal(err)
		}
		reader := "reader"
		done := make(chan error, 1)
		go func() {
			_, err := s2.UpdateUser(ctx, owner, "second", identity.UserUpdate{Role: &reader})
			done <- err
		}()
		// Commit once the other node's demotion waits for ours (or has
		// finished, which is the bug this catches).
		waitForLockWait(t, db1, done)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, identity.ErrForbidden) {
			t.Errorf("second demotion while the first was committing: %v, want ErrForbidden", err)
		}
		if n := countOwners(); n != 1 {
			t.Fatalf("%d enabled owners after two racing demotions, want 1", n)
		}
		if _, err := db1.W().ExecContext(ctx, `UPDATE users SET role = 'owner' WHERE name = 'owner'`); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 10 {
		var wg sync.WaitGroup
		var refused atomic.Int32
		for i, s := range []*identity.Service{s1, s2} {
			name := []string{"owner", "second"}[i]
			wg.Go(func() {
				st := identity.StatusDisabled
				if _, err := s.UpdateUser(ctx, auth.Identity{Kind: auth.KindUser, Name: "system", Role: auth.RoleOwner}, name, identity.UserUpdate{Status: &st}); errors.Is(err, identity.ErrForbidden) {
					refused.Add(1)
				} else if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := countOwners(); n != 1 || refused.Load() != 1 {
			t.Fatalf("round %d: %d enabled owners, %d refusals; want 1 and 1", round, n, refused.Load())
		}
		if _, err := db1.W().ExecContext(ctx, `UPDATE users SET enabled = TRUE`); err != nil {
			t.Fatal(err)
		}
		for _, s := range []*identity.Service{s1, s2} {
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testSharedNameRace: two nodes create a user and a token whose names
// differ only in case at the same time; a docker login must name one
// principal, so exactly one of them may succeed, and the other gets the
// conflict the faces show. First deterministically on PostgreSQL (a user
// is inserted and held uncommitted while the other node creates the
// token), then with both nodes racing freely.
func testSharedNameRace(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	db1 := b.db(t, place)
	s2 := b.open(t, b.db(t, place), identity.Options{Now: clk.now, Console: io.Discard})
	principals := func(name string) int {
		var n int
		if err := db1.W().QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM users WHERE lower(name) = ?) + (SELECT COUNT(*) FROM tokens WHERE lower(name) = ?)`,
			name, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if b.engine == sqldb.Postgres {
		tx, err := db1.W().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('held-name', 'reader', 'h', TRUE, 5000, 1)`); err != nil {
			t.Fatal(err)
		}
		acts := grants(t, "app", "content/read")
		done := make(chan error, 1)
		go func() {
			_, _, err := s2.CreateToken(ctx, owner, identity.TokenSpec{Name: "HELD-NAME", Actions: acts})
			done <- err
		}()
		waitForLockWait(t, db1, done)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, identity.ErrConflict) {
			t.Errorf("token HELD-NAME while user held-name was being created: %v, want ErrConflict", err)
		}
		if n := principals("held-name"); n != 1 {
			t.Fatalf("%d users and tokens named held-name in any case, want 1", n)
		}
	}
	acts := grants(t, "app", "content/read")
	for round := range 10 {
		name := fmt.Sprintf("ci-name%d", round)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() {
			_, errs[0] = s1.CreateUser(ctx, owner, identity.UserSpec{Name: name, Role: "reader", Password: "a-long-password"})
		})
		wg.Go(func() {
			_, _, errs[1] = s2.CreateToken(ctx, owner, identity.TokenSpec{Name: strings.ToUpper(name), Actions: acts})
		})
		wg.Wait()
		var ok, conflicts int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, identity.ErrConflict):
				conflicts++
			default:
				t.Errorf("round %d: %v", round, err)
			}
		}
		if ok != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d created, %d conflicts (%v); want 1 and 1", round, ok, conflicts, errs)
		}
		if n := principals(name); n != 1 {
			t.Fatalf("round %d: %d users and tokens named %s in any case, want 1", round, n, name)
		}
	}
}

// waitForLockWait returns once a PostgreSQL session waits for a lock, or
// fails the test if done yields first.
func waitForLockWait(t *testing.T, db *sqldb.DB, done chan error) {
	t.Helper()
	for {
		select {
		case err := <-done:
			done <- err
			t.Log("the second change did not wait for the first")
			return
		default:
		}
		var n int
		if err := db.W().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM pg_locks WHERE NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
func testPasswordExpiry(t *testing.T, b backend) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := b.service(t, b.place(t), clk)
	_, creds, err := s.CreateToken(context.Background(), owner, identity.TokenSpec{Name: "expiring", Actions: grants(t, "app", "content/read"),
		Passwords: []string{identity.SlotPassword1}, Expiry: clk.now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	pw := creds.Passwords[0].Value
	login, err := s.Authenticate("expiring", pw)
	if err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	_, claims, err := s.Signer().IssueAccess(login.Subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour)
	if _, err := s.Authenticate("expiring", pw); err == nil || err.Error() != "password1 expired" {
		t.Fatalf("at expiry: %v, want password1 expired", err)
	}
	if _, err := s.ResolveClaims(claims); err == nil {
		t.Fatal("access token of an expired password still resolves")
	}
	if _, _, err := s.CreateToken(context.Background(), owner, identity.TokenSpec{Name: "past-expiry", ScopeMap: auth.ScopeMapPull,
		Passwords: []string{identity.SlotPassword1}, Expiry: clk.now().Add(-time.Minute)}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("expiry in the past: %v, want identity.ErrInvalid", err)
	}
}

func testStateSurvivesRestart(t *testing.T, b backend) {
	dir := b.place(t)
	clk := &clock{t: time.Now()}
	s := b.service(t, dir, clk)
	ctx := context.Background()
	if _, err := s.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "team-read", Actions: grants(t, "team/*", "content/read")}); err != nil {
		t.Fatal(err)
	}
	_, creds, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "reader", ScopeMap: "team-read", Passwords: []string{identity.SlotPassword2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("reader", creds.Passwords[0].Value); err != nil {
		t.Fatal(err)
	}
	s.FlushLastUsed()
	s2 := b.service(t, dir, clk)
	login, err := s2.Authenticate("reader", creds.Passwords[0].Value)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got := auth.Allowed(login.Identity, "team/x"); got != auth.ContentRead {
		t.Fatalf("after restart the token may %v on team/x", got)
	}
	tok, err := s2.GetToken(owner, "reader")
	if err != nil || len(tok.Passwords) != 1 || tok.Passwords[0].Name != identity.SlotPassword2 || tok.Passwords[0].LastUsed == nil {
		t.Fatalf("token after restart: %+v %v", tok, err)
	}
}

func testScopeMapRules(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	tests := []struct {
		name    string
		spec    identity.ScopeMapSpec
		wantErr error
	}{
		{"valid", identity.ScopeMapSpec{Name: "valid-map", Actions: grants(t, "samples/*", "content/read")}, nil},
		{"duplicate", identity.ScopeMapSpec{Name: "valid-map", Actions: grants(t, "x", "content/read")}, identity.ErrConflict},
		{"built-in name", identity.ScopeMapSpec{Name: auth.ScopeMapAdmin}, identity.ErrConflict},
		{"short name", identity.ScopeMapSpec{Name: "abc"}, identity.ErrInvalid},
		{"bad pattern", identity.ScopeMapSpec{Name: "bad-pattern", Actions: []string{"repositories/a/*/b/content/read"}}, identity.ErrInvalid},
		{"bad action", identity.ScopeMapSpec{Name: "bad-action", Actions: []string{"repositories/a/content/execute"}}, identity.ErrInvalid},
		{"long description", identity.ScopeMapSpec{Name: "long-desc", Description: string(make([]byte, 300))}, identity.ErrInvalid},
	}
	for _, tt := range tests {
		_, err := s.CreateScopeMap(ctx, owner, tt.spec)
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := s.UpdateScopeMap(ctx, owner, auth.ScopeMapPull, identity.ScopeMapUpdate{Add: grants(t, "*", "content/write")}); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("changing a built-in: %v", err)
	}
	if _, err := s.DeleteScopeMap(ctx, owner, auth.ScopeMapPull, true); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("deleting a built-in: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "uses-map", ScopeMap: "valid-map"}); err != nil {
		t.Fatal(err)
	}
	if users, err := s.DeleteScopeMap(ctx, owner, "valid-map", false); !errors.Is(err, identity.ErrInUse) || len(users) != 1 {
		t.Errorf("deleting a map in use: %v %v", users, err)
	}
	if users, err := s.DeleteScopeMap(ctx, owner, "valid-map", true); err != nil || len(users) != 1 || users[0] != "uses-map" {
		t.Errorf("force delete: %v %v", users, err)
	}
}

func testManagementPermissions(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	for _, role := range []auth.Role{auth.RoleReader, auth.RolePull, auth.RolePush, auth.RoleDelete} {
		actor := auth.Identity{Kind: auth.KindUser, Name: "someone", Role: role}
		if _, err := s.CreateScopeMap(ctx, actor, identity.ScopeMapSpec{Name: "by-" + string(role), Actions: grants(t, "x", "content/read")}); !errors.Is(err, identity.ErrForbidden) {
			t.Errorf("%s created a scope map: %v", role, err)
		}
	}
	contributor := auth.Identity{Kind: auth.KindUser, Name: "c", Role: auth.RoleContributor}
	if _, err := s.CreateUser(ctx, contributor, identity.UserSpec{Name: "newuser", Role: "owner", Password: "a-long-password"}); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("contributor created a user: %v", err)
	}
	for _, id := range []auth.Identity{{Kind: auth.KindToken, Name: "t"}, {Kind: auth.KindAdmin, Name: "berth"}, {}} {
		if _, err := s.ListTokens(id); !errors.Is(err, identity.ErrForbidden) {
			t.Errorf("%s listed tokens: %v", id, err)
		}
	}
	if err := s.DeleteUser(ctx, owner, "owner"); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("deleted the last owner: %v", err)
	}
}

func testNamesAreUniqueAcrossIdentities(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "owner", ScopeMap: auth.ScopeMapPull}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("token named like a user: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "berth", ScopeMap: auth.ScopeMapPull}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("token named like the admin user: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "shared", ScopeMap: auth.ScopeMapPull}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, owner, identity.UserSpec{Name: "shared", Role: "reader", Password: "a-long-password"}); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("user named like a token: %v", err)
	}
}

func testAdminUser(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	if _, err := s.Authenticate("berth", "x"); err == nil {
		t.Fatal("admin login while disabled and without passwords")
	}
	_, creds, err := s.SetAdminEnabled(ctx, owner, true)
	if err != nil || creds == nil || len(creds.Passwords) != 2 {
		t.Fatalf("enable admin: %v %+v", err, creds)
	}
	login, err := s.Authenticate("berth", creds.Passwords[1].Value)
	if err != nil || login.Identity.Kind != auth.KindAdmin || login.Subject.Slot != identity.SlotAdminPassword2 {
		t.Fatalf("admin login with password2: %+v %v", login, err)
	}
	_, claims, _ := s.Signer().IssueAccess(login.Subject, nil)
	if _, _, err := s.SetAdminEnabled(ctx, owner, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("berth", creds.Passwords[1].Value); err == nil {
		t.Fatal("admin login while disabled")
	}
	if _, err := s.ResolveClaims(claims); err == nil {
		t.Fatal("admin access token resolves after disable")
	}
	if _, creds2, _ := s.SetAdminEnabled(ctx, owner, true); creds2 != nil {
		t.Fatal("re-enabling regenerated existing passwords")
	}
	if _, err := s.Authenticate("berth", creds.Passwords[0].Value); err != nil {
		t.Fatalf("admin password after re-enable: %v", err)
	}
}

func testUserLogin(t *testing.T, b backend) {
	s := b.service(t, b.place(t), &clock{t: time.Now()})
	ctx := context.Background()
	if _, err := s.Authenticate("owner", "owner-password-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("owner", "owner-password-2"); err == nil {
		t.Fatal("wrong password accepted")
	}
	pw := "new-owner-password"
	if _, err := s.UpdateUser(ctx, owner, "owner", identity.UserUpdate{Password: &pw}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("own password changed without the current one: %v", err)
	}
	wrong := "not-the-password"
	if _, err := s.UpdateUser(ctx, owner, "owner", identity.UserUpdate{Password: &pw, Current: &wrong}); !errors.Is(err, identity.ErrForbidden) {
		t.Fatalf("own password changed with a wrong current one: %v", err)
	}
	cur := "owner-password-1"
	if _, err := s.UpdateUser(ctx, owner, "owner", identity.UserUpdate{Password: &pw, Current: &cur}); err != nil {
		t.Fatal(err)
	}
	// the cached verification of the old password must not survive the change
	if _, err := s.Authenticate("owner", "owner-password-1"); err == nil {
		t.Fatal("old password accepted after change")
	}
	if _, err := s.Authenticate("owner", pw); err != nil {
		t.Fatal(err)
	}
	short := "short"
	if _, err := s.UpdateUser(ctx, owner, "owner", identity.UserUpdate{Password: &short}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
}

// testConcurrentChangesMatchDatabase runs changes to the same tokens at
// once and checks that memory ends as the database does: changes must be
// applied to memory in the order they committed.
func testConcurrentChangesMatchDatabase(t *testing.T, b backend) {
	ctx := context.Background()
	dir := b.place(t)
	clk := &clock{t: time.Now()}
	s := b.service(t, dir, clk)
	for _, n := range []string{"a", "b"} {
		if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "token-" + n, ScopeMap: auth.ScopeMapPull}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	maps := []string{auth.ScopeMapPull, auth.ScopeMapPush}
	statuses := []string{identity.StatusEnabled, identity.StatusDisabled}
	for w := range 6 {
		wg.Go(func() {
			for i := range 20 {
				m, st := maps[(w+i)%2], statuses[(w*i)%2]
				for _, name := range []string{"token-a", "token-b"} {
					if _, err := s.UpdateToken(ctx, owner, name, identity.TokenUpdate{ScopeMap: &m, Status: &st}); err != nil {
						failed.Store(true)
					}
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		t.Fatal("an update failed")
	}
	inMemory, err := s.ListTokens(owner)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := b.service(t, dir, clk).ListTokens(owner)
	if err != nil {
		t.Fatal(err)
	}
	for i := range inMemory {
		m, d := inMemory[i], loaded[i]
		if m.Name != d.Name || m.ScopeMap != d.ScopeMap || m.Status != d.Status {
			t.Errorf("memory has %s %s %s, the database %s %s %s", m.Name, m.ScopeMap, m.Status, d.Name, d.ScopeMap, d.Status)
		}
	}
}

// Each permission change is committed with its audit record, in one
// transaction: the record is in the database when the call returns, and a
// change whose record cannot be written is not made at all, neither in the
// database nor in memory (so the same change succeeds once the record can be
// written).
func testPermissionChangesAreRecordedInTheirTransaction(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.db(t, b.place(t))
	al := audit.New(db, nil)
	defer al.Close()
	s, err := identity.Open(ctx, db, identity.Options{OwnerPassword: "owner-password-1", Console: io.Discard, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	str := func(v string) *string { return &v }
	cases := []struct {
		target, reason string
		change         func() error
	}{
		{"scope map app-maps", "created: repositories/app/content/read", func() error {
			_, err := s.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "app-maps", Actions: grants(t, "app", "content/read")})
			return err
		}},
		{"scope map app-maps", "updated: repositories/app/content/read repositories/app/content/write", func() error {
			_, err := s.UpdateScopeMap(ctx, owner, "app-maps", identity.ScopeMapUpdate{Add: grants(t, "app", "content/write")})
			return err
		}},
		{"token ci-token", "created with scope map app-maps, status enabled", func() error {
			_, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-token", ScopeMap: "app-maps", Passwords: []string{identity.SlotPassword1}})
			return err
		}},
		{"token ci-token", "updated: status disabled", func() error {
			_, err := s.UpdateToken(ctx, owner, "ci-token", identity.TokenUpdate{Status: str(identity.StatusDisabled)})
			return err
		}},
		{"token ci-token", "generated password2", func() error {
			_, err := s.GenerateCredentials(ctx, owner, "ci-token", []string{identity.SlotPassword2}, time.Time{})
			return err
		}},
		{"token ci-token", "password1 deleted", func() error {
			_, err := s.DeletePassword(ctx, owner, "ci-token", identity.SlotPassword1)
			return err
		}},
		{"token ci-token", "deleted", func() error { return s.DeleteToken(ctx, owner, "ci-token") }},
		{"scope map app-maps", "deleted", func() error {
			_, err := s.DeleteScopeMap(ctx, owner, "app-maps", false)
			return err
		}},
		{"user bob", "created with role reader", func() error {
			_, err := s.CreateUser(ctx, owner, identity.UserSpec{Name: "bob", Role: "reader", Password: "bob-password-123"})
			return err
		}},
		{"user bob", "updated: role contributor", func() error {
			_, err := s.UpdateUser(ctx, owner, "bob", identity.UserUpdate{Role: str("contributor")})
			return err
		}},
		{"user bob", "deleted", func() error { return s.DeleteUser(ctx, owner, "bob") }},
		{"admin user", "enabled", func() error {
			_, _, err := s.SetAdminEnabled(ctx, owner, true)
			return err
		}},
		{"admin user", "renewed password2", func() error {
			_, err := s.RenewAdminPassword(ctx, owner, identity.SlotAdminPassword2)
			return err
		}},
	}
	records := func() int {
		var n int
		if err := db.W().QueryRowContext(ctx, `SELECT COUNT(*) FROM audit WHERE kind = 'permission'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := records()
	for i, c := range cases {
		if _, err := db.W().ExecContext(ctx, `ALTER TABLE audit RENAME TO audit_away`); err != nil {
			t.Fatal(err)
		}
		err := c.change()
		if _, rerr := db.W().ExecContext(ctx, `ALTER TABLE audit_away RENAME TO audit`); rerr != nil {
			t.Fatal(rerr)
		}
		if err == nil || !strings.Contains(err.Error(), "audit") {
			t.Errorf("%s %s, with no audit table: %v, want the change refused for want of its record", c.target, c.reason, err)
			continue
		}
		if err := c.change(); err != nil {
			t.Fatalf("%s %s, once the record can be written: %v", c.target, c.reason, err)
		}
		// No Flush: the record was committed with the change.
		if n := records() - before; n != i+1 {
			t.Errorf("%s %s: %d new permission records, want %d", c.target, c.reason, n, i+1)
		}
		var target, reason, identity string
		if err := db.W().QueryRowContext(ctx, `SELECT target, reason, identity FROM audit ORDER BY id DESC LIMIT 1`).Scan(&target, &reason, &identity); err != nil {
			t.Fatal(err)
		}
		if target != c.target || reason != c.reason || identity != owner.Name {
			t.Errorf("record %q %q by %q, want %q %q by %q", target, reason, identity, c.target, c.reason, owner.Name)
		}
	}

	// A fresh service on the same database sees what memory saw.
	again, err := identity.Open(ctx, db, identity.Options{Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if a, err := again.GetAdmin(owner); err != nil || !a.Enabled {
		t.Errorf("admin after reopening: %+v, %v", a, err)
	}
	if _, err := again.GetScopeMap(owner, "app-maps"); err == nil {
		t.Error("deleted scope map is back after reopening")
	}
}

// TestMigrateInPlace: an embedded database from before identities and the
// audit log kept their own schema versions (their tables were made by the
// metadata store's migrations; schema version 0 of both) is migrated in
// place, its rows kept, and the database's rules hold from then on.
func TestMigrateInPlace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	md, err := meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	db := md.Database()
	for _, c := range []string{"identity", "audit"} {
		if v, err := db.Version(ctx, c); err == nil && v != 0 {
			t.Fatalf("fresh database has %s schema %d, want none", c, v)
		}
	}
	tokenPw, userPw, adminPw := "legacy-token-password", "legacy-user-password", "legacy-admin-password"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES ('legacy-map', 'old', '["repositories/app/content/read"]', 1000, 2000)`, nil},
		{`INSERT INTO tokens(name, scope_map, enabled, generation, created_at, last_used) VALUES ('legacy', 'legacy-map', 1, 3, 1000, 5000)`, nil},
		{`INSERT INTO passwords(owner_kind, owner, slot, hash, serial, created_at) VALUES ('token', 'legacy', 'password1', ?, 4, 1000)`, []any{auth.HashSecret(tokenPw)}},
		{`INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('owner', 'owner', ?, 1, 1, 1000)`, []any{auth.HashUserPassword(userPw)}},
		{`INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('Reader', 'reader', ?, 0, 2, 1000)`, []any{auth.HashUserPassword(userPw)}},
		{`INSERT INTO settings(key, value) VALUES ('admin_enabled', 'true'), ('admin_generation', '1'), ('password_serial', '6')`, nil},
		{`INSERT INTO passwords(owner_kind, owner, slot, hash, serial, created_at) VALUES ('admin', 'admin', 'password', ?, 5, 1000)`, []any{auth.HashSecret(adminPw)}},
		{`INSERT INTO audit(time, kind, result, identity, count, last_time) VALUES (1000, 'login', 'failure', 'legacy', 4, 3000)`, nil},
	} {
		if _, err := db.W().ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	al := audit.New(db, nil)
	defer al.Close()
	s, err := identity.Open(ctx, db, identity.Options{Console: io.Discard, Audit: al})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for c, want := range map[string]int{"identity": identity.SchemaVersion(sqldb.SQLite), "audit": audit.SchemaVersion(sqldb.SQLite)} {
		if v, err := db.Version(ctx, c); err != nil || v != want {
			t.Errorf("%s schema at %d, %v; want %d", c, v, err, want)
		}
	}
	login, err := s.Authenticate("legacy", tokenPw)
	if err != nil || auth.Allowed(login.Identity, "app") != auth.ContentRead {
		t.Errorf("token after migration: %+v, %v", login, err)
	}
	if _, err := s.Authenticate("owner", userPw); err != nil {
		t.Errorf("user after migration: %v", err)
	}
	if _, err := s.Authenticate("Reader", userPw); err == nil {
		t.Error("disabled user logs in after migration")
	}
	if _, err := s.Authenticate("berth", adminPw); err != nil {
		t.Errorf("admin user after migration: %v", err)
	}
	users, err := s.ListUsers(owner)
	if err != nil || len(users) != 2 {
		t.Errorf("users after migration: %+v, %v", users, err)
	}
	if ev, err := al.List(ctx, audit.Filter{Identity: "legacy"}); err != nil || len(ev) != 1 || ev[0].Count != 4 {
		t.Errorf("audit records after migration: %+v, %v", ev, err)
	}
	// New serials continue after the old ones.
	_, creds, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "fresh", ScopeMap: auth.ScopeMapPull, Passwords: []string{identity.SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s.Authenticate("fresh", creds.Passwords[0].Value); err != nil || l.Subject.Generation <= 6 {
		t.Errorf("new token after migration: %+v, %v", l, err)
	}
	// The rules now hold in the database.
	if _, err := db.W().ExecContext(ctx, `INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('LEGACY', '', 1, 99, 1)`); !sqldb.IsUniqueViolation(err) {
		t.Errorf("token named like another in another case: %v", err)
	}
	if _, err := db.W().ExecContext(ctx, `DELETE FROM users WHERE name = 'owner'`); err == nil {
		t.Error("the database deleted the last enabled owner")
	}
	if _, err := db.W().ExecContext(ctx, `DELETE FROM scope_maps WHERE name = 'legacy-map'`); err == nil {
		t.Error("the database deleted a scope map in use")
	}
	// Reopening migrates nothing more and loads the same.
	s.Close()
	s2, err := identity.Open(ctx, db, identity.Options{Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Authenticate("fresh", creds.Passwords[0].Value); err != nil {
		t.Errorf("after reopening: %v", err)
	}
}

// kidOf returns the key id in a JWT's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil || hdr.Kid == "" {
		t.Fatalf("header %s: %v", b, err)
	}
	return hdr.Kid
}

// testSigningKeyRotation: a new key is known to every node before any
// signs with it, tokens signed with the old key keep verifying on every
// node, and retiring the old key ends them everywhere.
func testSigningKeyRotation(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	s2 := b.service(t, place, clk)
	sync := func() {
		if b.engine == sqldb.SQLite { // no feed: one process per database
			if err := s2.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	login, err := s1.Authenticate("owner", "owner-password-1")
	if err != nil {
		t.Fatal(err)
	}
	old, _, err := s1.Signer().IssueAccess(login.Subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldKid := kidOf(t, old)
	k, err := s1.RotateSigningKey(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID == oldKid || !k.ActiveFrom.Equal(clk.now().UTC().Add(identity.KeyPublishDelay).Truncate(time.Millisecond)) && !k.ActiveFrom.After(clk.now()) {
		t.Fatalf("new key %+v", k)
	}
	sync()
	// Published, not yet signing.
	for i, s := range []*identity.Service{s1, s2} {
		tok, _, err := s.Signer().IssueAccess(login.Subject, nil)
		if err != nil || kidOf(t, tok) != oldKid {
			t.Errorf("node %d signs with %s before the new key's time, want %s (%v)", i+1, kidOf(t, tok), oldKid, err)
		}
		keys, err := s.SigningKeys(owner)
		if err != nil || len(keys) != 2 || keys[1].ID != k.ID || keys[1].Signing || !keys[0].Signing {
			t.Errorf("node %d keys %+v, %v", i+1, keys, err)
		}
	}
	clk.add(identity.KeyPublishDelay)
	fresh, _, err := s1.Signer().IssueAccess(login.Subject, nil)
	if err != nil || kidOf(t, fresh) != k.ID {
		t.Fatalf("after the publish delay node 1 signs with %s, want %s (%v)", kidOf(t, fresh), k.ID, err)
	}
	for i, s := range []*identity.Service{s1, s2} {
		for name, tok := range map[string]string{"old": old, "new": fresh} {
			if _, err := s.Verifier().VerifyAccess(tok); err != nil {
				t.Errorf("node %d: token signed with the %s key: %v", i+1, name, err)
			}
		}
	}
	if err := s1.RetireSigningKey(ctx, owner, k.ID); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("retiring the key that signs: %v, want ErrForbidden", err)
	}
	if err := s1.RetireSigningKey(ctx, owner, oldKid); err != nil {
		t.Fatal(err)
	}
	sync()
	for i, s := range []*identity.Service{s1, s2} {
		if _, err := s.Verifier().VerifyAccess(old); err == nil {
			t.Errorf("node %d: a token of the retired key still verifies", i+1)
		}
		if _, err := s.Verifier().VerifyAccess(fresh); err != nil {
			t.Errorf("node %d: after retiring the old key: %v", i+1, err)
		}
	}
	reader := auth.Identity{Kind: auth.KindUser, Name: "r", Role: auth.RoleReader}
	if _, err := s1.RotateSigningKey(ctx, reader); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("a reader rotated the signing key: %v", err)
	}
}

// testSharedLoginLimits: two limiters (two nodes) on one database count
// failures together: guesses spread over both are refused as if one took
// them all, and a success through one clears the pair for both.
func testSharedLoginLimits(t *testing.T, b backend) {
	place := b.place(t)
	b.service(t, place, &clock{t: time.Now()}) // the tables
	clk := &clock{t: time.Now()}
	node := func() *auth.Limiter {
		return auth.NewLimiter(auth.LimiterConfig{Threshold: 3, Now: clk.now, Sleep: func(time.Duration) {}, Store: identity.NewLimiterStore(b.db(t, place))})
	}
	a, c := node(), node()
	wrong := errors.New("wrong password")
	for i := range 3 {
		l := []*auth.Limiter{a, c}[i%2]
		if err := l.Attempt("ci-token", "127.0.0.9", func() error { return wrong }); !errors.Is(err, wrong) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	for i, l := range []*auth.Limiter{a, c} {
		var limited *auth.LimitedError
		if err := l.Attempt("ci-token", "127.0.0.9", func() error { return nil }); !errors.As(err, &limited) || limited.RetryAfter <= 0 {
			t.Errorf("node %d after 3 failures spread over two nodes: %v, want refused", i+1, err)
		}
	}
	// Another address is not held back by them.
	if err := c.Attempt("ci-token", "127.0.0.10", func() error { return nil }); err != nil {
		t.Errorf("another address: %v", err)
	}
	clk.add(2 * time.Second) // past the first window
	if err := a.Attempt("ci-token", "127.0.0.9", func() error { return nil }); err != nil {
		t.Fatalf("right password after the window: %v", err)
	}
	if err := c.Attempt("ci-token", "127.0.0.9", func() error { return wrong }); !errors.Is(err, wrong) {
		t.Errorf("after a success on the other node, the count starts afresh: %v", err)
	}
}

// TestMigrateFromEveryVersion: a database at each earlier identity schema
// version, on each engine, with rows valid at that version, is brought up
// to date by Open, and what it held keeps working: the token's password,
// the user's, and access tokens signed with the signing key of the time.
func TestMigrateFromEveryVersion(t *testing.T) {
	pg := testutil.StartPostgres(t)
	for _, e := range []sqldb.Engine{sqldb.SQLite, sqldb.Postgres} {
		steps := identity.MigrationsFor(e)
		for v := range len(steps) {
			if e == sqldb.Postgres && v == 0 {
				continue // PostgreSQL's first version is the first there was
			}
			t.Run(fmt.Sprintf("%s/%d", e, v), func(t *testing.T) {
				ctx := context.Background()
				var b backend
				if e == sqldb.SQLite {
					b = backend{engine: e, place: func(t *testing.T) string { return t.TempDir() }}
				} else {
					b = backend{engine: e, place: func(*testing.T) string { return pg.NewDatabase() }}
				}
				db := b.db(t, b.place(t))
				if err := db.Migrate(ctx, "identity", steps[:v]); err != nil {
					t.Fatal(err)
				}
				key := auth.GenerateSigningKey()
				enc, _ := auth.EncodeSigningKey(key)
				tokenPw, userPw := "old-token-password", "old-user-password"
				rows := []struct {
					sql  string
					args []any
				}{
					{`INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES ('old-map', '', '["repositories/app/content/read"]', 1000, 1000)`, nil},
					{`INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('old-token', 'old-map', TRUE, 2, 1000)`, nil},
					{`INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES ('old-push', '', ?, 1000, 1000)`,
						[]any{`["repositories/app/content/read","repositories/app/content/write","repositories/team/*/content/write","repositories/team/*/content/overwrite",{"action":"repositories/tagged/content/write","tags":["dev-*"]}]`}},
					{`INSERT INTO passwords(owner_kind, owner, slot, hash, serial, created_at) VALUES ('token', 'old-token', 'password1', ?, 3, 1000)`, []any{auth.HashSecret(tokenPw)}},
					{`INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('owner', 'owner', ?, TRUE, 1, 1000)`, []any{auth.HashUserPassword(userPw)}},
					{`INSERT INTO settings(key, value) VALUES ('password_serial', '3'), ('signing_key', ?)`, []any{enc}},
				}
				if v >= 2 { // signing keys by kid
					rows = append(rows, struct {
						sql  string
						args []any
					}{`INSERT INTO signing_keys(kid, private_key, created_at, active_from) VALUES (?, ?, 1000, 0)`, []any{auth.KeyID(key.Public().(ed25519.PublicKey)), enc}})
				}
				if v >= 3 { // portal sessions
					rows = append(rows, struct {
						sql  string
						args []any
					}{`INSERT INTO portal_sessions(id_hash, user_name, generation, csrf, created_at, last_seen) VALUES ('h', 'owner', 1, 'c', 1000, 1000)`, nil})
				}
				for _, r := range rows {
					if _, err := db.W().ExecContext(ctx, r.sql, r.args...); err != nil {
						t.Fatalf("%s: %v", r.sql, err)
					}
				}
				s := b.open(t, db, identity.Options{Console: io.Discard})
				if got, err := db.Version(ctx, "identity"); err != nil || got != identity.SchemaVersion(e) {
					t.Fatalf("schema at %d, %v; want %d", got, err, identity.SchemaVersion(e))
				}
				// Its content/write rules keep moving tags: each gained
				// content/overwrite once; a tag-limited rule did not.
				var pushActions string
				if err := db.R().QueryRowContext(ctx, `SELECT actions FROM scope_maps WHERE name = 'old-push'`).Scan(&pushActions); err != nil {
					t.Fatal(err)
				}
				var rules []any
				if err := json.Unmarshal([]byte(pushActions), &rules); err != nil {
					t.Fatalf("old-push actions after the migration: %q: %v", pushActions, err)
				}
				count := map[string]int{}
				objects := 0
				for _, r := range rules {
					switch r := r.(type) {
					case string:
						count[r]++
					case map[string]any:
						objects++
						if r["action"] != "repositories/tagged/content/write" {
							t.Errorf("tag-limited rule changed: %v", r)
						}
					}
				}
				if len(rules) != 6 || objects != 1 || count["repositories/app/content/overwrite"] != 1 || count["repositories/team/*/content/overwrite"] != 1 ||
					count["repositories/app/content/write"] != 1 || count["repositories/tagged/content/overwrite"] != 0 {
					t.Errorf("old-push actions after the migration: %s", pushActions)
				}
				login, err := s.Authenticate("old-token", tokenPw)
				if err != nil || auth.Allowed(login.Identity, "app") != auth.ContentRead {
					t.Fatalf("token after migration: %+v, %v", login, err)
				}
				if _, err := s.Authenticate("owner", userPw); err != nil {
					t.Errorf("user after migration: %v", err)
				}
				old, err := auth.NewSigner(key, auth.TokenConfig{Issuer: "berth", Audience: "berth"})
				if err != nil {
					t.Fatal(err)
				}
				tok, _, err := old.IssueAccess(login.Subject, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Verifier().VerifyAccess(tok); err != nil {
					t.Errorf("an access token signed before the migration: %v", err)
				}
				if fresh, _, err := s.Signer().IssueAccess(login.Subject, nil); err != nil || kidOf(t, fresh) != auth.KeyID(key.Public().(ed25519.PublicKey)) {
					t.Errorf("after the migration the old key should still sign: %v", err)
				}
				// The user and token there were hold their login names: no
				// user may take the token's, in any case, nor token the user's.
				for _, q := range []string{
					`INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('Old-Token', 'reader', 'h', TRUE, 10, 1000)`,
					`INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('OWNER', 'old-map', TRUE, 11, 1000)`,
				} {
					if _, err := db.W().ExecContext(ctx, q); !sqldb.IsUniqueViolation(err) {
						t.Errorf("%s after the migration: %v, want a unique violation", q, err)
					}
				}
			})
		}
	}
}

// TestMigrateRefusesSharedNames: a database from before the database
// enforced one login namespace, whose user and token share a name in
// different cases, is refused with what the operator must do, and
// migrates once one of them is gone.
func TestMigrateRefusesSharedNames(t *testing.T) {
	pg := testutil.StartPostgres(t)
	for _, e := range []sqldb.Engine{sqldb.SQLite, sqldb.Postgres} {
		t.Run(e.String(), func(t *testing.T) {
			ctx := context.Background()
			b := backend{engine: e, place: func(t *testing.T) string { return t.TempDir() }}
			if e == sqldb.Postgres {
				b.place = func(*testing.T) string { return pg.NewDatabase() }
			}
			db := b.db(t, b.place(t))
			// The schema as it was just before the step that made one
			// login namespace (later steps may follow it).
			steps := identity.MigrationsFor(e)
			before := slices.IndexFunc(steps, func(q string) bool { return strings.Contains(q, "CREATE TABLE principal_names") })
			if before < 1 {
				t.Fatal("no migration step creates principal_names")
			}
			if err := db.Migrate(ctx, "identity", steps[:before]); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES ('old-map', '', '[]', 1000, 1000)`,
				`INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES ('shared-name', 'owner', 'h', TRUE, 1, 1000)`,
				`INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('Shared-Name', 'old-map', TRUE, 2, 1000)`,
				`INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES ('other-token', 'old-map', TRUE, 3, 1000)`,
			} {
				if _, err := db.W().ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			err := identity.Migrate(ctx, db)
			if err == nil || !strings.Contains(err.Error(), "a user and a token have the same name") || !strings.Contains(err.Error(), "INTERSECT") {
				t.Fatalf("migrating with a user and a token of one name: %v, want the refusal that says what to do", err)
			}
			if got, err := db.Version(ctx, "identity"); err != nil || got != before {
				t.Fatalf("schema at %d, %v after the refusal; want %d", got, err, before)
			}
			if _, err := db.W().ExecContext(ctx, `DELETE FROM tokens WHERE name = 'Shared-Name'`); err != nil {
				t.Fatal(err)
			}
			if err := identity.Migrate(ctx, db); err != nil {
				t.Fatalf("migrating once the names differ: %v", err)
			}
			var n int
			if err := db.W().QueryRowContext(ctx, `SELECT COUNT(*) FROM principal_names`).Scan(&n); err != nil || n != 2 {
				t.Fatalf("%d login names after the migration, %v; want 2", n, err)
			}
		})
	}
}

var subMillis = regexp.MustCompile(`\.\d+Z`)

// millis cuts the fraction of a second in a JSON time to milliseconds and
// drops trailing zeros, as JSON writes a time read back from the database.
func millis(frac string) string {
	digits := strings.TrimRight(frac[1:min(len(frac)-1, 4)], "0")
	if digits == "" {
		return "Z"
	}
	return "." + digits + "Z"
}

// testFollowerMatchesFullLoad makes every kind of change through one node
// and checks, after each, that a second node that follows the changes
// (loading only what each touched) holds what a node loading everything
// holds.
func testFollowerMatchesFullLoad(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	s2 := b.service(t, place, clk)
	view := func(s *identity.Service) string {
		t.Helper()
		toks, err1 := s.ListTokens(owner)
		maps, err2 := s.ListScopeMaps(owner)
		users, err3 := s.ListUsers(owner)
		admin, err4 := s.GetAdmin(owner)
		keys, err5 := s.SigningKeys(owner)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			t.Fatal(err)
		}
		for i := range toks { // last use is per node until flushed
			for j := range toks[i].Passwords {
				toks[i].Passwords[j].LastUsed = nil
			}
			toks[i].LastUsed = nil
		}
		for i := range users {
			users[i].LastUsed = nil
		}
		for i := range admin.Passwords {
			admin.Passwords[i].LastUsed = nil
		}
		out, _ := json.Marshal([]any{toks, maps, users, admin, keys})
		// Memory keeps the time of a change to the nanosecond, the
		// database to the millisecond.
		return subMillis.ReplaceAllStringFunc(string(out), millis)
	}
	str := func(v string) *string { return &v }
	steps := []struct {
		name   string
		change func() error
	}{
		{"create scope map", func() error {
			_, err := s1.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "follow-map", Actions: grants(t, "app", "content/read")})
			return err
		}},
		{"create token with its own map", func() error {
			_, _, err := s1.CreateToken(ctx, owner, identity.TokenSpec{Name: "own-map-token", Actions: grants(t, "x/*", "content/write")})
			return err
		}},
		{"create token", func() error {
			_, _, err := s1.CreateToken(ctx, owner, identity.TokenSpec{Name: "follow-token", ScopeMap: "follow-map", Passwords: []string{identity.SlotPassword1}})
			return err
		}},
		{"update scope map", func() error {
			_, err := s1.UpdateScopeMap(ctx, owner, "follow-map", identity.ScopeMapUpdate{Add: grants(t, "app", "content/write")})
			return err
		}},
		{"generate password", func() error {
			_, err := s1.GenerateCredentials(ctx, owner, "follow-token", []string{identity.SlotPassword2}, time.Time{})
			return err
		}},
		{"delete password", func() error {
			_, err := s1.DeletePassword(ctx, owner, "follow-token", identity.SlotPassword1)
			return err
		}},
		{"disable token", func() error {
			_, err := s1.UpdateToken(ctx, owner, "follow-token", identity.TokenUpdate{Status: str(identity.StatusDisabled)})
			return err
		}},
		{"create user", func() error {
			_, err := s1.CreateUser(ctx, owner, identity.UserSpec{Name: "follower", Role: "reader", Password: "a-long-password"})
			return err
		}},
		{"change role", func() error {
			_, err := s1.UpdateUser(ctx, owner, "follower", identity.UserUpdate{Role: str("contributor")})
			return err
		}},
		{"enable admin", func() error { _, _, err := s1.SetAdminEnabled(ctx, owner, true); return err }},
		{"renew admin password", func() error {
			_, err := s1.RenewAdminPassword(ctx, owner, identity.SlotAdminPassword2)
			return err
		}},
		{"rotate signing key", func() error { _, err := s1.RotateSigningKey(ctx, owner); return err }},
		{"force-delete scope map", func() error {
			_, err := s1.DeleteScopeMap(ctx, owner, "follow-map", true)
			return err
		}},
		{"delete token", func() error { return s1.DeleteToken(ctx, owner, "own-map-token") }},
		{"delete user", func() error { return s1.DeleteUser(ctx, owner, "follower") }},
	}
	loads := s2.FullLoads()
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := s2.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		full := b.service(t, place, clk)
		if got, want := view(s2), view(full); got != want {
			t.Fatalf("after %s the following node holds\n%s\nand a full load\n%s", st.name, got, want)
		}
		if got, want := view(s1), view(full); got != want {
			t.Fatalf("after %s the changing node holds\n%s\nand a full load\n%s", st.name, got, want)
		}
	}
	if n := s2.FullLoads() - loads; n != 0 {
		t.Errorf("the following node loaded everything %d times, want only what each change touched", n)
	}
}
