package identity

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newService(t *testing.T, dir string, clk *clock) *Service {
	t.Helper()
	store, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), store.DB(), Options{OwnerPassword: "owner-password-1", Now: clk.now, Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); store.Close() })
	return s
}

func grants(t *testing.T, pattern string, acts ...string) []string {
	out, err := auth.RepositoryActions(pattern, acts...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPasswordExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, t.TempDir(), clk)
	_, creds, err := s.CreateToken(context.Background(), owner, TokenSpec{Name: "expiring", Actions: grants(t, "app", "content/read"),
		Passwords: []string{SlotPassword1}, Expiry: clk.now().Add(time.Hour)})
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
	if _, _, err := s.CreateToken(context.Background(), owner, TokenSpec{Name: "past-expiry", ScopeMap: auth.ScopeMapPull,
		Passwords: []string{SlotPassword1}, Expiry: clk.now().Add(-time.Minute)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expiry in the past: %v, want ErrInvalid", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	s := newService(t, dir, clk)
	ctx := context.Background()
	if _, err := s.CreateScopeMap(ctx, owner, ScopeMapSpec{Name: "team-read", Actions: grants(t, "team/*", "content/read")}); err != nil {
		t.Fatal(err)
	}
	_, creds, err := s.CreateToken(ctx, owner, TokenSpec{Name: "reader", ScopeMap: "team-read", Passwords: []string{SlotPassword2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("reader", creds.Passwords[0].Value); err != nil {
		t.Fatal(err)
	}
	s.FlushLastUsed()
	s2 := newService(t, dir, clk)
	login, err := s2.Authenticate("reader", creds.Passwords[0].Value)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got := auth.Allowed(login.Identity, "team/x"); got != auth.ContentRead {
		t.Fatalf("after restart the token may %v on team/x", got)
	}
	tok, err := s2.GetToken(owner, "reader")
	if err != nil || len(tok.Passwords) != 1 || tok.Passwords[0].Name != SlotPassword2 || tok.Passwords[0].LastUsed == nil {
		t.Fatalf("token after restart: %+v %v", tok, err)
	}
}

func TestScopeMapRules(t *testing.T) {
	s := newService(t, t.TempDir(), &clock{t: time.Now()})
	ctx := context.Background()
	tests := []struct {
		name    string
		spec    ScopeMapSpec
		wantErr error
	}{
		{"valid", ScopeMapSpec{Name: "valid-map", Actions: grants(t, "samples/*", "content/read")}, nil},
		{"duplicate", ScopeMapSpec{Name: "valid-map", Actions: grants(t, "x", "content/read")}, ErrConflict},
		{"built-in name", ScopeMapSpec{Name: auth.ScopeMapAdmin}, ErrConflict},
		{"short name", ScopeMapSpec{Name: "abc"}, ErrInvalid},
		{"bad pattern", ScopeMapSpec{Name: "bad-pattern", Actions: []string{"repositories/a/*/b/content/read"}}, ErrInvalid},
		{"bad action", ScopeMapSpec{Name: "bad-action", Actions: []string{"repositories/a/content/execute"}}, ErrInvalid},
		{"long description", ScopeMapSpec{Name: "long-desc", Description: string(make([]byte, 300))}, ErrInvalid},
	}
	for _, tt := range tests {
		_, err := s.CreateScopeMap(ctx, owner, tt.spec)
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := s.UpdateScopeMap(ctx, owner, auth.ScopeMapPull, ScopeMapUpdate{Add: grants(t, "*", "content/write")}); !errors.Is(err, ErrForbidden) {
		t.Errorf("changing a built-in: %v", err)
	}
	if _, err := s.DeleteScopeMap(ctx, owner, auth.ScopeMapPull, true); !errors.Is(err, ErrForbidden) {
		t.Errorf("deleting a built-in: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "uses-map", ScopeMap: "valid-map"}); err != nil {
		t.Fatal(err)
	}
	if users, err := s.DeleteScopeMap(ctx, owner, "valid-map", false); !errors.Is(err, ErrInUse) || len(users) != 1 {
		t.Errorf("deleting a map in use: %v %v", users, err)
	}
	if users, err := s.DeleteScopeMap(ctx, owner, "valid-map", true); err != nil || len(users) != 1 || users[0] != "uses-map" {
		t.Errorf("force delete: %v %v", users, err)
	}
}

func TestManagementPermissions(t *testing.T) {
	s := newService(t, t.TempDir(), &clock{t: time.Now()})
	ctx := context.Background()
	for _, role := range []auth.Role{auth.RoleReader, auth.RolePull, auth.RolePush, auth.RoleDelete} {
		actor := auth.Identity{Kind: auth.KindUser, Name: "someone", Role: role}
		if _, err := s.CreateScopeMap(ctx, actor, ScopeMapSpec{Name: "by-" + string(role), Actions: grants(t, "x", "content/read")}); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s created a scope map: %v", role, err)
		}
	}
	contributor := auth.Identity{Kind: auth.KindUser, Name: "c", Role: auth.RoleContributor}
	if _, err := s.CreateUser(ctx, contributor, UserSpec{Name: "newuser", Role: "owner", Password: "a-long-password"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("contributor created a user: %v", err)
	}
	for _, id := range []auth.Identity{{Kind: auth.KindToken, Name: "t"}, {Kind: auth.KindAdmin, Name: "berth"}, {}} {
		if _, err := s.ListTokens(id); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s listed tokens: %v", id, err)
		}
	}
	if err := s.DeleteUser(ctx, owner, "owner"); !errors.Is(err, ErrForbidden) {
		t.Errorf("deleted the last owner: %v", err)
	}
}

func TestNamesAreUniqueAcrossIdentities(t *testing.T) {
	s := newService(t, t.TempDir(), &clock{t: time.Now()})
	ctx := context.Background()
	if _, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "owner", ScopeMap: auth.ScopeMapPull}); !errors.Is(err, ErrConflict) {
		t.Errorf("token named like a user: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "berth", ScopeMap: auth.ScopeMapPull}); !errors.Is(err, ErrConflict) {
		t.Errorf("token named like the admin user: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "shared", ScopeMap: auth.ScopeMapPull}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, owner, UserSpec{Name: "shared", Role: "reader", Password: "a-long-password"}); !errors.Is(err, ErrConflict) {
		t.Errorf("user named like a token: %v", err)
	}
}

func TestAdminUser(t *testing.T) {
	s := newService(t, t.TempDir(), &clock{t: time.Now()})
	ctx := context.Background()
	if _, err := s.Authenticate("berth", "x"); err == nil {
		t.Fatal("admin login while disabled and without passwords")
	}
	_, creds, err := s.SetAdminEnabled(ctx, owner, true)
	if err != nil || creds == nil || len(creds.Passwords) != 2 {
		t.Fatalf("enable admin: %v %+v", err, creds)
	}
	login, err := s.Authenticate("berth", creds.Passwords[1].Value)
	if err != nil || login.Identity.Kind != auth.KindAdmin || login.Subject.Slot != SlotAdminPassword2 {
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

func TestUserLogin(t *testing.T) {
	s := newService(t, t.TempDir(), &clock{t: time.Now()})
	ctx := context.Background()
	if _, err := s.Authenticate("owner", "owner-password-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("owner", "owner-password-2"); err == nil {
		t.Fatal("wrong password accepted")
	}
	pw := "new-owner-password"
	if _, err := s.UpdateUser(ctx, owner, "owner", UserUpdate{Password: &pw}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("own password changed without the current one: %v", err)
	}
	wrong := "not-the-password"
	if _, err := s.UpdateUser(ctx, owner, "owner", UserUpdate{Password: &pw, Current: &wrong}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("own password changed with a wrong current one: %v", err)
	}
	cur := "owner-password-1"
	if _, err := s.UpdateUser(ctx, owner, "owner", UserUpdate{Password: &pw, Current: &cur}); err != nil {
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
	if _, err := s.UpdateUser(ctx, owner, "owner", UserUpdate{Password: &short}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
}
