package api

import (
	"strconv"

	"github.com/berth-registry/berth/internal/identity"
)

func (h *Handler) listScopeMaps(c *call) error {
	maps, err := h.ids.ListScopeMaps(c.id)
	if err != nil {
		return err
	}
	out := List[ScopeMap]{Value: make([]ScopeMap, 0, len(maps))}
	for _, m := range maps {
		out.Value = append(out.Value, scopeMapJSON(m))
	}
	return c.ok(out)
}

func (h *Handler) getScopeMap(c *call) error {
	m, err := h.ids.GetScopeMap(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(scopeMapJSON(m))
}

func (h *Handler) createScopeMap(c *call) error {
	var req ScopeMapCreate
	if err := c.decode(&req); err != nil {
		return err
	}
	m, err := h.ids.CreateScopeMap(c.ctx(), c.id, identity.ScopeMapSpec{
		Name: c.r.PathValue("name"), Description: req.Properties.Description, Actions: req.Properties.Actions, Tags: req.Properties.Tags,
	})
	if err != nil {
		return err
	}
	return c.created(scopeMapJSON(m))
}

func (h *Handler) updateScopeMap(c *call) error {
	var req ScopeMapPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	p := req.Properties
	u := identity.ScopeMapUpdate{Description: p.Description, Add: p.AddActions, AddTags: p.AddTags, Remove: p.RemoveActions}
	if p.Actions != nil {
		u.Actions = append([]string{}, *p.Actions...) // non-nil even when empty: replace with nothing
		u.Tags = p.Tags
	} else if p.Tags != nil {
		return badRequest("properties.tags goes with properties.actions, which it limits; to add tag-limited grants use addActions with addTags")
	}
	m, err := h.ids.UpdateScopeMap(c.ctx(), c.id, c.r.PathValue("name"), u)
	if err != nil {
		return err
	}
	return c.ok(scopeMapJSON(m))
}

func (h *Handler) deleteScopeMap(c *call) error {
	name := c.r.PathValue("name")
	force := false
	if v := c.r.URL.Query().Get("force"); v != "" {
		var err error
		if force, err = strconv.ParseBool(v); err != nil {
			return badRequest("invalid force=%q: use true or false", v)
		}
	}
	tokens, err := h.ids.DeleteScopeMap(c.ctx(), c.id, name, force)
	if err != nil {
		return err
	}
	if tokens == nil {
		tokens = []string{}
	}
	return c.ok(ScopeMapDeleted{ID: scopeMapID(name), TokensWithoutPermissions: tokens})
}
