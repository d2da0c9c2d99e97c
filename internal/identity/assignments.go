package identity

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// A user's role assignments: the registry-wide one, on "*", is the role
// column of users (as it was before assignments existed, so that the
// database's last-owner rule keeps counting owners on "*"), and every
// other one is a row of role_assignments. A user holds at most one role on
// "*" and any number elsewhere.

var assignmentsMigrations = map[sqldb.Engine][]string{
	sqldb.SQLite: {`CREATE TABLE role_assignments (
		user_name TEXT NOT NULL,
		role TEXT NOT NULL,
		pattern TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (user_name, role, pattern)
	);`},
	sqldb.Postgres: {`CREATE TABLE role_assignments (
		user_name TEXT COLLATE "C" NOT NULL,
		role TEXT COLLATE "C" NOT NULL,
		pattern TEXT COLLATE "C" NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (user_name, role, pattern)
	);`},
}

// AssignmentsSchemaVersion is the version of the role-assignment schema on
// engine e.
func AssignmentsSchemaVersion(e sqldb.Engine) int { return len(assignmentsMigrations[e]) }

// AssignmentsComponent is the name of the role assignments' schema
// component.
const AssignmentsComponent = "roles"

// RoleNone is the registry-wide role of a user who holds none: they have
// only their assignments on patterns.
const RoleNone = "none"

// RoleAssignment is one role a user holds on a repository pattern, as the
// faces show it.
type RoleAssignment struct {
	Assignee   string `json:"assignee"`
	Role       string `json:"role"`
	Repository string `json:"repository"`
}

// parseAssignment checks a role assignment as the faces send it.
func parseAssignment(a RoleAssignment) (auth.Assignment, error) {
	as, err := auth.ParseAssignment(a.Role, a.Repository)
	if err != nil {
		return auth.Assignment{}, errf(ErrInvalid, "%v", err)
	}
	return as, nil
}

// all returns every assignment p holds, the one on "*" first, then by
// pattern and role.
func (p *principal) allAssignments() []auth.Assignment {
	var out []auth.Assignment
	if p.role != "" {
		out = append(out, auth.Assignment{Role: p.role, Pattern: auth.MustParsePattern("*")})
	}
	return append(out, p.assignments...)
}

func sortAssignments(as []auth.Assignment) {
	slices.SortFunc(as, func(x, y auth.Assignment) int {
		return cmp.Or(cmp.Compare(x.Pattern.String(), y.Pattern.String()), cmp.Compare(x.Role, y.Role))
	})
}

// userIdentity is the identity of user p now. Call it with s.mu held.
func userIdentity(p *principal) auth.Identity {
	return auth.Identity{Kind: auth.KindUser, Name: p.name, Role: p.role, Assignments: p.assignments}
}

// UserIdentity returns the identity of the user named name as it is now,
// with their role assignments, for faces that keep their own sessions (the
// portal); ok is false for a user that does not exist or is disabled.
func (s *Service) UserIdentity(name string) (auth.Identity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.users[name]
	if p == nil || !p.enabled {
		return auth.Identity{}, false
	}
	return userIdentity(p), true
}

// sees reports whether actor may see assignment a: one on a pattern inside
// the actor's view, or one of their own.
func sees(actor auth.Identity, user string, a auth.Assignment) bool {
	return actor.Kind == auth.KindUser && actor.Name == user || auth.CanManageIn(actor, auth.ViewManagement, a.Pattern)
}

func assignmentView(user string, a auth.Assignment) RoleAssignment {
	return RoleAssignment{Assignee: user, Role: string(a.Role), Repository: a.Pattern.String()}
}

// visibleAssignments lists the assignments of p that actor sees. Call it
// with s.mu or s.writeMu held.
func visibleAssignments(actor auth.Identity, p *principal) []RoleAssignment {
	out := []RoleAssignment{}
	for _, a := range p.allAssignments() {
		if sees(actor, p.name, a) {
			out = append(out, assignmentView(p.name, a))
		}
	}
	return out
}

// ListRoleAssignments lists the role assignments actor may see, of every
// user or of assignee only: all of them for a user who sees the registry's
// settings; for a delegated user, those on patterns inside their own, and
// their own assignments.
func (s *Service) ListRoleAssignments(actor auth.Identity, assignee string) ([]RoleAssignment, error) {
	if !auth.CanManageSome(actor, auth.ViewManagement) && actor.Kind != auth.KindUser {
		return nil, s.authorize(actor, auth.ViewManagement)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []RoleAssignment{}
	if assignee != "" {
		p := s.users[assignee]
		if p == nil {
			return nil, errf(ErrNotFound, "user %q not found", assignee)
		}
		return visibleAssignments(actor, p), nil
	}
	for _, p := range s.users {
		out = append(out, visibleAssignments(actor, p)...)
	}
	slices.SortFunc(out, func(x, y RoleAssignment) int {
		return cmp.Or(cmp.Compare(x.Assignee, y.Assignee), cmp.Compare(x.Repository, y.Repository), cmp.Compare(x.Role, y.Role))
	})
	return out, nil
}

// authorizeAssignment checks that actor may create or delete assignment a:
// an owner may, on a pattern inside one they own. So an owner of
// "team-a/*" assigns roles on team-a's repositories and nowhere else, and
// nobody hands out a role on more than they own.
func (s *Service) authorizeAssignment(actor auth.Identity, a auth.Assignment) error {
	if !auth.CanManageSome(actor, auth.ManageUsers) {
		return s.authorize(actor, auth.ManageUsers)
	}
	if !auth.CanManageIn(actor, auth.ManageUsers, a.Pattern) {
		return errf(ErrForbidden, "%v", &auth.NotInsideError{Identity: actor, What: auth.ManageUsers, Pattern: a.Pattern.String(), Subject: "role assignment " + a.String()})
	}
	return nil
}

// CreateRoleAssignment gives a user a role on a repository pattern. On
// "*" it sets the user's registry-wide role, which must be none before:
// a user holds one role on "*" (change it with UpdateUser).
func (s *Service) CreateRoleAssignment(ctx context.Context, actor auth.Identity, ra RoleAssignment) (RoleAssignment, error) {
	a, err := parseAssignment(ra)
	if err != nil {
		return RoleAssignment{}, err
	}
	if err := s.authorizeAssignment(actor, a); err != nil {
		return RoleAssignment{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.users[ra.Assignee]
	if p == nil {
		return RoleAssignment{}, errf(ErrNotFound, "user %q not found", ra.Assignee)
	}
	if slices.Contains(p.allAssignments(), a) {
		return RoleAssignment{}, errf(ErrConflict, "user %q already holds %s", p.name, a)
	}
	all := a.Pattern.Kind() == auth.PatternAll
	if all && p.role != "" {
		return RoleAssignment{}, errf(ErrConflict, "user %q already holds %s on *, and a user holds one role on *: delete that assignment first, or change the role with `user update --role`", p.name, p.role)
	}
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchUser(p.name)
		if all {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE name = ?`, string(a.Role), p.name); err != nil {
				return fmt.Errorf("store role assignment: %w", err)
			}
		} else if _, err := tx.ExecContext(ctx, `INSERT INTO role_assignments(user_name, role, pattern, created_at) VALUES (?, ?, ?, ?)`,
			p.name, string(a.Role), a.Pattern.String(), s.now().UnixMilli()); err != nil {
			return fmt.Errorf("store role assignment: %w", err)
		}
		return s.record(ctx, tx, actor, "user "+p.name, "assigned "+a.String())
	})
	if err != nil {
		return RoleAssignment{}, err
	}
	s.apply(func() {
		if all {
			p.role = a.Role
			return
		}
		as := append(slices.Clone(p.assignments), a)
		sortAssignments(as)
		p.assignments = as
	})
	return assignmentView(p.name, a), nil
}

// DeleteRoleAssignment takes a role on a pattern from a user. The last
// enabled owner on "*" keeps it.
func (s *Service) DeleteRoleAssignment(ctx context.Context, actor auth.Identity, ra RoleAssignment) error {
	a, err := parseAssignment(ra)
	if err != nil {
		return err
	}
	if err := s.authorizeAssignment(actor, a); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.users[ra.Assignee]
	if p == nil {
		return errf(ErrNotFound, "user %q not found", ra.Assignee)
	}
	if !slices.Contains(p.allAssignments(), a) {
		return errf(ErrNotFound, "user %q does not hold %s; see `role assignment list --assignee %s`", p.name, a, p.name)
	}
	all := a.Pattern.Kind() == auth.PatternAll
	if all && p.role == auth.RoleOwner && p.enabled && s.enabledOwnersLocked() == 1 {
		return errf(ErrForbidden, "user %q is the last enabled owner: make another user owner first", p.name)
	}
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchUser(p.name)
		if all {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET role = '' WHERE name = ?`, p.name); err != nil {
				return fmt.Errorf("delete role assignment: %w", err)
			}
		} else if _, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE user_name = ? AND role = ? AND pattern = ?`,
			p.name, string(a.Role), a.Pattern.String()); err != nil {
			return fmt.Errorf("delete role assignment: %w", err)
		}
		return s.record(ctx, tx, actor, "user "+p.name, "unassigned "+a.String())
	})
	if err != nil {
		return err
	}
	s.apply(func() {
		if all {
			p.role = ""
			return
		}
		p.assignments = slices.DeleteFunc(slices.Clone(p.assignments), func(x auth.Assignment) bool { return x == a })
	})
	return nil
}

// readAssignments reads the role assignments of st's users (of those only
// names, when set) from tx.
func readAssignments(ctx context.Context, tx *sqldb.Tx, st *state, only *touchSet) error {
	where, args := only.names("user_name", only.users())
	rows, err := tx.QueryContext(ctx, `SELECT user_name, role, pattern FROM role_assignments`+where, args...)
	if err != nil {
		return fmt.Errorf("load role assignments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user, role, pattern string
		if err := rows.Scan(&user, &role, &pattern); err != nil {
			return fmt.Errorf("load role assignments: %w", err)
		}
		// A row that does not parse fails the load rather than being
		// skipped, as a scope map's does: memory never silently differs.
		a, err := auth.ParseAssignment(role, pattern)
		if err != nil {
			return fmt.Errorf("load role assignment of %q: %w", user, err)
		}
		if p := st.users[user]; p != nil {
			p.assignments = append(p.assignments, a)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load role assignments: %w", err)
	}
	for _, p := range st.users {
		sortAssignments(p.assignments)
	}
	return nil
}
