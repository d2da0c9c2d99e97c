package auth

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestLimiter gives addresses the same threshold as usernames, so the
// tests of each rule read alike; TestAddressThresholdIsHigher covers the
// default. It never sleeps.
func newTestLimiter(clock *fakeClock) *Limiter {
	return NewLimiter(LimiterConfig{Now: clock.Now, AddressThreshold: 5, Sleep: func(time.Duration) {}})
}

// sleeps counts the waits of a Limiter.
type sleeps struct{ n int }

func (s *sleeps) Sleep(time.Duration) { s.n++ }

// failN records n failures, checking that each attempt was allowed first.
func failN(t *testing.T, l *Limiter, n int, user, ip string) {
	t.Helper()
	for i := range n {
		if ok, wait := l.Allow(user, ip); !ok {
			t.Fatalf("attempt %d refused, retry after %v", i+1, wait)
		}
		l.Fail(user, ip)
	}
}

func TestLimiterBackoff(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	failN(t, l, 4, "ci-token", "192.0.2.1")
	// The fifth failure opens the first window.
	failN(t, l, 1, "ci-token", "192.0.2.1")
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		w *= time.Second
		ok, wait := l.Allow("ci-token", "192.0.2.1")
		if ok || wait != w {
			t.Fatalf("window %d: Allow = %v, %v; want false, %v", i, ok, wait, w)
		}
		// Refused attempts do not lengthen the window.
		if ok, wait2 := l.Allow("ci-token", "192.0.2.1"); ok || wait2 != w {
			t.Fatalf("window %d: second refusal %v, %v", i, ok, wait2)
		}
		clock.Advance(w - time.Millisecond)
		if ok, wait := l.Allow("ci-token", "192.0.2.1"); ok || wait != time.Second {
			t.Fatalf("window %d: 1ms before the end Allow = %v, %v; want false, 1s (rounded up)", i, ok, wait)
		}
		clock.Advance(time.Millisecond)
		failN(t, l, 1, "ci-token", "192.0.2.1")
	}
}

func TestLimiterKeysAreSeparate(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	failN(t, l, 5, "victim", "192.0.2.1")

	// The pair and the address are refused; the username is not, from an
	// address that has not failed (see TestLimiterRotatingAddresses).
	for _, tt := range []struct {
		user, ip string
		ok       bool
	}{
		{"victim", "192.0.2.1", false},
		{"victim", "198.51.100.7", true},
		{"someone", "192.0.2.1", false},
		{"someone", "198.51.100.7", true},
		{"", "198.51.100.7", true},
		{"victim", "", false},
		{"", "", true},
	} {
		if ok, _ := l.Allow(tt.user, tt.ip); ok != tt.ok {
			t.Errorf("Allow(%q, %q) = %v, want %v", tt.user, tt.ip, ok, tt.ok)
		}
	}
}

func TestLimiterSuccessResetsPairOnly(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	failN(t, l, 4, "ci-token", "192.0.2.1")
	// The holder of the right password, at another address, logs in.
	failN(t, l, 1, "ci-token", "198.51.100.7")
	clock.Advance(time.Second)
	l.Succeed("ci-token", "198.51.100.7")
	// The other pair, both addresses and the username keep their counts.
	for _, tt := range []struct {
		user, ip string
		want     int
	}{{"ci-token", "198.51.100.7", 0}, {"ci-token", "192.0.2.1", 4}, {"", "192.0.2.1", 4}, {"", "198.51.100.7", 1}, {"ci-token", "", 5}} {
		k := limiterKeys(tt.user, tt.ip)
		key := k.client
		if tt.user == "" {
			key = k.addr
		} else if tt.ip == "" {
			key = k.user
		}
		got := 0
		if e := l.fails.get(key, clock.Now()); e != nil {
			got = e.failures
		}
		if got != tt.want {
			t.Errorf("after the success, %q has %d failures, want %d", key, got, tt.want)
		}
	}
	failN(t, l, 4, "ci-token", "198.51.100.7") // a fresh count for the pair
}

// TestLimiterRotatingAddresses: guesses at one username from ever new
// addresses never refuse the right password from an address that has not
// failed; they slow down unknown addresses and refuse those that failed.
func TestLimiterRotatingAddresses(t *testing.T) {
	clock := newClock()
	var slept sleeps
	l := NewLimiter(LimiterConfig{Now: clock.Now, Sleep: slept.Sleep})
	l.Succeed("owner", "198.51.100.1") // the owner's usual address
	for i := range 1000 {
		ip := fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		for range 2 {
			if ok, _ := l.Allow("owner", ip); ok {
				l.Fail("owner", ip)
			}
		}
		clock.Advance(100 * time.Millisecond)
	}
	slowed := slept.n
	if slowed == 0 {
		t.Error("a username under pressure did not slow down attempts from unknown addresses")
	}
	for _, tt := range []struct {
		name, ip string
		ok, slow bool
	}{
		{"known address", "198.51.100.1", true, false},
		{"new address", "203.0.113.9", true, true},
		{"another new address", "203.0.113.10", true, true},
		{"address that guessed", "10.0.3.7", false, false},
	} {
		before := slept.n
		ok, _ := l.Allow("owner", tt.ip)
		if ok != tt.ok || (slept.n > before) != tt.slow {
			t.Errorf("%s: Allow = %v, slowed %v; want %v, %v", tt.name, ok, slept.n > before, tt.ok, tt.slow)
		}
	}
	// An address that once failed, but logged in as the username before,
	// is not refused for the username's sake.
	l.Succeed("owner", "198.51.100.2")
	l.Fail("owner", "198.51.100.2")
	if ok, _ := l.Allow("owner", "198.51.100.2"); !ok {
		t.Error("a known address with one typo was refused while the username is under pressure")
	}
}

// TestLimiterKnownBounded: the table of known addresses is bounded too.
func TestLimiterKnownBounded(t *testing.T) {
	clock := newClock()
	l := NewLimiter(LimiterConfig{Now: clock.Now, MaxEntries: 100, Sleep: func(time.Duration) {}})
	for i := range 1000 {
		l.Succeed("user", fmt.Sprintf("10.1.%d.%d", i/256, i%256))
		l.Fail(fmt.Sprintf("user-%d", i), fmt.Sprintf("10.2.%d.%d", i/256, i%256))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, m := l.known.lru.Len(), l.fails.lru.Len(); n > 100 || m > 100 {
		t.Errorf("%d known addresses and %d failure counts; the bound is 100 each", n, m)
	}
}

func TestLimiterForgets(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	failN(t, l, 5, "ci-token", "")
	if ok, _ := l.Allow("ci-token", ""); ok {
		t.Fatal("not blocked after five failures")
	}
	// Just before ForgetAfter (15m, default) the count is still there: one
	// more failure opens a 2s window.
	clock.Advance(15*time.Minute - time.Second)
	failN(t, l, 1, "ci-token", "")
	if ok, wait := l.Allow("ci-token", ""); ok || wait != 2*time.Second {
		t.Fatalf("Allow = %v, %v; want a 2s window", ok, wait)
	}
	// 15 minutes after the last failure it is forgotten: five free tries again.
	clock.Advance(15 * time.Minute)
	failN(t, l, 4, "ci-token", "")
	if l.Len() != 1 {
		t.Errorf("Len = %d, want 1", l.Len())
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := newClock()
	l := NewLimiter(LimiterConfig{MaxEntries: 100, Now: clock.Now})
	failN(t, l, 5, "victim", "")
	for i := range 1000 {
		l.Fail(fmt.Sprintf("spray-%d", i), "")
		if l.Len() > 100 {
			t.Fatalf("Len = %d after %d inserts, cap is 100", l.Len(), i+1)
		}
	}
	// The oldest entry was evicted.
	if ok, _ := l.Allow("victim", ""); !ok {
		t.Error("oldest entry was not evicted")
	}
	// Stale entries are dropped as they are met.
	clock.Advance(time.Hour)
	l.Allow("anyone", "")
	if l.Len() != 0 {
		t.Errorf("Len = %d after everything decayed, want 0", l.Len())
	}
}

func TestLimiterAddresses(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.1:5123", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:443", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := normalizeAddr(tt.in); got != tt.want {
			t.Errorf("normalizeAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	clock := newClock()
	l := NewLimiter(LimiterConfig{Now: clock.Now, AddressThreshold: 5})
	failN(t, l, 5, "", "2001:db8:1:2::1")
	if ok, _ := l.Allow("", "[2001:db8:1:2:ffff::1]:9999"); ok {
		t.Error("another address in the same /64 was not limited")
	}
	if ok, _ := l.Allow("", "2001:db8:1:3::1"); !ok {
		t.Error("an address in another /64 was limited")
	}
}

// TestAddressThresholdIsHigher: one shared address (a CI runner, NAT) may
// fail more often than one username before it is slowed.
func TestAddressThresholdIsHigher(t *testing.T) {
	clock := newClock()
	l := NewLimiter(LimiterConfig{Now: clock.Now})
	for i := range 49 {
		failN(t, l, 1, fmt.Sprintf("user-%d", i), "192.0.2.7")
	}
	if ok, _ := l.Allow("someone-else", "192.0.2.7"); !ok {
		t.Fatal("the address was limited before 10 × Threshold failures")
	}
	failN(t, l, 1, "user-49", "192.0.2.7")
	if ok, _ := l.Allow("someone-else", "192.0.2.7"); ok {
		t.Fatal("the address was not limited after 10 × Threshold failures")
	}
}

// TestLimiterConcurrent is for the race detector: the limiter is shared by
// every request handler.
func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(LimiterConfig{MaxEntries: 50, Sleep: func(time.Duration) {}})
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				user, ip := fmt.Sprintf("user-%d", i%70), fmt.Sprintf("192.0.2.%d", g)
				if ok, _ := l.Allow(user, ip); ok {
					l.Fail(user, ip)
				}
				if i%7 == 0 {
					l.Succeed(user, ip)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := l.Len(); n > 50 {
		t.Errorf("Len = %d, cap 50", n)
	}
}

// TestGuardIsPerClient: while one client's attempt holds its lock, the
// attempts of every other client (another address, or another username
// from the same address) go ahead; a lock is forgotten once nobody holds
// or waits for it, so memory is bounded by the attempts in progress.
func TestGuardIsPerClient(t *testing.T) {
	l := NewLimiter(LimiterConfig{})
	unlock := l.Guard("owner", "127.0.0.1")
	for i := range 1000 {
		l.Guard("owner", fmt.Sprintf("127.1.%d.%d", i/250, i%250+1))()
		l.Guard(fmt.Sprintf("user-%d", i), "127.0.0.1")()
	}
	if n := l.clients.len(); n != 1 {
		t.Errorf("%d client locks kept while one is held, want 1", n)
	}
	unlock()
	if n := l.clients.len(); n != 0 {
		t.Errorf("%d client locks kept after all are released, want 0", n)
	}
}

// TestSlowedAttemptsWaitWithoutTheClientLock: two concurrent attempts of
// one clean client for a username under pressure are slowed down side by
// side, not one behind the other's wait; afterwards they are decided
// again, so the second is refused once the first has failed, unchecked.
func TestSlowedAttemptsWaitWithoutTheClientLock(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	sleeping := make(chan struct{})
	wake := make(chan struct{})
	l := NewLimiter(LimiterConfig{Now: clock.Now, Sleep: func(time.Duration) { sleeping <- struct{}{}; <-wake }})
	for i := range 5 {
		l.Fail("owner", fmt.Sprintf("192.0.2.%d", i+1))
	}
	var checks atomic.Int64
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			errs <- l.Attempt("owner", "198.51.100.7", func() error { checks.Add(1); return errors.New("wrong password") })
		}()
	}
	<-sleeping
	<-sleeping // both wait at once
	close(wake)
	var limited int
	for range 2 {
		var le *LimitedError
		if err := <-errs; errors.As(err, &le) {
			limited++
		}
	}
	if n := checks.Load(); n != 1 || limited != 1 {
		t.Errorf("%d checks and %d refusals, want 1 and 1", n, limited)
	}
	if n, q := l.clients.len(), l.users.len(); n != 0 || q != 0 {
		t.Errorf("%d client and %d username locks kept after the attempts, want 0", n, q)
	}
}

// TestSlowChecksAreBounded: guesses from ever new addresses for several
// usernames under pressure are checked one at a time per username and
// SlowChecks at a time in all, the rest waiting their turn.
func TestSlowChecksAreBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := NewLimiter(LimiterConfig{Now: clock.Now, SlowChecks: 2, Sleep: func(time.Duration) {}})
	const users, each = 4, 3
	for u := range users {
		for i := range 5 {
			l.Fail(fmt.Sprintf("user-%d", u), fmt.Sprintf("192.0.2.%d", i+1))
		}
	}
	release := make(chan struct{})
	var inFlight, most atomic.Int64
	var perUser [users]atomic.Int64
	var wg sync.WaitGroup
	for u := range users {
		for i := range each {
			wg.Go(func() {
				ip := fmt.Sprintf("198.51.%d.%d", u, i+1)
				_ = l.Attempt(fmt.Sprintf("user-%d", u), ip, func() error {
					n := inFlight.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					if perUser[u].Add(1) > 1 {
						t.Errorf("two checks for user-%d at once", u)
					}
					<-release
					perUser[u].Add(-1)
					inFlight.Add(-1)
					return errors.New("wrong password")
				})
			})
		}
	}
	for inFlight.Load()+int64(l.Queued()) < users*each {
		runtime.Gosched()
	}
	if n := inFlight.Load(); n != 2 {
		t.Errorf("%d slowed-down checks at once, want 2 (SlowChecks)", n)
	}
	close(release)
	wg.Wait()
	if n := most.Load(); n > 2 {
		t.Errorf("up to %d slowed-down checks at once, want at most 2", n)
	}
}

// TestVouchedAttemptsSkipTheSlowDown: under pressure, an attempt whose
// password is vouched for goes ahead without waiting; one that is not
// waits; an address that failed is refused either way, unchecked.
func TestVouchedAttemptsSkipTheSlowDown(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	var slept sleeps
	l := NewLimiter(LimiterConfig{Now: clock.Now, Sleep: slept.Sleep})
	for i := range 5 {
		l.Fail("owner", fmt.Sprintf("192.0.2.%d", i+1))
	}
	tests := []struct {
		name, ip string
		vouched  bool
		sleeps   int
		limited  bool
	}{
		{"clean address, vouched", "198.51.100.1", true, 0, false},
		{"clean address, not vouched", "198.51.100.2", false, 1, false},
		{"failed address, vouched", "192.0.2.1", true, 0, true},
	}
	for _, tt := range tests {
		slept.n = 0
		checked := false
		err := l.AttemptVouched("owner", tt.ip, func() bool { return tt.vouched }, func() error { checked = true; return nil })
		var le *LimitedError
		if limited := errors.As(err, &le); limited != tt.limited || checked == tt.limited || slept.n != tt.sleeps {
			t.Errorf("%s: limited %v, checked %v, %d sleeps; want limited %v, %d sleeps", tt.name, limited, checked, slept.n, tt.limited, tt.sleeps)
		}
	}
}
