package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/identity"
)

func newSigningKeyCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "signing-key", "List, rotate and retire the keys that sign access and refresh tokens")
	cmd.Long = `The registry signs access and refresh tokens with one key at a time and
verifies them with every key it holds, by the key id (kid) in the token's
header. Rotating adds a key that every node verifies with at once and signs
with a few seconds later, so tokens issued before keep working; retire an old
key once no token it signed is needed any more (tokens it signed then stop
working on every node).`
	cmd.AddCommand(
		&cobra.Command{
			Use:   "list",
			Short: "List the signing keys and which one signs now",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client(cmd)
				if err != nil {
					return err
				}
				var keys api.List[identity.SigningKey]
				if err := c.do(cmd.Context(), "GET", "signingKeys", nil, nil, &keys); err != nil {
					return err
				}
				if c.json {
					return printJSON(c.out, keys)
				}
				t := newTable(c.out, "KID", "CREATED", "SIGNS FROM", "SIGNING")
				for _, k := range keys.Value {
					signing := ""
					if k.Signing {
						signing = "yes"
					}
					t.row(k.ID, fmtTime(k.Created), fmtTime(k.ActiveFrom), signing)
				}
				return t.flush()
			},
		},
		&cobra.Command{
			Use:   "rotate",
			Short: "Add a new signing key; older keys keep verifying",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client(cmd)
				if err != nil {
					return err
				}
				var k identity.SigningKey
				if err := c.do(cmd.Context(), "POST", "signingKeys", nil, nil, &k); err != nil {
					return err
				}
				if c.json {
					return printJSON(c.out, k)
				}
				fmt.Fprintf(c.out, "Signing key %s added; it signs new tokens from %s. Tokens signed before keep working until you retire their key.\n", k.ID, fmtTime(k.ActiveFrom))
				return nil
			},
		},
		&cobra.Command{
			Use:   "retire KID",
			Short: "Delete a signing key that no longer signs; tokens it signed stop working",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client(cmd)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), "DELETE", "signingKeys/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "Signing key %s retired.\n", args[0])
				return nil
			},
		},
	)
	return cmd
}
