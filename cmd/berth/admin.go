package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
)

func newAdminCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "admin", "Manage the registry-wide admin user")
	cmd.Long = `Manage the admin user: one registry-wide account with every permission on
every repository, named after the registry and disabled by default. Prefer
tokens, which can be limited to the repositories and actions they need.`
	cred := &cobra.Command{Use: "credential", Short: "Show or renew the admin user's passwords", Args: cobra.NoArgs}
	cred.AddCommand(newAdminCredentialShowCmd(g), newAdminCredentialRenewCmd(g))
	cmd.AddCommand(newAdminSetCmd(g, true), newAdminSetCmd(g, false), cred)
	return cmd
}

func newAdminSetCmd(g *globals, enable bool) *cobra.Command {
	use, short := "disable", "Disable the admin user; effective from its next request"
	if enable {
		use, short = "enable", "Enable the admin user (the first time, its passwords are generated and printed once)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var a api.Admin
			if err := c.do(cmd.Context(), "PATCH", "admin", nil, api.AdminPatch{AdminUserEnabled: &enable}, &a); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, a)
			}
			state := "disabled"
			if a.AdminUserEnabled {
				state = "enabled"
			}
			fmt.Fprintf(c.out, "The admin user %q is %s.\n", a.Username, state)
			var fresh []api.Password
			for _, p := range a.Passwords {
				if p.Value != "" {
					fresh = append(fresh, p)
				}
			}
			return printCredentials(c.out, c.server, api.Credentials{Username: a.Username, Passwords: fresh})
		},
	}
}

func newAdminCredentialShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the admin user's name and password slots",
		Long: `Show the admin user's name and password slots. berth keeps only hashes of
passwords, so their values cannot be shown: renew one to get a new value.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var a api.Admin
			if err := c.do(cmd.Context(), "GET", "admin", nil, nil, &a); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, a)
			}
			state := "disabled"
			if a.AdminUserEnabled {
				state = "enabled"
			}
			if err := fields(c.out, "Username", a.Username, "Status", state); err != nil {
				return err
			}
			fmt.Fprintln(c.out)
			if len(a.Passwords) == 0 {
				fmt.Fprintln(c.out, "No passwords yet: they are generated when the admin user is first enabled.")
				return nil
			}
			t := newTable(c.out, "PASSWORD", "CREATED", "LAST USED")
			for _, p := range a.Passwords {
				t.row(p.Name, fmtTime(p.CreationTime), fmtOptTime(p.LastUsed, "never"))
			}
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "\nPassword values are not stored; renew one with `berth admin credential renew --password-name password`.")
			return nil
		},
	}
}

func newAdminCredentialRenewCmd(g *globals) *cobra.Command {
	var slot string
	cmd := &cobra.Command{
		Use:   "renew --password-name password|password2",
		Short: "Generate a new admin password in one slot; the other keeps working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var creds api.Credentials
			if err := c.do(cmd.Context(), "POST", "admin/regenerateCredential", nil, api.RegenerateCredentialRequest{Name: slot}, &creds); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, creds)
			}
			return printCredentials(c.out, c.server, creds)
		},
	}
	cmd.Flags().StringVar(&slot, "password-name", "", "the slot to renew: password or password2")
	cmd.MarkFlagRequired("password-name")
	return cmd
}
