package identity

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// TestRightPasswordIsNotQueuedBehindAFlood: while guesses for a username
// under pressure come from ever new addresses, more of them than the slow
// hash may run at once, its holder logging in from an address it logged in
// from before, and another user from a clean address, get in while the
// guesses are still waiting: the guesses take one slow check at a time, so
// they cannot fill the slow hash. Counted, not timed: the guesses' checks
// are held until the end.
func TestRightPasswordIsNotQueuedBehindAFlood(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, t.TempDir(), clk)
	ctx := context.Background()
	for _, u := range []UserSpec{{Name: "victim", Role: "pull", Password: "victim-password-1"}, {Name: "alice", Role: "pull", Password: "alice-password-1"}} {
		if _, err := s.CreateUser(ctx, owner, u); err != nil {
			t.Fatal(err)
		}
	}
	var holding atomic.Bool
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s.verifyUser = func(hash, password string) bool {
		if holding.Load() && strings.HasPrefix(password, "guess") {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			defer inFlight.Add(-1)
		}
		return auth.VerifyUserPassword(hash, password)
	}
	l := auth.NewLimiter(auth.LimiterConfig{Now: clk.now, Sleep: func(time.Duration) {}})
	login := func(user, password, ip string) error {
		return l.Attempt(user, ip, func() error {
			_, err := s.Authenticate(user, password)
			return err
		})
	}

	const known = "127.1.0.1"
	if err := login("victim", "victim-password-1", known); err != nil {
		t.Fatal(err)
	}
	clk.add(userCacheTTL + time.Second) // the right password is no longer cached
	for i := range 5 {                  // the username is under pressure
		if err := login("victim", "guess", fmt.Sprintf("127.2.0.%d", i+1)); err == nil {
			t.Fatal("a wrong password got in")
		}
	}

	holding.Store(true)
	guessers := 3 * cap(s.argon)
	var wg sync.WaitGroup
	for i := range guessers {
		wg.Go(func() {
			if err := login("victim", fmt.Sprintf("guess-%d", i), fmt.Sprintf("127.3.%d.%d", i/250, i%250+1)); err == nil {
				t.Error("a wrong password got in")
			}
		})
	}
	// Wait until every guess is either in its check or waiting for the
	// username's turn, failing if more than one is checked at once.
	for inFlight.Load()+int64(l.Queued()) < int64(guessers) {
		if n := most.Load(); n > 1 {
			t.Fatalf("%d guesses for one username from unknown addresses checked at once (slow hash for %d), want 1", n, cap(s.argon))
		}
		runtime.Gosched()
	}

	if err := login("victim", "victim-password-1", known); err != nil {
		t.Errorf("the right password from a known address during the flood: %v", err)
	}
	if err := login("alice", "alice-password-1", "127.4.0.1"); err != nil {
		t.Errorf("another user's right password from a clean address during the flood: %v", err)
	}
	// The right password, just verified, from a clean address: vouched
	// for, it skips the queue of guesses.
	clean := func(password string) error {
		return l.AttemptVouched("victim", "127.5.0.1", func() bool { return s.Remembered("victim", password) }, func() error {
			_, err := s.Authenticate("victim", password)
			return err
		})
	}
	if err := clean("victim-password-1"); err != nil {
		t.Errorf("the right password, recently verified, from a clean address during the flood: %v", err)
	}
	if n, q := inFlight.Load(), l.Queued(); n != 1 || q != guessers-1 {
		t.Errorf("after the right logins %d guesses in their check and %d waiting, want 1 and %d", n, q, guessers-1)
	}
	once.Do(func() { close(release) })
	wg.Wait()
	if n := most.Load(); n != 1 {
		t.Errorf("at most %d guesses checked at once, want 1", n)
	}
}

// TestRemembered: only a password known to be right without a slow hash
// is vouched for: a user's recently verified one, a token's current one.
func TestRemembered(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, t.TempDir(), clk)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, owner, UserSpec{Name: "alice", Role: "pull", Password: "alice-password-1"}); err != nil {
		t.Fatal(err)
	}
	_, creds, err := s.CreateToken(ctx, owner, TokenSpec{Name: "ci-token", ScopeMap: auth.ScopeMapPull, Passwords: []string{SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, user, password string, want bool) {
		t.Helper()
		if got := s.Remembered(user, password); got != want {
			t.Errorf("%s: Remembered = %v, want %v", what, got, want)
		}
	}
	check("user, not yet verified", "alice", "alice-password-1", false)
	if _, err := s.Authenticate("alice", "alice-password-1"); err != nil {
		t.Fatal(err)
	}
	check("user, verified", "alice", "alice-password-1", true)
	check("user, wrong password", "alice", "guess", false)
	check("token, right password", "ci-token", creds.Passwords[0].Value, true)
	check("token, wrong password", "ci-token", "guess", false)
	check("unknown name", "nobody", "guess", false)
	clk.add(userCacheTTL)
	check("user, verified too long ago", "alice", "alice-password-1", false)
}
