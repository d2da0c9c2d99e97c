package api

import (
	"time"

	"github.com/berth-registry/berth/internal/overview"
	"github.com/berth-registry/berth/internal/repository"
)

func newOverview(h *Handler, m repository.Metadata) *overview.Service {
	s := &overview.Service{IDs: h.ids, Repos: h.repos}
	if st, ok := m.(overview.Storage); ok {
		s.Store = st
	}
	if c, ok := h.audit.(overview.Counter); ok {
		s.Audit = c
	}
	return s
}

// getOverview answers the counts of the portal's overview page, of what
// the caller may see.
func (h *Handler) getOverview(c *call) error {
	o, err := h.overview.Get(c.ctx(), c.id, time.Now())
	if err != nil {
		return err
	}
	return c.ok(o)
}
