package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/ratelimit"
)

// limitsView is the limits section of a token's page.
type limitsView struct {
	Rows     []limitRow
	ResetsAt string
	// The token's own settings, as the form shows them.
	Rate, Burst, Pull, Push string
}

type limitRow struct {
	What, Limit, From, Usage string
}

// tokenLimits builds the limits section of token t's page; nil when the
// portal has no limiter.
func (h *Handler) tokenLimits(r *http.Request, rq *request, t identity.Token) *limitsView {
	if h.limits == nil {
		return nil
	}
	tl, err := h.limits.Token(r.Context(), rq.id, t.Name)
	if err != nil {
		h.log.Warn("portal: could not read a token's limits", "token", t.Name, "err", err)
		return nil
	}
	e, u := tl.Effective, tl.Usage
	from := func(src string) string {
		switch src {
		case ratelimit.FromToken:
			return "this token"
		case ratelimit.FromScopeMap:
			return "scope map " + tl.ScopeMap
		}
		return ""
	}
	v := &limitsView{ResetsAt: fmtTime(u.ResetsAt)}
	rate := limitRow{What: "Requests", Limit: "no limit"}
	if e.Rate > 0 {
		rate.Limit = fmt.Sprintf("%s, burst %d", ratelimit.FormatRate(e.Rate), e.Burst)
		rate.From = from(e.RateFrom)
		if u.RequestsAvailable != nil {
			rate.Usage = fmt.Sprintf("%s of %d requests available now", strconv.FormatFloat(*u.RequestsAvailable, 'f', -1, 64), e.Burst)
		}
	}
	pull := limitRow{What: "Bytes pulled per day (UTC)", Limit: "no limit", Usage: ratelimit.FormatBytes(u.PulledBytes) + " today"}
	if e.PullBytes > 0 {
		pull.Limit, pull.From = ratelimit.FormatBytes(e.PullBytes), from(e.PullFrom)
		pull.Usage = fmt.Sprintf("%s of %s today", ratelimit.FormatBytes(u.PulledBytes), ratelimit.FormatBytes(e.PullBytes))
	}
	push := limitRow{What: "Bytes pushed per day (UTC)", Limit: "no limit", Usage: ratelimit.FormatBytes(u.PushedBytes) + " today"}
	if e.PushBytes > 0 {
		push.Limit, push.From = ratelimit.FormatBytes(e.PushBytes), from(e.PushFrom)
		push.Usage = fmt.Sprintf("%s of %s today", ratelimit.FormatBytes(u.PushedBytes), ratelimit.FormatBytes(e.PushBytes))
	}
	v.Rows = []limitRow{rate, pull, push}
	own := tl.Own
	v.Rate = formValue(own.RatePerSecond == ratelimit.Unlimited, own.RatePerSecond > 0, strconv.FormatFloat(own.RatePerSecond, 'f', -1, 64)+"/s")
	if own.Burst > 0 {
		v.Burst = strconv.FormatInt(own.Burst, 10)
	}
	v.Pull = formValue(own.PullBytesPerDay == ratelimit.Unlimited, own.PullBytesPerDay > 0, ratelimit.FormatBytes(own.PullBytesPerDay))
	v.Push = formValue(own.PushBytesPerDay == ratelimit.Unlimited, own.PushBytesPerDay > 0, ratelimit.FormatBytes(own.PushBytesPerDay))
	return v
}

func formValue(unlimited, set bool, s string) string {
	switch {
	case unlimited:
		return "unlimited"
	case set:
		return s
	}
	return ""
}

// updateTokenLimits sets a token's own limits from the form: an empty
// field clears the setting (the scope map's applies).
func (h *Handler) updateTokenLimits(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if h.limits == nil {
		h.notFound(w, r)
		return
	}
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change tokens")
		return
	}
	var u ratelimit.Update
	errs := map[string]string{}
	rate, err := ratelimit.ParseRate(r.PostForm.Get("rate"))
	if err != nil {
		errs["rate"] = capitalize(err.Error()) + "."
	}
	u.RatePerSecond = &rate
	if b := r.PostForm.Get("burst"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			errs["burst"] = "The burst is a whole number of requests, at least 1."
		}
		u.Burst = &n
	} else {
		zero := int64(0)
		u.Burst = &zero
	}
	for _, f := range []struct {
		field string
		dst   **int64
	}{{"pull", &u.PullBytesPerDay}, {"push", &u.PushBytesPerDay}} {
		n, err := ratelimit.ParseBytes(r.PostForm.Get(f.field))
		if err != nil {
			errs[f.field] = capitalize(err.Error()) + "."
		}
		*f.dst = &n
	}
	if len(errs) == 0 {
		_, err = h.limits.SetToken(r.Context(), rq.id, name, u)
		if errors.Is(err, identity.ErrInvalid) {
			errs["limits"] = h.message(err)
		} else if err != nil {
			h.fail(w, r, rq, err)
			return
		}
	}
	if len(errs) > 0 {
		h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, errs, "The limits were not changed: see below.")
		return
	}
	h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name), "Limits of token "+name+" saved.")
}
