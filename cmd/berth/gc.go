package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/gc"
)

func newGCCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "gc [--dry-run] [--grace-period 1h]", "Reclaim space held by deleted content")
	cmd.Long = `Collect garbage on the server while it keeps serving: first remove the blob
links that no manifest of their repository refers to any more (layers of
deleted manifests, uploads never followed by a manifest), then delete blob
content that no repository links. Links and blobs younger than the grace
period are spared, so pushes in progress keep their layers. Needs the
contributor or owner role.`
	cmd.Example = `  berth gc --dry-run
  berth gc --grace-period 24h`
	var dryRun bool
	var grace string
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only report what would be removed (an estimate)")
	cmd.Flags().StringVar(&grace, "grace-period", "1h", "spare links and blobs younger than this (at least 1m)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := g.client(cmd)
		if err != nil {
			return err
		}
		var rep gc.Report
		if err := c.do(cmd.Context(), "POST", "gc", nil, api.GCRequest{DryRun: dryRun, GracePeriod: grace}, &rep); err != nil {
			return err
		}
		if c.json {
			return printJSON(c.out, rep)
		}
		verb := "Removed"
		if rep.DryRun {
			verb = "Would remove"
		}
		fmt.Fprintf(c.out, "%s %d blob link(s) and %d blob(s), freeing %d bytes (%s).\n", verb, len(rep.UnlinkedBlobs), len(rep.DeletedBlobs), rep.FreedBytes, rep.Duration)
		if len(rep.UnlinkedBlobs) > 0 {
			t := newTable(c.out, "REPOSITORY", "DIGEST", "SIZE")
			for _, l := range rep.UnlinkedBlobs {
				t.row(l.Repository, l.Digest.String(), fmt.Sprint(l.Size))
			}
			return t.flush()
		}
		return nil
	}
	return cmd
}
