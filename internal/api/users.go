package api

import (
	"github.com/berth-registry/berth/internal/identity"
)

func (h *Handler) listUsers(c *call) error {
	users, err := h.ids.ListUsers(c.id)
	if err != nil {
		return err
	}
	out := List[User]{Value: make([]User, 0, len(users))}
	for _, u := range users {
		out.Value = append(out.Value, userJSON(u))
	}
	return c.ok(out)
}

func (h *Handler) getUser(c *call) error {
	u, err := h.ids.GetUser(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(userJSON(u))
}

func (h *Handler) createUser(c *call) error {
	var req UserCreate
	if err := c.decode(&req); err != nil {
		return err
	}
	u, err := h.ids.CreateUser(c.ctx(), c.id, identity.UserSpec{
		Name: c.r.PathValue("name"), Role: req.Properties.Role, Password: req.Properties.Password,
	})
	if err != nil {
		return err
	}
	return c.created(userJSON(u))
}

func (h *Handler) updateUser(c *call) error {
	var req UserPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	p := req.Properties
	u, err := h.ids.UpdateUser(c.ctx(), c.id, c.r.PathValue("name"), identity.UserUpdate{Role: p.Role, Password: p.Password, Status: p.Status, Current: p.CurrentPassword})
	if err != nil {
		return err
	}
	return c.ok(userJSON(u))
}

func (h *Handler) deleteUser(c *call) error {
	if err := h.ids.DeleteUser(c.ctx(), c.id, c.r.PathValue("name")); err != nil {
		return err
	}
	return c.noContent()
}
