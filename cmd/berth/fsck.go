package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

func newFsckCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "fsck [--repair] [--data DIR | --config FILE]", "Check every blob against its digest and every manifest against its blobs")
	cmd.Long = `Check the content store: read every blob file and compare its content with
its digest and its size with the size recorded at push, and check that every
manifest's config and layers are linked in its repository and stored intact.
The exit status is 1 when anything is wrong.

With --repair, damaged blob files are moved into the data directory's
quarantine/ directory (not deleted). The registry then answers BLOB_UNKNOWN
for them, so clients push them again, and the next push of the right content
restores each one. Nothing else is changed: missing blobs need a push.

With --data or --config the check runs here, on a data directory (the
server may be running); with --config, on the storage and database the
configuration names (blobs on S3 are quarantined under quarantine/ in the
bucket). Without them it runs on the server through the
management API, which needs the contributor or owner role.`
	cmd.Example = `  berth fsck --data /var/lib/berth
  berth fsck --config /etc/berth.yaml --repair
  berth fsck --server https://registry.example.com -o json`
	var repair bool
	var data, cfgFile, encKey string
	cmd.Flags().BoolVar(&repair, "repair", false, "move damaged blob files into quarantine so that a push restores them")
	cmd.Flags().StringVar(&encKey, "encryption-key", "", "with --data or --config: the key of a registry whose content is encrypted (as for berth serve --encryption-key)")
	cmd.Flags().StringVar(&data, "data", "", "check this data directory here instead of asking the server")
	cmd.Flags().StringVar(&cfgFile, "config", "", "check the data directory of this server configuration file here")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var rep fsck.Report
		out, asJSON := cmd.OutOrStdout(), g.output == "json"
		if data != "" || cfgFile != "" {
			if g.output != "table" && g.output != "json" {
				return fmt.Errorf("invalid --output %q: use table or json", g.output)
			}
			cfg := config.Config{Data: data}
			if data == "" {
				var err error
				if cfg, err = config.Load(cfgFile, env.getenv); err != nil {
					return err
				}
			}
			if encKey != "" {
				cfg.EncryptionKey = encKey
			}
			var err error
			if rep, err = checkOffline(cmd.Context(), cfg, repair); err != nil {
				return err
			}
		} else {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			// A check reads the whole store: the request takes as long as
			// that does (interrupting the command still ends it).
			if c.env.http.Timeout != 0 {
				env, hc := *c.env, *c.env.http
				hc.Timeout = 0
				env.http = &hc
				c.env = &env
			}
			if err := c.do(cmd.Context(), "POST", "fsck", nil, api.FsckRequest{Repair: repair}, &rep); err != nil {
				return err
			}
		}
		if asJSON {
			if err := printJSON(out, rep); err != nil {
				return err
			}
		} else if err := printFsck(out, rep); err != nil {
			return err
		}
		if n := rep.Problems(); n > 0 {
			return fmt.Errorf("%d problem(s) found", n)
		}
		return nil
	}
	return cmd
}

// checkOffline checks, in this process, the content store and database
// that cfg names: the data directory's, or those of its storage and
// database settings (blobs on S3).
func checkOffline(ctx context.Context, cfg config.Config, repair bool) (fsck.Report, error) {
	dir := cfg.Data
	if cfg.Database == "" {
		// Opening the database would create an empty one in a mistyped path.
		if _, err := os.Stat(filepath.Join(dir, "berth.db")); err != nil {
			return fsck.Report{}, fmt.Errorf("%s is not a berth data directory: %w", dir, err)
		}
	}
	var blobs fsck.Store
	var fs *storage.FS
	if cfg.Storage == "" {
		var err error
		if fs, err = storage.OpenFS(dir); err != nil {
			return fsck.Report{}, err
		}
		blobs = fs
	}
	db, err := sqldb.Open(ctx, cfg.Database, dir)
	if err != nil {
		return fsck.Report{}, err
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		db.Close()
		return fsck.Report{}, err
	}
	var inner encryption.Inner = fs
	if cfg.Storage != "" {
		sc, err := s3store.ParseURL(cfg.Storage)
		if err == nil {
			var st *s3store.Store
			if st, err = s3store.New(ctx, sc); err == nil {
				b := s3store.NewBlobs(st, s3store.NewDBSessions(md, storage.UploadLimits{}), md, s3store.BlobsOptions{})
				blobs, inner = b, b
			}
		}
		if err != nil {
			return fsck.Report{}, errors.Join(err, md.Close())
		}
	}
	// Encrypted content is checked decrypted, with the registry's key:
	// read as it is stored, every blob would look damaged.
	if err := encryption.Migrate(ctx, db); err != nil {
		return fsck.Report{}, errors.Join(err, md.Close())
	}
	on, err := encryption.Enabled(ctx, db)
	if err != nil {
		return fsck.Report{}, errors.Join(err, md.Close())
	}
	if on {
		if cfg.EncryptionKey == "" {
			return fsck.Report{}, errors.Join(errors.New("this registry's content is encrypted: give --encryption-key (or a --config that names it)"), md.Close())
		}
		p, err := encryption.ParseKeySpec(cfg.EncryptionKey)
		if err != nil {
			return fsck.Report{}, errors.Join(err, md.Close())
		}
		defer p.Close()
		keys, err := encryption.OpenKeyring(ctx, db, p, nil)
		if err == nil {
			err = keys.Err()
		}
		if err != nil {
			return fsck.Report{}, errors.Join(err, md.Close())
		}
		blobs = encryption.NewBlobs(inner, keys)
	}
	rep, err := fsck.Check(ctx, md, blobs, fsck.Options{Repair: repair})
	return rep, errors.Join(err, md.Close())
}

func printFsck(w io.Writer, r fsck.Report) error {
	fmt.Fprintf(w, "Checked %d blob(s), %d bytes, and %d manifest(s) in %s.\n", r.BlobsChecked, r.BytesChecked, r.ManifestsChecked, r.Duration)
	if r.Problems() == 0 {
		fmt.Fprintln(w, "No problems found.")
		return nil
	}
	if len(r.DamagedBlobs) > 0 {
		note := "run with --repair to quarantine them"
		if r.Repair {
			note = "quarantined: push them again"
		}
		fmt.Fprintf(w, "\n%d damaged blob(s) (%s):\n", len(r.DamagedBlobs), note)
		t := newTable(w, "DIGEST", "SIZE", "EXPECTED", "CONTENT DIGEST", "QUARANTINED", "USED BY")
		for _, b := range r.DamagedBlobs {
			t.row(b.Digest.String(), fmt.Sprint(b.Size), fmt.Sprint(b.ExpectedSize), b.ActualDigest.String(), fmt.Sprint(b.Quarantined), usedBy(b.Repositories, b.Manifests))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(r.MissingBlobs) > 0 {
		fmt.Fprintf(w, "\n%d missing blob(s) (linked but not stored: push them again):\n", len(r.MissingBlobs))
		t := newTable(w, "DIGEST", "SIZE", "QUARANTINED", "USED BY")
		for _, b := range r.MissingBlobs {
			t.row(b.Digest.String(), fmt.Sprint(b.Size), fmt.Sprint(b.Quarantined), usedBy(b.Repositories, b.Manifests))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(r.BrokenManifests) > 0 {
		fmt.Fprintf(w, "\n%d manifest(s) that cannot be pulled:\n", len(r.BrokenManifests))
		t := newTable(w, "MANIFEST", "BLOB", "PROBLEM")
		for _, m := range r.BrokenManifests {
			name := fsck.Manifest{Repository: m.Repository, Digest: m.Digest, Tags: m.Tags}.String()
			for _, ref := range m.Missing {
				t.row(name, ref.Digest.String(), ref.Problem)
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}

// usedBy names the manifests that refer to a blob, or else the
// repositories that link it.
func usedBy(repos []string, manifests []fsck.Manifest) string {
	var names []string
	for _, m := range manifests {
		names = append(names, m.String())
	}
	if len(names) == 0 {
		names = repos
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, " ")
}
