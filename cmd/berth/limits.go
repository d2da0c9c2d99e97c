package main

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/ratelimit"
)

// limitFlags are the limit flags of `token update` and `scope-map update`.
type limitFlags struct {
	rate, pull, push string
	burst            int64
}

func (lf *limitFlags) register(f *pflag.FlagSet) {
	f.StringVar(&lf.rate, "rate-limit", "", "requests per second (as 50/s, 600/m or 3600/h); unlimited; none to inherit")
	f.Int64Var(&lf.burst, "burst", 0, "requests a client may send at once over the rate (default: the rate rounded up)")
	f.StringVar(&lf.pull, "pull-bytes-per-day", "", "bytes pulled per UTC day (as 200GiB); unlimited; none to inherit")
	f.StringVar(&lf.push, "push-bytes-per-day", "", "bytes pushed per UTC day (as 50GiB); unlimited; none to inherit")
}

// update reads the limit flags that were given; ok is false when none was.
func (lf *limitFlags) update(cmd *cobra.Command) (u ratelimit.Update, ok bool, err error) {
	f := cmd.Flags()
	if f.Changed("rate-limit") {
		r, err := ratelimit.ParseRate(lf.rate)
		if err != nil {
			return u, false, fmt.Errorf("--rate-limit: %w", err)
		}
		u.RatePerSecond, ok = &r, true
	}
	if f.Changed("burst") {
		if lf.burst <= 0 {
			return u, false, fmt.Errorf("--burst: give a whole number of requests, at least 1")
		}
		u.Burst, ok = &lf.burst, true
	}
	for _, b := range []struct {
		flag string
		val  string
		dst  **int64
	}{{"pull-bytes-per-day", lf.pull, &u.PullBytesPerDay}, {"push-bytes-per-day", lf.push, &u.PushBytesPerDay}} {
		if !f.Changed(b.flag) {
			continue
		}
		n, err := ratelimit.ParseBytes(b.val)
		if err != nil {
			return u, false, fmt.Errorf("--%s: %w", b.flag, err)
		}
		*b.dst, ok = &n, true
	}
	return u, ok, nil
}

func setTokenLimits(cmd *cobra.Command, c *client, name string, u ratelimit.Update) (ratelimit.TokenLimits, error) {
	var out ratelimit.TokenLimits
	err := c.do(cmd.Context(), "PATCH", "tokens/"+url.PathEscape(name)+"/limits", nil, u, &out)
	return out, err
}

func setScopeMapLimits(cmd *cobra.Command, c *client, name string, u ratelimit.Update) (ratelimit.ScopeMapLimits, error) {
	var out ratelimit.ScopeMapLimits
	err := c.do(cmd.Context(), "PATCH", "scopeMaps/"+url.PathEscape(name)+"/limits", nil, u, &out)
	return out, err
}

// printTokenLimits prints the limits part of `token show` and `token
// update`: each limit, where it comes from, and today's usage.
func printTokenLimits(c *client, tl ratelimit.TokenLimits) {
	e, u := tl.Effective, tl.Usage
	from := func(src string) string {
		if src == ratelimit.FromScopeMap {
			return " (from scope map " + tl.ScopeMap + ")"
		}
		return ""
	}
	fmt.Fprintln(c.out, "\nLimits:")
	if e.Rate > 0 {
		avail := ""
		if u.RequestsAvailable != nil {
			avail = fmt.Sprintf("; %s available now", strconv.FormatFloat(*u.RequestsAvailable, 'f', -1, 64))
		}
		fmt.Fprintf(c.out, "  requests:  %s, burst %d%s%s\n", ratelimit.FormatRate(e.Rate), e.Burst, from(e.RateFrom), avail)
	} else {
		fmt.Fprintln(c.out, "  requests:  no limit")
	}
	for _, b := range []struct {
		what       string
		limit, got int64
		src        string
	}{{"pulled", e.PullBytes, u.PulledBytes, e.PullFrom}, {"pushed", e.PushBytes, u.PushedBytes, e.PushFrom}} {
		if b.limit > 0 {
			fmt.Fprintf(c.out, "  %s:    %s of %s per day%s\n", b.what, ratelimit.FormatBytes(b.got), ratelimit.FormatBytes(b.limit), from(b.src))
		} else {
			fmt.Fprintf(c.out, "  %s:    %s today, no limit\n", b.what, ratelimit.FormatBytes(b.got))
		}
	}
	fmt.Fprintf(c.out, "  (day %s UTC; counts start again at %s)\n", u.Day, u.ResetsAt.Format("2006-01-02 15:04 UTC"))
}

// showTokenLimits prints a token's limits, if the server keeps them.
func showTokenLimits(cmd *cobra.Command, c *client, token string) {
	var tl ratelimit.TokenLimits
	if c.do(cmd.Context(), "GET", "tokens/"+url.PathEscape(token)+"/limits", nil, nil, &tl) == nil {
		printTokenLimits(c, tl)
	}
}

func printScopeMapLimits(c *client, sl ratelimit.ScopeMapLimits) {
	fmt.Fprintf(c.out, "\nLimits inherited by its tokens: %s\n", ratelimit.Describe(sl.Limits))
}

// showScopeMapLimits prints the limits a scope map's tokens inherit, if
// the server keeps limits.
func showScopeMapLimits(cmd *cobra.Command, c *client, name string) {
	var sl ratelimit.ScopeMapLimits
	if c.do(cmd.Context(), "GET", "scopeMaps/"+url.PathEscape(name)+"/limits", nil, nil, &sl) == nil {
		printScopeMapLimits(c, sl)
	}
}
