package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// PasswordChecker checks a user's password as a login is checked: through
// the brute-force limiter and into the audit log. When the Authenticator
// implements it, the current password of a user changing their own is
// checked with it; the error is the kind Options.RetryAfter tells apart.
type PasswordChecker interface {
	CheckPassword(r *http.Request, user, password string) error
}

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
	name := c.r.PathValue("name")
	if p.Password != nil && p.CurrentPassword != nil && c.id.Kind == auth.KindUser && c.id.Name == name {
		if err := h.checkCurrentPassword(c, name, *p.CurrentPassword); err != nil {
			return err
		}
	}
	u, err := h.ids.UpdateUser(c.ctx(), c.id, name, identity.UserUpdate{Role: p.Role, Password: p.Password, Status: p.Status, Current: p.CurrentPassword})
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

// checkCurrentPassword checks the current password a user gives to change
// their own, as a login: otherwise anyone holding one of their access
// tokens could guess it here without limit and unaudited. The identity
// service checks it again (from its cache, as this check succeeded).
func (h *Handler) checkCurrentPassword(c *call, name, current string) error {
	pc, ok := h.authn.(PasswordChecker)
	if !ok {
		return nil
	}
	err := pc.CheckPassword(c.r, name, current)
	if err == nil {
		return nil
	}
	if wait, ok := h.retryAfter(err); ok {
		secs := int64((wait + time.Second - 1) / time.Second)
		c.w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		return &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyRequests,
			Message: "too many failed logins: retry in " + strconv.FormatInt(secs, 10) + " seconds"}
	}
	return forbidden("the current password is not right")
}
