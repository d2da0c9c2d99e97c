package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/audit"
)

func newAuditCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "audit", "Read the audit log")
	cmd.Long = `Read the audit log: every login attempt, push, manifest pull, delete, untag
and permission change, newest first. Needs the reader, contributor or owner
role.`
	cmd.AddCommand(newAuditListCmd(g))
	return cmd
}

func newAuditListCmd(g *globals) *cobra.Command {
	var identity, repository, kind, result, since, until, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--identity NAME] [--repository REPO] [--kind KIND] [--result allowed|denied] [--since 24h|TIME] [--limit N] [--format csv|json]",
		Short: "List audit events, newest first",
		Long: `List audit events, newest first. Refused data-plane requests are kind
"access" with result failure (denied): they name what was asked and what
the identity lacks. --format csv or json exports every matching event
(up to 100000; --limit, when given, bounds it) instead of a page.`,
		Example: `  berth audit list --kind login --result failure --since 24h
  berth audit list --result denied --repository team/app --identity sc-external-users
  berth audit list --result denied --since 24h --format csv > denials.csv
  berth audit list --identity ci-push --since 2030-01-01T00:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := g.env.now()
			q := url.Values{}
			if _, err := audit.ParseResult(result); err != nil {
				return fmt.Errorf("invalid --result %q: use allowed (success) or denied (failure)", result)
			}
			switch format {
			case "", "csv", "json":
			default:
				return fmt.Errorf("invalid --format %q: use csv or json", format)
			}
			for k, v := range map[string]string{"identity": identity, "repository": repository, "kind": kind, "result": result} {
				if v != "" {
					q.Set(k, v)
				}
			}
			for flag, v := range map[string]string{"since": since, "until": until} {
				if v == "" {
					continue
				}
				t, err := parseSince(v, now)
				if err != nil {
					return fmt.Errorf("invalid --%s %q: %w", flag, v, err)
				}
				q.Set(flag, t.Format(time.RFC3339))
			}
			if format == "" || cmd.Flags().Changed("limit") {
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if format != "" {
				// Both formats come from the API's JSON export; CSV is
				// written here, with the server's audit.WriteCSV.
				q.Set("format", "json")
				var events []audit.Event
				if err := c.do(cmd.Context(), "GET", "audit", q, nil, &events); err != nil {
					return err
				}
				if format == "csv" {
					return audit.WriteCSV(c.out, events)
				}
				return printJSON(c.out, events)
			}
			var list api.List[audit.Event]
			if err := c.do(cmd.Context(), "GET", "audit", q, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list.Value)
			}
			// COUNT is how many identical events a record stands for
			// (repeated pulls and failed logins are folded into one).
			t := newTable(c.out, "TIME", "KIND", "RESULT", "COUNT", "IDENTITY", "CREDENTIAL", "WHAT", "CALLER", "REASON")
			for _, e := range list.Value {
				t.row(fmtTime(e.Time), e.Kind, e.Result, strconv.Itoa(max(e.Count, 1)), dash(e.Identity), dash(e.Slot), dash(eventObject(e)), dash(e.CallerIP), dash(e.Reason))
			}
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&identity, "identity", "", "only events of this token, user or admin user")
	f.StringVar(&repository, "repository", "", "only events about this repository")
	f.StringVar(&kind, "kind", "", "only events of this kind: login, push, pull, delete, untag, permission, trust (signature policies) or access (refused requests)")
	f.StringVar(&result, "result", "", "only success (or allowed) or failure (or denied)")
	f.StringVar(&format, "format", "", "export every matching event as csv or json instead of a page")
	f.StringVar(&since, "since", "", "only events since this long ago (24h, 30m) or this time (2030-01-31T00:00:00Z)")
	f.StringVar(&until, "until", "", "only events before this long ago or this time")
	f.IntVar(&limit, "limit", 100, "at most this many events (1 to 1000)")
	return cmd
}

// parseSince reads a duration back from now (24h) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("use a positive duration")
		}
		return now.Add(-d).UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("use a duration such as 24h or 30m, or a time such as 2030-01-31T00:00:00Z")
	}
	return t.UTC(), nil
}

// eventObject says what an event was about.
func eventObject(e audit.Event) string {
	switch {
	case e.Kind == audit.KindAccess && e.Action != "":
		what := e.Action + " on " + dash(e.Repository)
		if e.Missing != "" {
			what += ", lacks " + e.Missing
		}
		return what
	case e.Target != "":
		return e.Target
	case e.Repository != "" && e.Tag != "":
		return e.Repository + ":" + e.Tag
	case e.Repository != "" && e.Digest != "":
		return e.Repository + "@" + e.Digest
	}
	return e.Repository
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
