package main

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/overview"
)

func newOverviewCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "overview", "Show what needs attention: counts of repositories, tokens, expiring passwords, unused tokens, refusals, storage")
	cmd.Long = `Show the counts of the portal's overview page, of what you may see:
repositories, tokens, token passwords expiring within 7 days, tokens never
used and unused for 90 days, refused requests in the last 24 hours (with
the reader role or above) and storage used (with a management role).
Each has its list: berth token list --expiring-within-days 7, --never-used,
--unused-days 90; berth audit list --kind access --since 24h.`
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := g.client(cmd)
		if err != nil {
			return err
		}
		var o overview.Overview
		if err := c.do(cmd.Context(), "GET", "overview", nil, nil, &o); err != nil {
			return err
		}
		if c.json {
			return printJSON(c.out, o)
		}
		t := newTable(c.out, "WHAT", "COUNT")
		t.row("repositories", strconv.Itoa(o.Repositories))
		opt := func(what string, n *int) {
			if n != nil {
				t.row(what, strconv.Itoa(*n))
			}
		}
		opt("tokens", o.Tokens)
		opt("passwords expiring within 7 days", o.PasswordsExpiring)
		opt("tokens never used", o.TokensNeverUsed)
		opt("tokens unused for 90 days", o.TokensUnused)
		if o.DenialsLastDay != nil {
			t.row("refused requests in the last 24h", strconv.FormatInt(*o.DenialsLastDay, 10))
		}
		if o.StorageBytes != nil {
			t.row("storage used", config.ByteSize(*o.StorageBytes).Human())
		}
		return t.flush()
	}
	return cmd
}
