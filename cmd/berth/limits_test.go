package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/ratelimit"
)

// TestCLITokenLimits sets a scope map's and a token's limits with
// `scope-map update` and `token update`, and reads them back with `token
// show`: the token's own limit overrides, the scope map's is inherited.
func TestCLITokenLimits(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, nil)
	if _, _, err := c.run(ownerPassword+"\n", "login", srv.url, "-u", "owner", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	c.ok("scope-map", "create", "-n", "ci-map", "--repository", "app", "content/read")
	c.ok("token", "create", "-n", "ci-bot", "--scope-map", "ci-map", "--no-passwords")

	out := c.ok("scope-map", "update", "-n", "ci-map", "--rate-limit", "10/s", "--push-bytes-per-day", "1GiB")
	if !strings.Contains(out, "Limits inherited by its tokens: rate 10 requests/s, 1.0 GiB pushed per day") {
		t.Errorf("scope-map update with limits:\n%s", out)
	}
	if out := c.ok("scope-map", "show", "-n", "ci-map"); !strings.Contains(out, "Limits inherited by its tokens: rate 10 requests/s, 1.0 GiB pushed per day") {
		t.Errorf("scope-map show does not show the limits:\n%s", out)
	}
	out = c.ok("token", "update", "-n", "ci-bot", "--rate-limit", "50/s", "--burst", "100", "--pull-bytes-per-day", "200GiB")
	for _, want := range []string{"requests:  50 requests/s, burst 100; 100 available now", "pulled:    0 B of 200.0 GiB per day", "pushed:    0 B of 1.0 GiB per day (from scope map ci-map)"} {
		if !strings.Contains(out, want) {
			t.Errorf("token update with limits lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("token", "show", "-n", "ci-bot"); !strings.Contains(out, "requests:  50 requests/s, burst 100") {
		t.Errorf("token show does not show the limits:\n%s", out)
	}
	var tl ratelimit.TokenLimits
	if err := json.Unmarshal([]byte(c.ok("token", "update", "-n", "ci-bot", "--rate-limit", "none", "-o", "json")), &tl); err != nil {
		t.Fatal(err)
	}
	if tl.Effective.Rate != 10 || tl.Effective.RateFrom != ratelimit.FromScopeMap || tl.Own.PullBytesPerDay != 200<<30 {
		t.Errorf("after --rate-limit none: %+v", tl)
	}
	c.fails("invalid rate", "token", "update", "-n", "ci-bot", "--rate-limit", "fast")
	c.fails("--burst", "token", "update", "-n", "ci-bot", "--burst", "0")
	c.fails("invalid size", "token", "update", "-n", "ci-bot", "--pull-bytes-per-day", "lots")
	c.fails("not found", "token", "update", "-n", "nobody-here", "--rate-limit", "1/s")
}
