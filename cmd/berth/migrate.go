package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/migrate"
)

func newMigrateCmd() *cobra.Command {
	var o migrate.Options
	var output string
	cmd := &cobra.Command{
		Use:   "migrate (--from-data DIR | --from-database URL --from-storage URL) (--to-data DIR | --to-database URL --to-storage URL) [--encryption-key SPEC] [--dry-run] [--parallel N]",
		Short: "Copy a stopped registry to another database and content store, such as PostgreSQL and S3",
		Long: `Copy a registry from one database and content store to another: from the
embedded defaults (SQLite and blobs on the filesystem, in a data directory) to
PostgreSQL and S3, back again, or any mix. Repositories, manifests, tags,
users, tokens with their passwords, scope maps, the signing key and the audit
log are copied as they are, so logins and tokens keep working; blobs are
copied streaming and verified against their digests, several at once.
Only blobs that some repository links are copied; others are counted as
orphans.

The source must be stopped: a source SQLite database that a server has open
is refused (and stays locked against servers while the migration runs), as is
a PostgreSQL source with other sessions connected. It must be at this
berth's schema version (start it once with this version first). The target
must be empty, or hold an unfinished run of the same migration: running the
same command again after an interruption skips the blobs already copied. The
metadata is copied last, in one transaction, so the target holds all of it
or none.

The database and storage URLs are those of berth serve's --database and
--storage; S3 credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or the AWS SDK's default chain), for both sides.

An encrypted source needs --encryption-key with its key. The target is
encrypted with the same key: each blob is decrypted, verified against its
digest and sealed again with its data key, and the wrapped data keys,
password hashes and signing keys are copied as they are; serve the target
with the same --encryption-key.`,
		Example: `  # from a laptop's data directory to PostgreSQL and S3
  berth migrate --from-data ./berth-data \
    --to-database postgres://berth:secret@db:5432/berth \
    --to-storage 's3://registry?endpoint=https://s3.example.com&region=eu-1'

  # and back into a new data directory
  berth migrate --from-database postgres://berth:secret@db:5432/berth \
    --from-storage 's3://registry?endpoint=https://s3.example.com&region=eu-1' \
    --to-data ./berth-data-copy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("invalid --output %q: use table or json", output)
			}
			o.Progress = cmd.ErrOrStderr()
			rep, err := migrate.Run(cmd.Context(), o)
			if err != nil {
				if rep != nil && (rep.BlobsCopied > 0 || rep.BlobsSkipped > 0) {
					fmt.Fprintf(cmd.ErrOrStderr(), "blobs: %d copied (%s), %d already in the target\n", rep.BlobsCopied, config.ByteSize(rep.BytesCopied).Human(), rep.BlobsSkipped)
				}
				return err
			}
			if output == "json" {
				return writeMigrateJSON(cmd.OutOrStdout(), rep)
			}
			writeMigrateReport(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.FromData, "from-data", "", "the source's data directory: its SQLite database and blobs, unless --from-database or --from-storage say otherwise")
	f.StringVar(&o.FromDatabase, "from-database", "", "the source's PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=MODE); default the SQLite file in --from-data")
	f.StringVar(&o.FromStorage, "from-storage", "", "the source's S3 storage (s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true); default the blobs in --from-data")
	f.StringVar(&o.ToData, "to-data", "", "the target's data directory (created if needed), for its SQLite database and blobs, unless --to-database or --to-storage say otherwise")
	f.StringVar(&o.ToDatabase, "to-database", "", "the target's PostgreSQL database, which must be empty (an unfinished run of the same migration is continued); default the SQLite file in --to-data")
	f.StringVar(&o.ToStorage, "to-storage", "", "the target's S3 storage; default the blobs in --to-data")
	f.StringVar(&o.EncryptionKey, "encryption-key", "", "the key of an encrypted source, as berth serve's --encryption-key (file:PATH or pkcs11:...); the target is encrypted with the same key")
	f.BoolVar(&o.DryRun, "dry-run", false, "check both sides and report what would be copied, writing nothing")
	f.IntVar(&o.Parallel, "parallel", 4, "blobs copied at once")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func writeMigrateReport(w io.Writer, rep *migrate.Report) {
	fmt.Fprintf(w, "source: %s\ntarget: %s\n", rep.Source, rep.Target)
	if rep.AlreadyDone {
		fmt.Fprintf(w, "this migration completed at %s; nothing to do (to copy again, use an empty target)\n", rep.CompletedAt.UTC().Format(time.RFC3339))
		return
	}
	verb := "copied"
	if rep.DryRun {
		verb = "to copy"
	}
	fmt.Fprintf(w, "blobs %s: %d (%s)\n", verb, rep.BlobsCopied, config.ByteSize(rep.BytesCopied).Human())
	fmt.Fprintf(w, "blobs already in the target: %d (%s)\n", rep.BlobsSkipped, config.ByteSize(rep.BytesSkipped).Human())
	fmt.Fprintf(w, "orphaned blobs in the source, not copied: %d (%s)\n", rep.Orphans, config.ByteSize(rep.OrphanBytes).Human())
	if rep.Uploads > 0 {
		fmt.Fprintf(w, "upload sessions in progress, not copied (clients start them again): %d\n", rep.Uploads)
	}
	names := make([]string, 0, len(rep.Rows))
	for n := range rep.Rows {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, rep.Rows[n])
	}
	fmt.Fprintf(w, "rows %s: %s\n", verb, strings.Join(parts, ", "))
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was written")
	}
	fmt.Fprintf(w, "time: %s\n", rep.Duration.Round(time.Millisecond))
}

func writeMigrateJSON(w io.Writer, rep *migrate.Report) error {
	v := struct {
		Source       string           `json:"source"`
		Target       string           `json:"target"`
		DryRun       bool             `json:"dryRun"`
		AlreadyDone  bool             `json:"alreadyDone"`
		BlobsCopied  int64            `json:"blobsCopied"`
		BytesCopied  int64            `json:"bytesCopied"`
		BlobsSkipped int64            `json:"blobsSkipped"`
		BytesSkipped int64            `json:"bytesSkipped"`
		Orphans      int64            `json:"orphans"`
		OrphanBytes  int64            `json:"orphanBytes"`
		Uploads      int64            `json:"uploadsNotCopied"`
		Rows         map[string]int64 `json:"rows"`
		Seconds      float64          `json:"seconds"`
	}{rep.Source, rep.Target, rep.DryRun, rep.AlreadyDone, rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, rep.BytesSkipped,
		rep.Orphans, rep.OrphanBytes, rep.Uploads, rep.Rows, rep.Duration.Seconds()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
