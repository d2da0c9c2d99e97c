// Package ratelimit holds the per-token limits of the data plane: requests
// per second (a token bucket with a burst) and bytes pulled and pushed per
// UTC day, set on a token or on a scope map (whose tokens inherit them). It
// keeps them in tables of its own, counts what each token uses, and refuses
// what is over a limit with 429 TOOMANYREQUESTS. On PostgreSQL the nodes of a
// cluster share every count through the database without writing to it on
// every request (see Limiter).
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// Unlimited, as a field of Limits, is set to no limit: a token's own
// Unlimited lifts the limit its scope map would give it.
const Unlimited = -1

// Limits are the limits set on one token or one scope map. A zero field is
// not set: a token without its own value inherits its scope map's.
// RatePerSecond and Burst go together: the burst of a rate is the burst
// set beside it, or else the rate rounded up (at least 1).
type Limits struct {
	RatePerSecond   float64 `json:"ratePerSecond,omitempty"`
	Burst           int64   `json:"burst,omitempty"`
	PullBytesPerDay int64   `json:"pullBytesPerDay,omitempty"`
	PushBytesPerDay int64   `json:"pushBytesPerDay,omitempty"`
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool { return l == Limits{} }

// maxRate bounds a rate so that its millionths fit the stored integer and
// nobody mistakes a typo for a limit.
const maxRate = 1_000_000

// Validate checks each field's range.
func (l Limits) Validate() error {
	switch {
	case l.RatePerSecond != Unlimited && (l.RatePerSecond < 0 || l.RatePerSecond > maxRate || math.IsNaN(l.RatePerSecond)):
		return fmt.Errorf("invalid rate limit %v: give requests per second from 0.001 to %d (as 50/s or 600/m), or -1 for unlimited", l.RatePerSecond, maxRate)
	case l.RatePerSecond > 0 && l.RatePerSecond < 0.001:
		return fmt.Errorf("invalid rate limit %v: the smallest rate is 0.001 requests/s (3.6/h)", l.RatePerSecond)
	case l.Burst < 0 || l.Burst > 10*maxRate:
		return fmt.Errorf("invalid burst %d: give a number of requests from 1 to %d", l.Burst, 10*maxRate)
	case l.Burst > 0 && l.RatePerSecond == 0:
		return errors.New("a burst needs a rate limit beside it (--rate-limit)")
	case l.PullBytesPerDay < Unlimited || l.PushBytesPerDay < Unlimited:
		return errors.New("invalid bytes per day: give a size such as 200GiB, or -1 for unlimited")
	}
	return nil
}

// Effective are the limits that apply to one token, each with where it
// comes from. A zero value means no limit.
type Effective struct {
	Rate      float64 `json:"ratePerSecond,omitempty"`
	Burst     int64   `json:"burst,omitempty"`
	PullBytes int64   `json:"pullBytesPerDay,omitempty"`
	PushBytes int64   `json:"pushBytesPerDay,omitempty"`
	// RateFrom, PullFrom and PushFrom say whether each limit is the
	// token's own ("token") or its scope map's ("scope map").
	RateFrom string `json:"rateFrom,omitempty"`
	PullFrom string `json:"pullFrom,omitempty"`
	PushFrom string `json:"pushFrom,omitempty"`
}

// Any reports whether some limit applies.
func (e Effective) Any() bool { return e.Rate > 0 || e.PullBytes > 0 || e.PushBytes > 0 }

// Sources of a limit.
const (
	FromToken    = "token"
	FromScopeMap = "scope map"
)

// Resolve combines a token's own limits with its scope map's: each limit
// is the token's when set, else the scope map's.
func Resolve(own, scopeMap Limits) Effective {
	var e Effective
	switch {
	case own.RatePerSecond != 0:
		e.Rate, e.Burst, e.RateFrom = own.RatePerSecond, own.Burst, FromToken
	case scopeMap.RatePerSecond != 0:
		e.Rate, e.Burst, e.RateFrom = scopeMap.RatePerSecond, scopeMap.Burst, FromScopeMap
	}
	if e.Rate <= 0 {
		e.Rate, e.Burst, e.RateFrom = 0, 0, ""
	} else if e.Burst <= 0 {
		e.Burst = max(1, int64(math.Ceil(e.Rate)))
	}
	e.PullBytes, e.PullFrom = pick(own.PullBytesPerDay, scopeMap.PullBytesPerDay)
	e.PushBytes, e.PushFrom = pick(own.PushBytesPerDay, scopeMap.PushBytesPerDay)
	return e
}

func pick(own, scopeMap int64) (int64, string) {
	v, from := own, FromToken
	if v == 0 {
		v, from = scopeMap, FromScopeMap
	}
	if v <= 0 {
		return 0, ""
	}
	return v, from
}

// ParseRate reads a rate: "50/s", "600/m", "3600/h" or a plain number of
// requests per second; "unlimited" is Unlimited and "none" (or "") clears
// the setting.
func ParseRate(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "", "none":
		return 0, nil
	case "unlimited":
		return Unlimited, nil
	}
	per := 1.0
	num := t
	if n, unit, ok := strings.Cut(t, "/"); ok {
		num = n
		switch unit {
		case "s", "sec", "second":
		case "m", "min", "minute":
			per = 60
		case "h", "hour":
			per = 3600
		default:
			return 0, fmt.Errorf("invalid rate %q: the unit after / is s, m or h (as 50/s)", s)
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid rate %q: give a positive number of requests per second, minute or hour (as 50/s or 600/m), unlimited, or none", s)
	}
	r := v / per
	if r < 0.001 || r > maxRate {
		return 0, fmt.Errorf("invalid rate %q: rates go from 0.001 to %d requests/s", s, maxRate)
	}
	return r, nil
}

// ParseBytes reads bytes per day: a size such as "200GiB" or "10GB";
// "unlimited" is Unlimited and "none" (or "") clears the setting.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/day"), "/d")
	switch t {
	case "", "none":
		return 0, nil
	case "unlimited":
		return Unlimited, nil
	}
	v, err := config.ParseByteSize(t)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("invalid size %q: give bytes per day such as 200GiB or 10GB, unlimited, or none", s)
	}
	return int64(v), nil
}

// FormatRate shows a rate per second, or per minute or hour when it is
// less than one a second or a minute.
func FormatRate(r float64) string {
	round := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
	switch {
	case r >= 1 || r <= 0:
		return round(r) + " requests/s"
	case r*60 >= 1:
		return round(r*60) + " requests/min"
	}
	return round(r*3600) + " requests/h"
}

// FormatBytes shows a size for people.
func FormatBytes(n int64) string { return config.ByteSize(n).Human() }

// formatWait shows a wait in whole seconds, minutes or hours, rounded up.
func formatWait(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	switch {
	case s < 1:
		s = 1
		fallthrough
	case s < 120:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min", (s+59)/60)
	}
	h, m := s/3600, (s%3600+59)/60
	if m == 60 {
		h, m = h+1, 0
	}
	if m == 0 {
		return fmt.Sprintf("%d h", h)
	}
	return fmt.Sprintf("%d h %d min", h, m)
}

// untilNextDay is the time from now to the next UTC midnight, when the
// daily counts start again.
func untilNextDay(now time.Time) time.Duration {
	now = now.UTC()
	next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	return next.Sub(now)
}

// dayOf numbers UTC days from the Unix epoch.
func dayOf(t time.Time) int64 { return t.Unix() / 86400 }
