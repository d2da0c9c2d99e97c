package identity

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TokenFilter selects tokens from a list, for the token lists of every
// face (the portal, GET /api/v1/tokens and `berth token list`). Zero
// fields match everything.
type TokenFilter struct {
	// Contains keeps tokens whose name contains it, without regard to case.
	Contains string
	Status   string // enabled or disabled
	ScopeMap string
	// ExpiringWithin keeps tokens with a password that expires within
	// that long from now (and has not expired yet).
	ExpiringWithin time.Duration
	// NeverUsed keeps tokens that have never been used.
	NeverUsed bool
	// UnusedFor keeps tokens not used for that long (or never).
	UnusedFor time.Duration
}

// ParseDays reads a number of days (1 to 3650) for the filters.
func ParseDays(s string) (time.Duration, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 3650 {
		return 0, errf(ErrInvalid, "%q is not a number of days: use a whole number from 1 to 3650", s)
	}
	return time.Duration(n) * 24 * time.Hour, nil
}

// Validate checks the filter's fields.
func (f TokenFilter) Validate() error {
	if f.Status != "" && f.Status != StatusEnabled && f.Status != StatusDisabled {
		return errf(ErrInvalid, "invalid status %q: use enabled or disabled", f.Status)
	}
	if f.ExpiringWithin < 0 || f.UnusedFor < 0 {
		return errf(ErrInvalid, "a number of days must be positive")
	}
	return nil
}

// Match reports whether t passes the filter at time now.
func (f TokenFilter) Match(t Token, now time.Time) bool {
	if f.Contains != "" && !strings.Contains(strings.ToLower(t.Name), strings.ToLower(f.Contains)) {
		return false
	}
	if f.Status != "" && t.Status != f.Status {
		return false
	}
	if f.ScopeMap != "" && !strings.EqualFold(t.ScopeMap, f.ScopeMap) {
		return false
	}
	if f.NeverUsed && t.LastUsed != nil {
		return false
	}
	if f.UnusedFor > 0 && t.LastUsed != nil && now.Sub(*t.LastUsed) < f.UnusedFor {
		return false
	}
	if f.ExpiringWithin > 0 {
		soon := false
		for _, p := range t.Passwords {
			if p.Expiry != nil && p.Expiry.After(now) && p.Expiry.Sub(now) <= f.ExpiringWithin {
				soon = true
			}
		}
		if !soon {
			return false
		}
	}
	return true
}

// FilterTokens returns the tokens of list that pass f at time now.
func FilterTokens(list []Token, f TokenFilter, now time.Time) []Token {
	out := make([]Token, 0, len(list))
	for _, t := range list {
		if f.Match(t, now) {
			out = append(out, t)
		}
	}
	return out
}

// String describes the filter, for pages that say what they show.
func (f TokenFilter) String() string {
	var parts []string
	if f.Contains != "" {
		parts = append(parts, fmt.Sprintf("name contains %q", f.Contains))
	}
	if f.Status != "" {
		parts = append(parts, f.Status)
	}
	if f.ScopeMap != "" {
		parts = append(parts, "scope map "+f.ScopeMap)
	}
	if f.ExpiringWithin > 0 {
		parts = append(parts, fmt.Sprintf("a password expiring within %d days", int(f.ExpiringWithin.Hours()/24)))
	}
	if f.NeverUsed {
		parts = append(parts, "never used")
	}
	if f.UnusedFor > 0 {
		parts = append(parts, fmt.Sprintf("unused for %d days", int(f.UnusedFor.Hours()/24)))
	}
	return strings.Join(parts, ", ")
}

// ParseTokenFilter reads a filter from query parameters, as the API and
// the portal take them: q (name contains), status, scopeMap,
// expiringWithinDays, neverUsed (true) and unusedDays.
func ParseTokenFilter(q url.Values) (TokenFilter, error) {
	f := TokenFilter{Contains: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), ScopeMap: strings.TrimSpace(q.Get("scopeMap"))}
	var err error
	if v := q.Get("expiringWithinDays"); v != "" {
		if f.ExpiringWithin, err = ParseDays(v); err != nil {
			return f, err
		}
	}
	if v := q.Get("unusedDays"); v != "" {
		if f.UnusedFor, err = ParseDays(v); err != nil {
			return f, err
		}
	}
	switch q.Get("neverUsed") {
	case "", "false":
	case "true", "on", "1":
		f.NeverUsed = true
	default:
		return f, errf(ErrInvalid, "invalid neverUsed %q: use true or false", q.Get("neverUsed"))
	}
	return f, f.Validate()
}
