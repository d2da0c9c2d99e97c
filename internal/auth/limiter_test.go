package auth

import (
	"fmt"
	"testing"
	"time"
)

// newTestLimiter gives addresses the same threshold as usernames, so the
// tests of each rule read alike; TestAddressThresholdIsHigher covers the
// default.
func newTestLimiter(clock *fakeClock) *Limiter {
	return NewLimiter(LimiterConfig{Now: clock.Now, AddressThreshold: 5})
}

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

	// The username is blocked from any address; the address for any username.
	for _, tt := range []struct {
		user, ip string
		ok       bool
	}{
		{"victim", "198.51.100.7", false},
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

func TestLimiterSuccessResetsUsernameOnly(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	failN(t, l, 5, "ci-token", "192.0.2.1")
	clock.Advance(time.Second)
	// The holder of the right password waits out one window and succeeds.
	if ok, _ := l.Allow("ci-token", "198.51.100.7"); !ok {
		t.Fatal("refused after the window")
	}
	l.Succeed("ci-token")
	failN(t, l, 4, "ci-token", "198.51.100.7") // a fresh count of five
	// The address that failed keeps its count.
	l.Fail("other-user", "192.0.2.1")
	if ok, _ := l.Allow("third-user", "192.0.2.1"); ok {
		t.Error("a success for a username reset the address count")
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
	l := NewLimiter(LimiterConfig{MaxEntries: 50})
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
					l.Succeed(user)
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
