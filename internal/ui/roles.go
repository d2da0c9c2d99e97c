package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/repository"
)

// assignmentRow is one role assignment on the user and account pages,
// with what it allows in words.
type assignmentRow struct {
	identity.RoleAssignment
	Does string
}

// assignmentRows describes a user's role assignments, from the tables the
// decisions are made with.
func assignmentRows(as []identity.RoleAssignment) []assignmentRow {
	out := make([]assignmentRow, 0, len(as))
	for _, a := range as {
		r := auth.Role(a.Role)
		var does []string
		for _, op := range repository.OperationsAllowedBy(r.Actions()) {
			does = append(does, op.Describe())
		}
		does = append(does, r.Permissions().Describe()...)
		out = append(out, assignmentRow{RoleAssignment: a, Does: strings.Join(does, ", ")})
	}
	return out
}

// roleSummary names a user's roles for refusals: the registry-wide role,
// or their assignments when they hold some on patterns ("token-admin on
// team-a/*").
func roleSummary(u identity.User) string {
	var parts []string
	for _, a := range u.Assignments {
		if a.Repository != "*" {
			parts = append(parts, a.Role+" on "+a.Repository)
		}
	}
	if len(parts) == 0 {
		return u.Role
	}
	if u.Role != identity.RoleNone {
		parts = append([]string{u.Role}, parts...)
	}
	return strings.Join(parts, ", ")
}

// userAssignment creates (op=create) or deletes (op=delete) a role
// assignment of the user; the identity service decides whether the
// signed-in user may, on that pattern.
func (h *Handler) userAssignment(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageUsers) {
		h.forbidden(w, r, rq, "assign roles (only owners can, on the patterns they own)")
		return
	}
	a := identity.RoleAssignment{Assignee: name, Role: r.PostForm.Get("role"), Repository: strings.TrimSpace(r.PostForm.Get("repository"))}
	var err error
	var msg string
	switch op := r.PostForm.Get("op"); op {
	case "create":
		_, err = h.ids.CreateRoleAssignment(r.Context(), rq.id, a)
		msg = fmt.Sprintf("%s now holds %s on %s.", name, a.Role, a.Repository)
	case "delete":
		err = h.ids.DeleteRoleAssignment(r.Context(), rq.id, a)
		msg = fmt.Sprintf("%s no longer holds %s on %s.", name, a.Role, a.Repository)
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", fmt.Sprintf("Unknown operation %q.", op))
		return
	}
	if err != nil {
		st := statusOf(err)
		if errors.Is(err, identity.ErrForbidden) || st == http.StatusUnprocessableEntity || st == http.StatusConflict {
			// Said next to the form, with the service's exact refusal.
			h.renderUser(w, r, rq, st, name, map[string]string{"assignment": capitalize(h.message(err)) + "."}, "Nothing was changed: see below.")
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/users/"+url.PathEscape(name), msg)
}
