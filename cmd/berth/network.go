package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/netrule"
)

const networkLong = `Network rules decide which client addresses may use the registry's data
plane: every /v2/ request, and token requests (/oauth2/token) that ask for
registry access. With the default action Allow (the default) every address may,
and the rules do nothing; with Deny only addresses in a rule may, and the rest
are answered 403 DENIED. Rules are CIDR ranges or single addresses, IPv4 or
IPv6; thousands cost no more than a few. Client addresses behind proxies are
taken from X-Forwarded-For as --trusted-proxy allows.

The rules do not fence the management API, the portal or berth's own logins
(berth login asks for no scope): serve those on a private listener with
berth serve --admin-addr. So Deny with no rules cannot lock the operators out.`

func newNetworkRuleCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "network-rule", "Add, remove and list the registry's network rules (the addresses allowed when the default action is Deny)")
	cmd.Long = networkLong
	rules := func(use, short, example string, method, path string) *cobra.Command {
		var ips []string
		c := &cobra.Command{
			Use:     use,
			Short:   short,
			Example: example,
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if len(ips) == 0 {
					return fmt.Errorf("name an address or range with --ip-address")
				}
				c, err := g.client(cmd)
				if err != nil {
					return err
				}
				var req api.IPRuleList
				for _, ip := range ips {
					req.IPRules = append(req.IPRules, api.IPRule{IPAddressOrRange: ip})
				}
				var s netrule.Settings
				if err := c.do(cmd.Context(), method, path, nil, req, &s); err != nil {
					return err
				}
				return printNetwork(c, s)
			},
		}
		c.Flags().StringArrayVar(&ips, "ip-address", nil, "an IP address or CIDR range, e.g. 10.1.0.0/16 (repeat for several)")
		return c
	}
	cmd.AddCommand(
		rules("add --ip-address CIDR [--ip-address CIDR]...", "Allow an address or range (in force when the default action is Deny)",
			"  berth network-rule add --ip-address 10.1.0.0/16 --ip-address 192.0.2.7\n  berth config network --default-action Deny",
			"POST", "networkRuleSet/ipRules"),
		rules("remove --ip-address CIDR [--ip-address CIDR]...", "Remove rules; every one named must exist",
			"  berth network-rule remove --ip-address 192.0.2.7", "POST", "networkRuleSet/ipRules/remove"),
		&cobra.Command{
			Use:   "list",
			Short: "List the rules and the default action",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client(cmd)
				if err != nil {
					return err
				}
				var s netrule.Settings
				if err := c.do(cmd.Context(), "GET", "networkRuleSet", nil, nil, &s); err != nil {
					return err
				}
				return printNetwork(c, s)
			},
		},
	)
	return cmd
}

func newConfigCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "config", "Show and change registry-wide settings")
	var action string
	network := &cobra.Command{
		Use:     "network [--default-action Allow|Deny]",
		Short:   "Show the network settings, or set the default action for addresses no rule names",
		Long:    networkLong,
		Example: "  berth config network --default-action Deny\n  berth config network",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var s netrule.Settings
			if cmd.Flags().Changed("default-action") {
				a, err := netrule.ParseAction(action)
				if err != nil {
					return err
				}
				err = c.do(cmd.Context(), "PATCH", "networkRuleSet", nil, api.NetworkRuleSetPatch{DefaultAction: a}, &s)
				if err != nil {
					return err
				}
			} else if err := c.do(cmd.Context(), "GET", "networkRuleSet", nil, nil, &s); err != nil {
				return err
			}
			return printNetwork(c, s)
		},
	}
	network.Flags().StringVar(&action, "default-action", "", "Allow (every address may reach the registry) or Deny (only addresses in a rule may)")
	cmd.AddCommand(network)
	return cmd
}

func printNetwork(c *client, s netrule.Settings) error {
	if s.IPRules == nil {
		s.IPRules = []netrule.Rule{}
	}
	if c.json {
		return printJSON(c.out, s)
	}
	note := ""
	switch {
	case s.DefaultAction == netrule.Allow && len(s.IPRules) > 0:
		note = " (every address may reach the registry; the rules apply once it is Deny)"
	case s.DefaultAction == netrule.Deny && len(s.IPRules) == 0:
		note = " (no address may reach the registry's data plane; management is not affected)"
	}
	fmt.Fprintf(c.out, "Default action: %s%s\n", s.DefaultAction, note)
	if len(s.IPRules) == 0 {
		fmt.Fprintln(c.out, "No rules.")
		return nil
	}
	fmt.Fprintln(c.out)
	t := newTable(c.out, "IP ADDRESS OR RANGE", "ACTION", "ADDED")
	for _, r := range s.IPRules {
		t.row(r.IPAddressOrRange, string(r.Action), fmtTime(r.CreatedAt))
	}
	return t.flush()
}

// tokenWithAddresses is a token as `token update` prints it in JSON after
// changing its allowed addresses.
type tokenWithAddresses struct {
	api.Token
	AllowedAddresses []string `json:"allowedAddresses"`
}

// setTokenAddresses replaces the addresses token may be used from.
func setTokenAddresses(cmd *cobra.Command, c *client, name string, ips []string) ([]string, error) {
	var out api.AllowedAddresses
	req := api.AllowedAddresses{AllowedAddresses: ips}
	if req.AllowedAddresses == nil {
		req.AllowedAddresses = []string{}
	}
	if err := c.do(cmd.Context(), "PUT", "tokens/"+url.PathEscape(name)+"/allowedAddresses", nil, req, &out); err != nil {
		return nil, err
	}
	return out.AllowedAddresses, nil
}

// printTokenAddresses prints the line of `token show` and `token update`
// that says where the token may be used from.
func printTokenAddresses(c *client, addrs []string) {
	if len(addrs) == 0 {
		fmt.Fprintln(c.out, "\nAllowed addresses: any the registry's network rules allow")
		return
	}
	fmt.Fprintln(c.out, "\nAllowed addresses: "+strings.Join(addrs, ", "))
}

// showTokenAddresses prints where token may be used from, if the server
// says (one that keeps no network rules does not).
func showTokenAddresses(cmd *cobra.Command, c *client, token string) {
	var a api.AllowedAddresses
	if c.do(cmd.Context(), "GET", "tokens/"+url.PathEscape(token)+"/allowedAddresses", nil, nil, &a) == nil {
		printTokenAddresses(c, a.AllowedAddresses)
	}
}
