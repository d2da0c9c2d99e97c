package api

import (
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/ratelimit"
)

// errNoLimits answers the limit routes of a handler built without limits.
var errNoLimits = &identity.Error{Kind: identity.ErrNotFound, Msg: "this server keeps no token limits"}

func (h *Handler) getTokenLimits(c *call) error {
	if h.limits == nil {
		return errNoLimits
	}
	v, err := h.limits.Token(c.ctx(), c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(v)
}

func (h *Handler) updateTokenLimits(c *call) error {
	if h.limits == nil {
		return errNoLimits
	}
	var u ratelimit.Update
	if err := c.decode(&u); err != nil {
		return err
	}
	v, err := h.limits.SetToken(c.ctx(), c.id, c.r.PathValue("name"), u)
	if err != nil {
		return err
	}
	return c.ok(v)
}

func (h *Handler) getScopeMapLimits(c *call) error {
	if h.limits == nil {
		return errNoLimits
	}
	v, err := h.limits.ScopeMap(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(v)
}

func (h *Handler) updateScopeMapLimits(c *call) error {
	if h.limits == nil {
		return errNoLimits
	}
	var u ratelimit.Update
	if err := c.decode(&u); err != nil {
		return err
	}
	v, err := h.limits.SetScopeMap(c.ctx(), c.id, c.r.PathValue("name"), u)
	if err != nil {
		return err
	}
	return c.ok(v)
}
