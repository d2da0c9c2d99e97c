package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
)

// tokenStatus asks the token endpoint for a token with Basic credentials,
// as a client at address from (through the trusted proxy's
// X-Forwarded-For), and returns the status.
func (e *env) tokenStatus(user, pass, from string) int {
	req, _ := http.NewRequest("GET", e.http.URL+"/oauth2/token?service=berth", nil)
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Forwarded-For", from)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRotatingAddressesCannotLockOutAUsername: wrong passwords for a user
// or a token from ever new addresses must not refuse the right password
// from an address that has not failed.
func TestRotatingAddressesCannotLockOutAUsername(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"} })
	tokenPW, _ := e.newToken("ci-victim", actions("app", "content/read")...)
	for i, tt := range []struct{ user, pass string }{{"owner", ownerPassword}, {"ci-victim", tokenPW}} {
		t.Run(tt.user, func(t *testing.T) {
			// 20 attacker addresses, 2 guesses each, 5 at a time.
			var wg sync.WaitGroup
			addrs := make(chan string)
			for range 5 {
				wg.Go(func() {
					for a := range addrs {
						for g := range 2 {
							if st := e.tokenStatus(tt.user, fmt.Sprintf("guess-%d", g), a); st != 401 && st != 429 {
								t.Errorf("wrong password from %s: %d", a, st)
							}
						}
					}
				})
			}
			for a := range 20 {
				addrs <- fmt.Sprintf("127.%d.0.%d", 10+i, a+1)
			}
			close(addrs)
			wg.Wait()
			// The holder of the right password, from addresses that have
			// not failed, gets in every time.
			var ok sync.WaitGroup
			for c := range 13 {
				ok.Go(func() {
					from := fmt.Sprintf("127.%d.1.%d", 10+i, c+1)
					if st := e.tokenStatus(tt.user, tt.pass, from); st != 200 {
						t.Errorf("the right password from %s, a clean address, after the guesses: %d", from, st)
					}
				})
			}
			ok.Wait()
			// An address that guessed is still refused.
			if st := e.tokenStatus(tt.user, "guess-x", fmt.Sprintf("127.%d.0.1", 10+i)); st != 429 {
				t.Errorf("another guess from an address that guessed before: %d, want 429", st)
			}
		})
	}
}

// TestCurrentPasswordIsCheckedAsALogin: the current password that users
// give to change their own through the API is limited and audited like any
// login, so a leaked access token cannot guess it without end.
func TestCurrentPasswordIsCheckedAsALogin(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken("owner", ownerPassword)
	var statuses []int
	retry := ""
	for i := range 8 {
		st, _, h := e.do("PATCH", "/api/v1/users/owner", bearer(tok),
			strings.NewReader(fmt.Sprintf(`{"properties":{"password":"a-new-password-123","currentPassword":"guess-%d"}}`, i)))
		statuses = append(statuses, st)
		if st == 429 {
			retry = h.Get("Retry-After")
			break
		}
	}
	if statuses[len(statuses)-1] != 429 || retry == "" {
		t.Errorf("statuses of 8 wrong current passwords: %v; want 403s, then 429 with Retry-After", statuses)
	}
	evs, err := e.srv.Audit().List(t.Context(), audit.Filter{Identity: "owner", Kind: audit.KindLogin, Result: audit.ResultFailure, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	wrong := 0 // identical failures are folded into one record with a count
	for _, ev := range evs {
		if ev.Reason == "wrong password" {
			wrong += max(ev.Count, 1)
		}
	}
	if wrong < 5 {
		t.Errorf("%d failed logins audited for %d wrong current passwords", wrong, len(statuses)-1)
	}
	if _, err := e.id.Authenticate("owner", ownerPassword); err != nil {
		t.Errorf("the owner's password changed: %v", err)
	}
}

// TestRateLimitedFloodWithRandomUsernamesFolds: wrong Basic credentials
// with a new username each, from one client, cost the audit log the
// failures the limiter lets through (AddressThreshold and a few after
// windows) plus a folded row for the refusals, not a row per attempt; and
// the rows' counts add up to the attempts.
func TestRateLimitedFloodWithRandomUsernamesFolds(t *testing.T) {
	e := newEnv(t)
	const attempts = 400
	for i := range attempts {
		if st, _, _ := e.do("GET", "/v2/", basic(fmt.Sprintf("u%d", i), "wrong"), nil); st != 401 && st != 429 {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	events, err := e.srv.Audit().List(t.Context(), audit.Filter{Kind: audit.KindLogin, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	total, limited := 0, 0
	for _, ev := range events {
		total += max(ev.Count, 1)
		if strings.HasPrefix(ev.Reason, audit.ReasonRateLimited) {
			limited++
			if ev.Count > 1 && !strings.HasSuffix(ev.Reason, audit.OthersSuffix) {
				t.Errorf("folded refusals of several usernames read %q", ev.Reason)
			}
		}
	}
	t.Logf("%d attempts: %d audit rows, %d of them refusals", attempts, len(events), limited)
	if total != attempts {
		t.Errorf("the rows count %d attempts, want %d", total, attempts)
	}
	// 50 checked failures (the address threshold), a few more checked as
	// windows close, and the refusals folded per fold window.
	if len(events) > 60 || limited > 2 {
		t.Errorf("%d audit rows (%d of refusals) for %d attempts from one client, want at most 60 (2)", len(events), limited, attempts)
	}
}
