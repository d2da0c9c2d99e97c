package main

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/api"
)

// TestCLIRoleAssignments: `berth role assignment` creates, lists and
// deletes assignments, and a delegated admin of team-a/* is refused, with
// the service's exact message, a rule on team-b/x and the built-in
// _repositories_admin.
func TestCLIRoleAssignments(t *testing.T) {
	srv := startServer(t)
	own := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	if _, _, err := own.run("a-long-password-of-alice", "user", "create", "-n", "alice", "--role", "none", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	out := own.ok("role", "assignment", "create", "--assignee", "alice", "--role", "token-admin", "--repository", "team-a/*")
	if !strings.Contains(out, `User "alice" now holds token-admin on team-a/*.`) {
		t.Errorf("create: %s", out)
	}
	own.fails(`user "alice" already holds token-admin on team-a/*`, "role", "assignment", "create", "--assignee", "alice", "--role", "token-admin", "--repository", "team-a/*")
	own.fails("invalid repository pattern", "role", "assignment", "create", "--assignee", "alice", "--role", "pull", "--repository", "team-*")
	own.fails("invalid role", "role", "assignment", "create", "--assignee", "alice", "--role", "admin", "--repository", "x")
	list := jsonOut[[]api.RoleAssignment](t, own.ok("role", "assignment", "list", "--assignee", "alice", "-o", "json"))
	if len(list) != 1 || list[0] != (api.RoleAssignment{Assignee: "alice", Role: "token-admin", Repository: "team-a/*"}) {
		t.Errorf("list: %v", list)
	}
	if out := own.ok("role", "assignment", "list"); !strings.Contains(out, "owner") || !strings.Contains(out, "token-admin") {
		t.Errorf("list of all:\n%s", out)
	}

	alice := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "alice", "BERTH_PASSWORD": "a-long-password-of-alice"})
	alice.fails(`user "alice" may not manage "team-b/x" (scope map "b-scope"): they manage scope maps and tokens only on team-a/*`,
		"scope-map", "create", "-n", "b-scope", "--repository", "team-b/x", "content/read")
	alice.fails(`user "alice" may not manage "*" (scope map "_repositories_admin"): they manage scope maps and tokens only on team-a/*`,
		"token", "create", "-n", "admin-tok", "--scope-map", "_repositories_admin")
	alice.ok("scope-map", "create", "-n", "a-scope", "--repository", "team-a/x", "content/read", "content/write")
	alice.ok("token", "create", "-n", "a-token", "--scope-map", "a-scope", "--no-passwords")
	alice.fails(`user "alice" is not allowed to do this: it needs a role with the right to manage users (owner)`,
		"role", "assignment", "create", "--assignee", "alice", "--role", "owner", "--repository", "team-a/*")
	if out := alice.ok("scope-map", "list"); strings.Contains(out, "_repositories_admin") || !strings.Contains(out, "a-scope") {
		t.Errorf("alice's scope-map list:\n%s", out)
	}

	out = own.ok("role", "assignment", "delete", "--assignee", "alice", "--role", "token-admin", "--repository", "team-a/*")
	if !strings.Contains(out, `User "alice" no longer holds token-admin on team-a/*.`) {
		t.Errorf("delete: %s", out)
	}
	alice.fails("is not allowed to do this", "scope-map", "create", "-n", "a-scope-2", "--repository", "team-a/y", "content/read")
	own.fails(`user "owner" is the last enabled owner`, "role", "assignment", "delete", "--assignee", "owner", "--role", "owner", "--repository", "*")
}
