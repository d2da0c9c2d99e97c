package identity

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/meta"
)

// Each permission change is committed with its audit record, in one
// transaction: the record is in the database when the call returns, and a
// change whose record cannot be written is not made at all, neither in the
// database nor in memory (so the same change succeeds once the record can be
// written).
func TestPermissionChangesAreRecordedInTheirTransaction(t *testing.T) {
	ctx := context.Background()
	store, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	db := store.DB()
	al := audit.New(db, nil)
	defer al.Close()
	s, err := Open(ctx, db, Options{OwnerPassword: "owner-password-1", Console: io.Discard, Audit: al})
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
			_, err := s.CreateScopeMap(ctx, owner, ScopeMapSpec{Name: "app-maps", Actions: grants(t, "app", "content/read")})
			return err
		}},
		{"scope map app-maps", "updated: repositories/app/content/read repositories/app/content/write", func() error {
			_, err := s.UpdateScopeMap(ctx, owner, "app-maps", ScopeMapUpdate{Add: grants(t, "app", "content/write")})
			return err
		}},
		{"token ci-token", "created with scope map app-maps, status enabled", func() error {
			_, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "ci-token", ScopeMap: "app-maps", Passwords: []string{SlotPassword1}})
			return err
		}},
		{"token ci-token", "updated: status disabled", func() error {
			_, err := s.UpdateToken(ctx, owner, "ci-token", TokenUpdate{Status: str(StatusDisabled)})
			return err
		}},
		{"token ci-token", "generated password2", func() error {
			_, err := s.GenerateCredentials(ctx, owner, "ci-token", []string{SlotPassword2}, time.Time{})
			return err
		}},
		{"token ci-token", "password1 deleted", func() error {
			_, err := s.DeletePassword(ctx, owner, "ci-token", SlotPassword1)
			return err
		}},
		{"token ci-token", "deleted", func() error { return s.DeleteToken(ctx, owner, "ci-token") }},
		{"scope map app-maps", "deleted", func() error {
			_, err := s.DeleteScopeMap(ctx, owner, "app-maps", false)
			return err
		}},
		{"user bob", "created with role reader", func() error {
			_, err := s.CreateUser(ctx, owner, UserSpec{Name: "bob", Role: "reader", Password: "bob-password-123"})
			return err
		}},
		{"user bob", "updated: role contributor", func() error {
			_, err := s.UpdateUser(ctx, owner, "bob", UserUpdate{Role: str("contributor")})
			return err
		}},
		{"user bob", "deleted", func() error { return s.DeleteUser(ctx, owner, "bob") }},
		{"admin user", "enabled", func() error {
			_, _, err := s.SetAdminEnabled(ctx, owner, true)
			return err
		}},
		{"admin user", "renewed password2", func() error {
			_, err := s.RenewAdminPassword(ctx, owner, SlotAdminPassword2)
			return err
		}},
	}
	records := func() int {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM audit WHERE kind = 'permission'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := records()
	for i, c := range cases {
		if _, err := db.Exec(`ALTER TABLE audit RENAME TO audit_away`); err != nil {
			t.Fatal(err)
		}
		err := c.change()
		if _, rerr := db.Exec(`ALTER TABLE audit_away RENAME TO audit`); rerr != nil {
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
		if err := db.QueryRow(`SELECT target, reason, identity FROM audit ORDER BY id DESC LIMIT 1`).Scan(&target, &reason, &identity); err != nil {
			t.Fatal(err)
		}
		if target != c.target || reason != c.reason || identity != owner.Name {
			t.Errorf("record %q %q by %q, want %q %q by %q", target, reason, identity, c.target, c.reason, owner.Name)
		}
	}

	// A fresh service on the same database sees what memory saw.
	again, err := Open(ctx, db, Options{Console: io.Discard})
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
