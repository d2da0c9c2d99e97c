package api

import (
	"github.com/berth-registry/berth/internal/identity"
)

// RoleAssignment is a role a user holds on a repository pattern, after
// Azure's role assignments: the body of POST /api/v1/roleAssignments and
// the entries of its list. The registry-wide role is the assignment on "*".
type RoleAssignment struct {
	Assignee   string `json:"assignee"`
	Role       string `json:"role"`
	Repository string `json:"repository"`
}

func roleAssignmentJSON(a identity.RoleAssignment) RoleAssignment {
	return RoleAssignment{Assignee: a.Assignee, Role: a.Role, Repository: a.Repository}
}

func roleAssignmentsJSON(as []identity.RoleAssignment) []RoleAssignment {
	out := make([]RoleAssignment, 0, len(as))
	for _, a := range as {
		out = append(out, roleAssignmentJSON(a))
	}
	return out
}

// listRoleAssignments lists the role assignments the caller may see, of
// every user or of ?assignee= only.
func (h *Handler) listRoleAssignments(c *call) error {
	as, err := h.ids.ListRoleAssignments(c.id, c.r.URL.Query().Get("assignee"))
	if err != nil {
		return err
	}
	return c.ok(List[RoleAssignment]{Value: roleAssignmentsJSON(as)})
}

func (h *Handler) createRoleAssignment(c *call) error {
	var req RoleAssignment
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Assignee == "" || req.Role == "" || req.Repository == "" {
		return badRequest("a role assignment needs assignee, role and repository, as in {\"assignee\":\"alice\",\"role\":\"contributor\",\"repository\":\"team-a/*\"}")
	}
	a, err := h.ids.CreateRoleAssignment(c.ctx(), c.id, identity.RoleAssignment(req))
	if err != nil {
		return err
	}
	return c.created(roleAssignmentJSON(a))
}

// deleteRoleAssignment deletes the assignment its query names:
// ?assignee=alice&role=contributor&repository=team-a/*.
func (h *Handler) deleteRoleAssignment(c *call) error {
	q := c.r.URL.Query()
	a := identity.RoleAssignment{Assignee: q.Get("assignee"), Role: q.Get("role"), Repository: q.Get("repository")}
	if a.Assignee == "" || a.Role == "" || a.Repository == "" {
		return badRequest("name the role assignment to delete with ?assignee=, &role= and &repository=, as in ?assignee=alice&role=contributor&repository=team-a/*")
	}
	if err := h.ids.DeleteRoleAssignment(c.ctx(), c.id, a); err != nil {
		return err
	}
	return c.noContent()
}
