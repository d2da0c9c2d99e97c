package auth

import (
	"errors"
	"testing"
	"time"
)

// TestLimiterAttempt: an attempt counts its check's failure, is refused
// without running the check once the client is held back, and runs the
// check again when the window has passed.
func TestLimiterAttempt(t *testing.T) {
	clock := newClock()
	l := newTestLimiter(clock)
	wrong := errors.New("wrong password")
	checks := 0
	attempt := func(err error) error {
		return l.Attempt("ci-token", "192.0.2.1", func() error { checks++; return err })
	}
	for i := range 5 {
		if err := attempt(wrong); err != wrong {
			t.Fatalf("attempt %d = %v, want the check's error", i+1, err)
		}
	}
	err := attempt(nil)
	var limited *LimitedError
	if !errors.As(err, &limited) || limited.RetryAfter != time.Second || checks != 5 {
		t.Fatalf("sixth attempt = %v after %d checks; want a LimitedError of 1s without a check", err, checks)
	}
	clock.Advance(time.Second)
	if err := attempt(nil); err != nil || checks != 6 {
		t.Fatalf("after the window: %v, %d checks", err, checks)
	}
}
