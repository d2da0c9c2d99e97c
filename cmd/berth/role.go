package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
)

// newRoleCmd is `berth role assignment ...`, after `az role assignment`.
func newRoleCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "role", "Manage role assignments on repository patterns")
	asg := &cobra.Command{
		Use:   "assignment",
		Short: "Give users roles on repository patterns (delegated administration)",
		Long: `A role assignment gives a user a role on the repositories a pattern matches:
a repository ("team-a/app"), a prefix ("team-a/*": every repository below
team-a/) or "*" (the registry-wide role, shown by user list). Roles: ` + rolesHelp + `, or
token-admin (sees and manages the scope maps and tokens inside its patterns only).

A user with a managing role on "team-a/*" (token-admin, contributor or owner)
creates and changes only scope maps whose rules lie inside team-a/, and
binds, sees and changes only tokens whose scope maps do: never a built-in
scope map, which is on "*". An owner of a pattern assigns roles inside it.`,
		Args: cobra.NoArgs,
	}
	asg.AddCommand(newRoleAssignmentCreateCmd(g), newRoleAssignmentListCmd(g), newRoleAssignmentDeleteCmd(g))
	cmd.AddCommand(asg)
	return cmd
}

func roleAssignmentFlags(cmd *cobra.Command, a *api.RoleAssignment) {
	cmd.Flags().StringVar(&a.Assignee, "assignee", "", "user name")
	cmd.Flags().StringVar(&a.Role, "role", "", "role: "+rolesHelp+", or token-admin")
	cmd.Flags().StringVar(&a.Repository, "repository", "", `repository pattern: "team-a/app", "team-a/*" or "*"`)
	cmd.MarkFlagRequired("assignee")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("repository")
}

func newRoleAssignmentCreateCmd(g *globals) *cobra.Command {
	var a api.RoleAssignment
	cmd := &cobra.Command{
		Use:     "create --assignee USER --role ROLE --repository PATTERN",
		Short:   "Give a user a role on a repository pattern",
		Example: `  berth role assignment create --assignee alice --role contributor --repository 'team-a/*'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var out api.RoleAssignment
			if err := c.do(cmd.Context(), "POST", "roleAssignments", nil, a, &out); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, out)
			}
			fmt.Fprintf(c.out, "User %q now holds %s on %s.\n", out.Assignee, out.Role, out.Repository)
			return nil
		},
	}
	roleAssignmentFlags(cmd, &a)
	return cmd
}

func newRoleAssignmentListCmd(g *globals) *cobra.Command {
	var assignee string
	cmd := &cobra.Command{
		Use:   "list [--assignee USER]",
		Short: "List role assignments (a delegated user sees those inside their patterns)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if assignee != "" {
				q.Set("assignee", assignee)
			}
			var list api.List[api.RoleAssignment]
			if err := c.do(cmd.Context(), "GET", "roleAssignments", q, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list.Value)
			}
			t := newTable(c.out, "ASSIGNEE", "ROLE", "REPOSITORY")
			for _, a := range list.Value {
				t.row(a.Assignee, a.Role, a.Repository)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&assignee, "assignee", "", "only this user's assignments")
	return cmd
}

func newRoleAssignmentDeleteCmd(g *globals) *cobra.Command {
	var a api.RoleAssignment
	cmd := &cobra.Command{
		Use:     "delete --assignee USER --role ROLE --repository PATTERN",
		Short:   "Take a role on a repository pattern from a user",
		Example: `  berth role assignment delete --assignee alice --role contributor --repository 'team-a/*'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{"assignee": {a.Assignee}, "role": {a.Role}, "repository": {a.Repository}}
			if err := c.do(cmd.Context(), "DELETE", "roleAssignments", q, nil, nil); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, map[string]string{"deleted": a.Role + " on " + a.Repository + " of " + a.Assignee})
			}
			fmt.Fprintf(c.out, "User %q no longer holds %s on %s.\n", a.Assignee, a.Role, a.Repository)
			return nil
		},
	}
	roleAssignmentFlags(cmd, &a)
	return cmd
}
