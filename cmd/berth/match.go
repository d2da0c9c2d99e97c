package main

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/repository"
)

func newScopeMapMatchCmd(g *globals) *cobra.Command {
	var pattern string
	var first int
	cmd := &cobra.Command{
		Use:     "match --pattern PATTERN [--first N]",
		Short:   "Count the repositories a pattern matches, among those you may see",
		Example: `  berth scope-map match --pattern 'team/*'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var m repository.MatchResult
			q := url.Values{"pattern": {pattern}, "first": {strconv.Itoa(first)}}
			if err := c.do(cmd.Context(), "GET", "patternMatches", q, nil, &m); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, m)
			}
			count := strconv.Itoa(m.Count)
			if m.Partial {
				count += "+"
			}
			t := newTable(c.out, "PATTERN", "MATCHES", "FIRST")
			first := "-"
			if len(m.First) > 0 {
				first = strings.Join(m.First, ", ")
			}
			t.row(m.Pattern, count, first)
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&pattern, "pattern", "", "a repository pattern: team/app, team/* or *")
	cmd.Flags().IntVar(&first, "first", 5, "how many of the matching names to show (0 to 50)")
	cmd.MarkFlagRequired("pattern")
	return cmd
}
