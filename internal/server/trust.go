package server

import (
	"context"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/trust"
)

// openTrust migrates the signature policies' tables and opens the service
// that applies them to pulls.
func (s *Server) openTrust(ctx context.Context) (*trust.Service, error) {
	if err := trust.Migrate(ctx, s.meta.Database()); err != nil {
		return nil, err
	}
	return trust.New(trust.Options{DB: s.meta.Database(), Content: s.meta, Blobs: s.blobs, Audit: s.audit, Logger: s.log})
}

// checkPull adapts the trust service to the registry.
func checkPull(t *trust.Service) registry.CheckPull {
	return func(ctx context.Context, repo string, m meta.Manifest) (string, []string, error) {
		d, err := t.CheckPull(ctx, repo, m)
		return d.Refusal, d.Findings, err
	}
}

// trustEvent is the audit record of a signature policy's finding: a
// refused pull is a failure; an audit-mode finding, whose pull was served,
// a success that says what was missing.
func trustEvent(e registry.Event, ev *audit.Event) {
	ev.Kind = audit.KindTrust
	ev.Reason = e.Reason
	if e.Refused {
		ev.Result = audit.ResultFailure
	}
}
