package server

import (
	"context"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// openLimits migrates the limit tables (after the identity tables, which
// their triggers refer to) and starts the limiter of /v2/ requests.
func (s *Server) openLimits(ctx context.Context) error {
	db := s.meta.Database()
	if err := ratelimit.Migrate(ctx, db); err != nil {
		return err
	}
	limited := s.metrics.NewLimited()
	l, err := ratelimit.Open(ctx, ratelimit.Options{
		DB:       db,
		Shared:   sharedIf(db) != nil,
		Identify: tokenauth.Identity,
		OnRefusal: func(r ratelimit.Refusal) {
			limited(r.Limit)
			s.recordRefusal(r)
		},
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.limits = l
	s.limitSettings = ratelimit.NewSettings(l, s.identity, s.audit)
	return nil
}

// recordRefusal queues the audit record of a refused request; identical
// refusals fold into one record, as pulls do.
func (s *Server) recordRefusal(r ratelimit.Refusal) {
	ev := audit.Event{Kind: audit.KindLimited, Result: audit.ResultFailure, Identity: r.Token, IdentityKind: "token",
		Reason: "token " + r.Token + " is " + r.Reason}
	if r.Request != nil {
		ev.UserAgent = r.Request.UserAgent()
		ev.CallerIP = s.urls.ClientIP(r.Request)
		ev.Repository = reqlog.From(r.Request.Context()).Repository
	}
	s.audit.Record(ev)
}

// Limits returns the settings of the tokens' limits (for tests and
// embedding).
func (s *Server) Limits() *ratelimit.Settings { return s.limitSettings }
