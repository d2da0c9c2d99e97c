package main

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
)

const rolesHelp = "owner (everything), contributor (everything but users), reader (read-only), pull, push or delete (data plane only), token-admin (scope maps and tokens only)"

func newUserCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "user", "Manage users and their roles")
	cmd.Long = `Manage users: people and automation that log in with their own password.
Roles: ` + rolesHelp + `. Only owners manage users.`
	cmd.AddCommand(newUserCreateCmd(g), newUserUpdateCmd(g), newUserListCmd(g), newUserDeleteCmd(g))
	return cmd
}

// userPassword reads the password from --password or --password-stdin.
func userPassword(cmd *cobra.Command, flag string, fromStdin bool) (string, bool, error) {
	if fromStdin {
		pw, err := readPasswordStdin(cmd)
		return pw, err == nil, err
	}
	if cmd.Flags().Changed("password") {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: a password on the command line can be seen by other users of this machine; prefer --password-stdin")
		return flag, true, nil
	}
	return "", false, nil
}

func newUserCreateCmd(g *globals) *cobra.Command {
	var name, role, password string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:     "create -n NAME --role ROLE (--password-stdin | --password PASSWORD)",
		Short:   "Create a user",
		Example: `  printf '%s' "$PASSWORD" | berth user create -n alice --role contributor --password-stdin`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, ok, err := userPassword(cmd, password, fromStdin)
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("give the user's password with --password-stdin (or --password)")
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var req api.UserCreate
			req.Properties.Role, req.Properties.Password = role, pw
			var u api.User
			if err := c.do(cmd.Context(), "PUT", "users/"+url.PathEscape(name), nil, req, &u); err != nil {
				return err
			}
			return printUser(c, u)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "user name")
	cmd.Flags().StringVar(&role, "role", "", "role: "+rolesHelp)
	cmd.Flags().StringVarP(&password, "password", "p", "", "password, at least 12 characters")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from stdin")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin")
	return cmd
}

func newUserUpdateCmd(g *globals) *cobra.Command {
	var name, role, status, password, current string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "update -n NAME [--role ROLE] [--status enabled|disabled] [--password-stdin | --password PASSWORD]",
		Short: "Change a user's role, status or password",
		Long: `Change a user's role, status or password. Users may change their own
password, giving the current one with --current-password; everything else
needs the owner role. Disabling a user or changing
their password ends their current sessions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UserPatch
			pw, ok, err := userPassword(cmd, password, fromStdin)
			if err != nil {
				return err
			}
			if ok {
				req.Properties.Password = &pw
			}
			if cmd.Flags().Changed("current-password") {
				req.Properties.CurrentPassword = &current
			}
			if cmd.Flags().Changed("role") {
				req.Properties.Role = &role
			}
			if cmd.Flags().Changed("status") {
				req.Properties.Status = &status
			}
			if req.Properties.Role == nil && req.Properties.Status == nil && req.Properties.Password == nil {
				return errors.New("nothing to change: give --role, --status or a new password")
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var u api.User
			if err := c.do(cmd.Context(), "PATCH", "users/"+url.PathEscape(name), nil, req, &u); err != nil {
				return err
			}
			return printUser(c, u)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "user name")
	cmd.Flags().StringVar(&role, "role", "", "new role: "+rolesHelp)
	cmd.Flags().StringVar(&status, "status", "", "enabled or disabled")
	cmd.Flags().StringVarP(&password, "password", "p", "", "new password, at least 12 characters")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the new password from stdin")
	cmd.Flags().StringVar(&current, "current-password", "", "your current password, required to change your own")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin")
	return cmd
}

func newUserListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var list api.List[api.User]
			if err := c.do(cmd.Context(), "GET", "users", nil, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list.Value)
			}
			t := newTable(c.out, "NAME", "ROLE", "STATUS", "CREATED", "LAST USED")
			for _, u := range list.Value {
				p := u.Properties
				t.row(u.Name, p.Role, p.Status, fmtTime(p.CreationDate), fmtOptTime(p.LastUsed, "never"))
			}
			return t.flush()
		},
	}
}

func newUserDeleteCmd(g *globals) *cobra.Command {
	var name string
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete -n NAME [--yes]",
		Short: "Delete a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if err := confirm(cmd, g.env, yes, fmt.Sprintf("user %q", name)); err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", "users/"+url.PathEscape(name), nil, nil, nil); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, map[string]string{"deleted": "/users/" + name})
			}
			fmt.Fprintf(c.out, "Deleted user %q.\n", name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "user name")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.MarkFlagRequired("name")
	return cmd
}

func printUser(c *client, u api.User) error {
	if c.json {
		return printJSON(c.out, u)
	}
	p := u.Properties
	var as []string
	for _, a := range p.RoleAssignments {
		if a.Repository != "*" {
			as = append(as, a.Role+" on "+a.Repository)
		}
	}
	return fields(c.out, "Name", u.Name, "Role", p.Role, "Role assignments", cmp.Or(strings.Join(as, ", "), "none"), "Status", p.Status,
		"Created", fmtTime(p.CreationDate), "Last used", fmtOptTime(p.LastUsed, "never"))
}
