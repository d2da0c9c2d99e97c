// Package overview counts what the portal's overview page, GET
// /api/v1/overview and `berth overview` show after sign-in: repositories,
// tokens, passwords about to expire, tokens nobody uses, refused requests
// and storage. Each count is of what the caller may see, through the same
// services as the lists it links to.
package overview

import (
	"context"
	"errors"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/repository"
)

// The windows of the counts, which the lists they link to filter by too.
const (
	ExpiringWithin = 7 * 24 * time.Hour
	UnusedFor      = 90 * 24 * time.Hour
	DenialsWithin  = 24 * time.Hour
)

// Overview is the counts. A pointer is nil when the caller may not see
// that count (tokens need a management role, denials the audit log).
type Overview struct {
	Repositories int  `json:"repositories"`
	Tokens       *int `json:"tokens,omitempty"`
	// PasswordsExpiring counts token passwords that expire within
	// ExpiringWithin (and have not expired).
	PasswordsExpiring *int `json:"passwordsExpiringWithin7Days,omitempty"`
	// TokensNeverUsed and TokensUnused: never used, and not used for
	// UnusedFor (the second includes the first).
	TokensNeverUsed *int `json:"tokensNeverUsed,omitempty"`
	TokensUnused    *int `json:"tokensUnusedFor90Days,omitempty"`
	// DenialsLastDay counts refused requests (audit kind access) within
	// DenialsWithin.
	DenialsLastDay *int64 `json:"denialsLast24h,omitempty"`
	// StorageBytes is what the registry stores (each blob once); nil
	// unless the caller holds a management role registry-wide.
	StorageBytes *int64 `json:"storageBytes,omitempty"`
}

// Storage is what the overview needs of the metadata store (*meta.Store
// has it).
type Storage interface {
	StorageUsed(ctx context.Context) (int64, error)
}

// Counter is what the overview needs of the audit log (*audit.Log has it).
type Counter interface {
	Count(ctx context.Context, f audit.Filter) (int64, error)
}

// Service computes overviews.
type Service struct {
	IDs   *identity.Service
	Repos *repository.Service
	Store Storage // nil: no storage figure
	Audit Counter // nil: no denial count
}

// Get counts what id may see at time now.
func (s *Service) Get(ctx context.Context, id auth.Identity, now time.Time) (Overview, error) {
	var o Overview
	if auth.CanListCatalog(id) {
		q := repository.ListQuery{N: 1 << 30, IncludeHidden: true}
		page, err := s.Repos.List(ctx, id, q)
		if err != nil {
			return o, err
		}
		o.Repositories = len(page.Names)
	}
	tokens, err := s.IDs.ListTokens(id)
	switch {
	case errors.Is(err, identity.ErrForbidden):
	case err != nil:
		return o, err
	default:
		n, expiring, never, unused := len(tokens), 0, 0, 0
		for _, t := range tokens {
			for _, p := range t.Passwords {
				if p.Expiry != nil && p.Expiry.After(now) && p.Expiry.Sub(now) <= ExpiringWithin {
					expiring++
				}
			}
			if t.LastUsed == nil {
				never++
			}
			if t.LastUsed == nil || now.Sub(*t.LastUsed) >= UnusedFor {
				unused++
			}
		}
		o.Tokens, o.PasswordsExpiring, o.TokensNeverUsed, o.TokensUnused = &n, &expiring, &never, &unused
	}
	if s.Audit != nil && auth.CanManage(id, auth.ReadAudit) {
		n, err := s.Audit.Count(ctx, audit.Filter{Kind: audit.KindAccess, Result: audit.ResultFailure, Since: now.Add(-DenialsWithin)})
		if err != nil {
			return o, err
		}
		o.DenialsLastDay = &n
	}
	if s.Store != nil && auth.CanManage(id, auth.ViewManagement) {
		n, err := s.Store.StorageUsed(ctx)
		if err != nil {
			return o, err
		}
		o.StorageBytes = &n
	}
	return o, nil
}
