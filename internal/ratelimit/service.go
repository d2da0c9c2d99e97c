package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// Identities is what the limit settings ask of the identity service: that
// the token or scope map exists and that the actor may see it.
type Identities interface {
	GetToken(actor auth.Identity, name string) (identity.Token, error)
	GetScopeMap(actor auth.Identity, name string) (identity.ScopeMap, error)
}

// Auditor records the changes of limits.
type Auditor interface {
	Write(ctx context.Context, e audit.Event) error
}

// Settings are the faces' side of the limits: they read and change the
// limits of tokens and scope maps, with the identity service's rights
// (reading needs what reading the token needs, changing the right to
// manage tokens), and record each change in the audit log.
type Settings struct {
	l     *Limiter
	ids   Identities
	audit Auditor
}

// NewSettings returns the settings over l.
func NewSettings(l *Limiter, ids Identities, a Auditor) *Settings {
	return &Settings{l: l, ids: ids, audit: a}
}

// Update changes some limits: a nil field is left as it is, 0 clears the
// setting (a token then inherits its scope map's), Unlimited sets no limit.
type Update struct {
	RatePerSecond   *float64 `json:"ratePerSecond,omitempty"`
	Burst           *int64   `json:"burst,omitempty"`
	PullBytesPerDay *int64   `json:"pullBytesPerDay,omitempty"`
	PushBytesPerDay *int64   `json:"pushBytesPerDay,omitempty"`
}

// IsZero reports whether u changes nothing.
func (u Update) IsZero() bool { return u == Update{} }

func (u Update) apply(l Limits) Limits {
	if u.RatePerSecond != nil {
		l.RatePerSecond = *u.RatePerSecond
		if l.RatePerSecond == 0 || l.RatePerSecond == Unlimited {
			l.Burst = 0 // a burst goes with its rate
		}
	}
	if u.Burst != nil {
		l.Burst = *u.Burst
	}
	if u.PullBytesPerDay != nil {
		l.PullBytesPerDay = *u.PullBytesPerDay
	}
	if u.PushBytesPerDay != nil {
		l.PushBytesPerDay = *u.PushBytesPerDay
	}
	return l
}

// Usage is what a token used of its limits.
type Usage struct {
	// Day is the UTC day counted; ResetsAt when the next one starts.
	Day         string    `json:"day"`
	ResetsAt    time.Time `json:"resetsAt"`
	PulledBytes int64     `json:"pulledBytes"`
	PushedBytes int64     `json:"pushedBytes"`
	// RequestsAvailable is how many requests the token's bucket holds now
	// (up to its burst), when a rate limit applies.
	RequestsAvailable *float64 `json:"requestsAvailable,omitempty"`
}

// TokenLimits are a token's limits as the faces show them.
type TokenLimits struct {
	Token    string `json:"token"`
	ScopeMap string `json:"scopeMap"`
	// Own are the limits set on the token, Inherited its scope map's,
	// Effective what applies.
	Own       Limits    `json:"own"`
	Inherited Limits    `json:"inherited"`
	Effective Effective `json:"effective"`
	Usage     Usage     `json:"usage"`
}

// ScopeMapLimits are a scope map's limits, which its tokens inherit.
type ScopeMapLimits struct {
	ScopeMap string   `json:"scopeMap"`
	Limits   Limits   `json:"limits"`
	Tokens   []string `json:"tokens"`
}

func invalid(format string, args ...any) error {
	return &identity.Error{Kind: identity.ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

// Token returns a token's limits and what it used today.
func (s *Settings) Token(ctx context.Context, actor auth.Identity, name string) (TokenLimits, error) {
	t, err := s.ids.GetToken(actor, name)
	if err != nil {
		return TokenLimits{}, err
	}
	return s.tokenView(ctx, t)
}

func (s *Settings) tokenView(ctx context.Context, t identity.Token) (TokenLimits, error) {
	snap := s.l.snap.Load()
	v := TokenLimits{Token: t.Name, ScopeMap: t.ScopeMap, Own: snap.tokens[t.Name], Inherited: snap.scopeMaps[t.ScopeMap]}
	v.Effective = Resolve(v.Own, v.Inherited)
	u, err := s.l.usage(ctx, t.Name, v.Effective)
	if err != nil {
		return TokenLimits{}, err
	}
	v.Usage = u
	return v, nil
}

// SetToken changes a token's own limits, effective from its next request
// on this node and within a sync interval on the others.
func (s *Settings) SetToken(ctx context.Context, actor auth.Identity, name string, u Update) (TokenLimits, error) {
	t, err := s.ids.GetToken(actor, name)
	if err != nil {
		return TokenLimits{}, err
	}
	if err := s.mayManage(actor, t.ScopeMap, fmt.Sprintf("token %q, through scope map %q", t.Name, t.ScopeMap)); err != nil {
		return TokenLimits{}, err
	}
	if err := s.set(ctx, actor, kindToken, name, "token "+name, s.l.snap.Load().tokens[name], u); err != nil {
		return TokenLimits{}, err
	}
	return s.tokenView(ctx, t)
}

// ScopeMap returns a scope map's limits.
func (s *Settings) ScopeMap(actor auth.Identity, name string) (ScopeMapLimits, error) {
	m, err := s.ids.GetScopeMap(actor, name)
	if err != nil {
		return ScopeMapLimits{}, err
	}
	return ScopeMapLimits{ScopeMap: m.Name, Limits: s.l.snap.Load().scopeMaps[m.Name], Tokens: m.Tokens}, nil
}

// SetScopeMap changes a scope map's limits, which its tokens without
// their own inherit.
func (s *Settings) SetScopeMap(ctx context.Context, actor auth.Identity, name string, u Update) (ScopeMapLimits, error) {
	if _, err := s.ids.GetScopeMap(actor, name); err != nil {
		return ScopeMapLimits{}, err
	}
	if err := s.mayManage(actor, name, fmt.Sprintf("scope map %q", name)); err != nil {
		return ScopeMapLimits{}, err
	}
	if err := s.set(ctx, actor, kindScopeMap, name, "scope map "+name, s.l.snap.Load().scopeMaps[name], u); err != nil {
		return ScopeMapLimits{}, err
	}
	return s.ScopeMap(actor, name)
}

// mayManage checks that actor may change the limits of what uses scope
// map mapName: a registry-wide manager of tokens may; a delegated one only
// when every rule of the scope map lies inside their patterns, as for
// changing the token or the scope map itself.
func (s *Settings) mayManage(actor auth.Identity, mapName, subject string) error {
	if auth.CanManage(actor, auth.ManageTokens) {
		return nil
	}
	forbidden := &identity.Error{Kind: identity.ErrForbidden,
		Msg: fmt.Sprintf("%s is not allowed to do this: it needs the right to manage tokens and scope maps (contributor, owner or token-admin)", actor)}
	if !auth.CanManageSome(actor, auth.ManageTokens) {
		return forbidden
	}
	m, err := s.ids.GetScopeMap(actor, mapName)
	if errors.Is(err, identity.ErrNotFound) {
		return nil // a token whose scope map was deleted grants nothing
	}
	if err != nil {
		return err
	}
	if outside, ok := auth.CanManageRules(actor, auth.ManageTokens, m.Actions); !ok {
		return &identity.Error{Kind: identity.ErrForbidden,
			Msg: (&auth.NotInsideError{Identity: actor, What: auth.ManageTokens, Pattern: outside, Subject: subject}).Error()}
	}
	return nil
}

func (s *Settings) set(ctx context.Context, actor auth.Identity, kind, name, target string, old Limits, u Update) error {
	if u.IsZero() {
		return invalid("nothing to change: give a rate limit, a burst, or bytes pulled or pushed per day")
	}
	l := u.apply(old)
	if err := l.Validate(); err != nil {
		return invalid("%s", err.Error())
	}
	err := s.l.store.set(ctx, kind, name, l)
	if errors.Is(err, errNoTarget) {
		return &identity.Error{Kind: identity.ErrNotFound, Msg: fmt.Sprintf("%s not found", target)}
	}
	if err != nil {
		return err
	}
	if kind == kindToken {
		s.l.resetBucket(name)
	}
	if err := s.l.reload(ctx); err != nil {
		return err
	}
	if s.audit == nil {
		return nil
	}
	return s.audit.Write(ctx, audit.Event{Kind: audit.KindPermission, Result: audit.ResultSuccess, Identity: actor.Name,
		IdentityKind: actor.Kind.String(), Target: target, Reason: "limits set: " + Describe(l)})
}

// Describe shows limits in one line, as the audit log records them.
func Describe(l Limits) string {
	if l.IsZero() {
		return "none (inherited)"
	}
	var parts []string
	switch {
	case l.RatePerSecond == Unlimited:
		parts = append(parts, "rate unlimited")
	case l.RatePerSecond > 0:
		p := "rate " + FormatRate(l.RatePerSecond)
		if l.Burst > 0 {
			p += fmt.Sprintf(" (burst %d)", l.Burst)
		}
		parts = append(parts, p)
	}
	for _, b := range []struct {
		what string
		n    int64
	}{{"pulled", l.PullBytesPerDay}, {"pushed", l.PushBytesPerDay}} {
		switch {
		case b.n == Unlimited:
			parts = append(parts, b.what+" per day unlimited")
		case b.n > 0:
			parts = append(parts, FormatBytes(b.n)+" "+b.what+" per day")
		}
	}
	return strings.Join(parts, ", ")
}

// resetBucket forgets a token's bucket and lease after its limits changed.
func (l *Limiter) resetBucket(token string) {
	l.mu.Lock()
	st := l.tokens[token]
	l.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.local, st.leased, st.emptyUntil = bucket{}, 0, time.Time{}
	st.mu.Unlock()
}

// usage returns what token used today.
func (l *Limiter) usage(ctx context.Context, token string, eff Effective) (Usage, error) {
	now := l.now().UTC()
	u := Usage{Day: now.Format(time.DateOnly), ResetsAt: now.Add(untilNextDay(now)).UTC()}
	l.mu.Lock()
	st := l.tokens[token]
	l.mu.Unlock()
	// What this node counts with (every node's totals as of its last
	// sync, and its own since), or else the database's.
	counted := false
	if st != nil {
		st.mu.Lock()
		if st.day == dayOf(now) && st.loaded {
			used := st.used()
			u.PulledBytes, u.PushedBytes, counted = used.pulled, used.pushed, true
		}
		st.mu.Unlock()
	}
	if !counted {
		all, err := l.store.usageOf(ctx, dayOf(now))
		if err != nil {
			return Usage{}, err
		}
		u.PulledBytes, u.PushedBytes = all[token].pulled, all[token].pushed
	}
	if eff.Rate > 0 {
		level := float64(eff.Burst)
		if l.shared {
			var err error
			if level, err = l.store.sharedLevel(ctx, token, now, eff.Rate, eff.Burst); err != nil {
				return Usage{}, err
			}
		} else if st != nil {
			st.mu.Lock()
			b := st.local
			st.mu.Unlock()
			if !b.at.IsZero() {
				b.refill(now, eff.Rate, eff.Burst)
				level = b.level
			}
		}
		level = float64(int64(level*10)) / 10
		u.RequestsAvailable = &level
	}
	return u, nil
}
