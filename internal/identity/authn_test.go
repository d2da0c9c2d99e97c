package identity

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// TestFailedLoginsCostTheSame: every failed login pays exactly one slow
// (argon2id) hash, whether the name is unknown, a token's, the admin
// user's or a user's, so the time of a failure does not tell which names
// exist or what they are; a token's right password pays none. Counted, not
// timed: the figures are in the benchmark.
func TestFailedLoginsCostTheSame(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, t.TempDir(), clk)
	var slow atomic.Int64
	s.verifyUser = func(hash, password string) bool {
		slow.Add(1)
		return auth.VerifyUserPassword(hash, password)
	}
	ctx := context.Background()
	_, creds, err := s.CreateToken(ctx, owner, TokenSpec{Name: "ci-token", Actions: grants(t, "app", "content/read"),
		Passwords: []string{SlotPassword1, SlotPassword2}})
	if err != nil {
		t.Fatal(err)
	}
	tokenPW := creds.Passwords[0].Value
	_, admin, err := s.SetAdminEnabled(ctx, owner, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, owner, UserSpec{Name: "alice", Role: "pull", Password: "alice-password-1"}); err != nil {
		t.Fatal(err)
	}
	_, expiring, err := s.CreateToken(ctx, owner, TokenSpec{Name: "expiring", ScopeMap: auth.ScopeMapPull,
		Passwords: []string{SlotPassword1}, Expiry: clk.now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, user, pass string
		ok               bool
		slow             int64
	}{
		{"unknown name", "nobody", "guess", false, 1},
		{"token, wrong password", "ci-token", "guess", false, 1},
		{"admin user, wrong password", s.admin.name, "guess", false, 1},
		{"user, wrong password", "alice", "guess", false, 1},
		{"token, right password", "ci-token", tokenPW, true, 0},
		{"admin user, right password", s.admin.name, admin.Passwords[0].Value, true, 0},
		{"user, right password", "alice", "alice-password-1", true, 1},
		{"user, right password again (cached)", "alice", "alice-password-1", true, 0},
		{"token, expired password", "expiring", expiring.Passwords[0].Value, false, 1},
	}
	for _, tt := range tests {
		if tt.name == "token, expired password" {
			clk.add(time.Minute)
		}
		before := slow.Load()
		_, err := s.Authenticate(tt.user, tt.pass)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Authenticate error %v, want success %v", tt.name, err, tt.ok)
		}
		if got := slow.Load() - before; got != tt.slow {
			t.Errorf("%s: %d slow hashes, want %d", tt.name, got, tt.slow)
		}
	}
}
