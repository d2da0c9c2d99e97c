// Package migrate copies a registry from one database and content store to
// another: from the embedded defaults (SQLite and the filesystem under a
// data directory) to PostgreSQL and S3, and back, so that a registry can
// move without anyone pushing again.
//
// The source must be stopped. Blobs are copied first, streaming, each
// verified against its digest by the target store as it is written; only
// blobs the metadata refers to are copied. Then every table of every
// component is copied, column for column, in one transaction on the target
// that also marks the run complete. A run that stops part way leaves the
// blobs it copied and no metadata; running it again skips the blobs the
// target has and copies the rest.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/trust"
)

// Options say what to copy where. An empty database setting means the
// SQLite file in the data directory; an empty storage setting the
// filesystem under it.
type Options struct {
	FromData, FromDatabase, FromStorage string
	ToData, ToDatabase, ToStorage       string
	// DryRun checks the source and the target and reports what would be
	// copied, writing nothing.
	DryRun bool
	// Parallel bounds the blobs copied at once (default 4).
	Parallel int
	// Progress, if set, receives a line now and then while blobs copy.
	Progress io.Writer
	// EncryptionKey is the key provider (berth serve's --encryption-key)
	// of an encrypted source. The target is encrypted with the same key:
	// blobs are decrypted, verified and sealed again with their data
	// keys, and the wrapped data keys and secrets are copied as they are.
	EncryptionKey string

	// afterBlob, for tests, is called after each blob written.
	afterBlob func(digest.Digest)
}

// errTablesUnsupported means the target's engine cannot hold tables the
// source has in this version of berth.
var errTablesUnsupported = errors.New("tables not supported on the target's engine")

// Report is what a run did (or, for a dry run, would do).
type Report struct {
	Source, Target           string
	DryRun                   bool
	AlreadyDone              bool      // a previous run of this migration completed
	CompletedAt              time.Time // of that run, if AlreadyDone
	BlobsCopied, BytesCopied int64
	// BlobsSkipped are blobs the target already had (from a previous,
	// interrupted run).
	BlobsSkipped, BytesSkipped int64
	// Orphans are blobs in the source store that no metadata refers to;
	// they are not copied.
	Orphans, OrphanBytes int64
	// Uploads are upload sessions in progress in the source; they are not
	// copied (clients start them again).
	Uploads int64
	// Rows is the number of rows copied per table.
	Rows     map[string]int64
	Duration time.Duration
}

// Run copies the registry as o says.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	start := time.Now()
	rep = &Report{DryRun: o.DryRun, Rows: map[string]int64{}}
	defer func() { rep.Duration = time.Since(start) }()
	if err := o.check(); err != nil {
		return rep, err
	}

	src, err := openSource(ctx, o.FromDatabase, o.FromData)
	if err != nil {
		return rep, err
	}
	defer src.Close()
	se := src.d.Engine()
	have, err := versions(ctx, src.db, se)
	if err != nil {
		return rep, fmt.Errorf("source database %s: %w", src.name, err)
	}
	if err := checkVersions(have, se, "source database "+src.name); err != nil {
		return rep, err
	}
	srcTables, err := readSchema(ctx, src.db, se)
	if err != nil {
		return rep, fmt.Errorf("source database %s: %w", src.name, err)
	}
	encrypted, err := sourceEncrypted(ctx, src, srcTables, o.EncryptionKey)
	if err != nil {
		return rep, err
	}
	srcID, err := sourceID(ctx, src)
	if err != nil {
		return rep, err
	}
	if _, ok := srcTables["uploads"]; ok {
		if err := src.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM uploads`).Scan(&rep.Uploads); err != nil {
			return rep, fmt.Errorf("source database %s: count upload sessions: %w", src.name, err)
		}
	}

	srcStore, srcStoreName, err := openStore(ctx, o.FromStorage, o.FromData, false)
	if err != nil {
		return rep, fmt.Errorf("source storage: %w", err)
	}
	if srcStore == nil {
		return rep, fmt.Errorf("source: %s holds no blobs directory (give --from-storage for S3)", o.FromData)
	}
	rep.Source = src.name + ", " + srcStoreName
	if fs, ok := srcStore.(*storage.FS); ok {
		// The filesystem keeps its upload sessions in files, not the table.
		ups, err := fs.Uploads()
		if err != nil {
			return rep, fmt.Errorf("source storage %s: %w", srcStoreName, err)
		}
		rep.Uploads += int64(len(ups))
	}
	refs, err := referencedBlobs(ctx, src)
	if err != nil {
		return rep, err
	}
	if err := findOrphans(ctx, srcStore, refs, rep); err != nil {
		return rep, fmt.Errorf("source storage %s: %w", srcStoreName, err)
	}

	if o.DryRun {
		return rep, dryRun(ctx, o, rep, src, srcTables, srcID, refs)
	}

	if o.ToDatabase == "" {
		if err := os.MkdirAll(o.ToData, 0o750); err != nil {
			return rep, fmt.Errorf("create target data directory: %w", err)
		}
	}
	db, err := sqldb.Open(ctx, o.ToDatabase, o.ToData)
	if err != nil {
		return rep, fmt.Errorf("target: %w", err)
	}
	defer db.Close()
	if err := prepareTarget(ctx, db); err != nil {
		return rep, fmt.Errorf("target database %s: %w", db, err)
	}
	dstTables, err := readSchema(ctx, db.W().SQL(), db.Engine())
	if err != nil {
		return rep, fmt.Errorf("target database %s: %w", db, err)
	}
	plan, err := planTables(srcTables, dstTables, db.Engine())
	if err != nil {
		return rep, fmt.Errorf("target database %s: %w", db, err)
	}
	state, err := targetState(ctx, db.W().SQL(), dstTables, srcID)
	if err != nil {
		return rep, fmt.Errorf("target database %s: %w", db, err)
	}
	dstStore, dstStoreName, err := openStore(ctx, o.ToStorage, o.ToData, true)
	if err != nil {
		return rep, fmt.Errorf("target storage: %w", err)
	}
	rep.Target = db.String() + ", " + dstStoreName
	if state.completed != 0 {
		rep.AlreadyDone, rep.CompletedAt = true, time.UnixMilli(state.completed)
		return rep, nil
	}
	if !state.started {
		if _, err := db.W().ExecContext(ctx, `INSERT INTO `+progressTable+`(source, description, started_at) VALUES (?, ?, ?)`,
			srcID, rep.Source, time.Now().UnixMilli()); err != nil {
			return rep, fmt.Errorf("target database %s: record the migration: %w", db, err)
		}
	}

	var total int64
	for _, b := range refs {
		total += b.size
	}
	o.say("blobs: %d referenced (%s), copying those the target lacks, %d at once", len(refs), config.ByteSize(total).Human(), o.Parallel)
	var src2 blobSource = srcStore
	var dst2 blobTarget = dstStore
	if encrypted {
		keys, closeKeys, err := targetKeyring(ctx, src, db, plan, o.EncryptionKey)
		if err != nil {
			return rep, err
		}
		defer closeKeys()
		src2, dst2 = encryption.NewCopier(srcStore, keys), encryption.NewCopier(dstStore, keys)
	}
	bc := &blobCopy{src: src2, dst: dst2, parallel: o.Parallel, progress: o.Progress, afterBlob: o.afterBlob}
	err = bc.run(ctx, refs)
	rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, rep.BytesSkipped = bc.copied, bc.copiedBytes, bc.skipped, bc.skipByte
	if ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted after copying %d blobs; no metadata was copied: run the same command again to continue (blobs already copied are skipped): %w", bc.copied, context.Cause(ctx))
	}
	if err != nil {
		return rep, fmt.Errorf("%d of %d blobs could not be copied, so no metadata was copied; the target keeps the blobs copied so far, and running the same command again after fixing the cause continues:\n%w",
			len(bc.failures), len(refs), err)
	}

	floors, err := sequenceFloors(ctx, src.db, se, srcTables)
	if err != nil {
		return rep, fmt.Errorf("source database %s: %w", src.name, err)
	}
	o.say("metadata: copying %d tables in one transaction", len(plan))
	if err := copyMetadata(ctx, src, db, plan, floors, srcID, rep); err != nil {
		return rep, fmt.Errorf("copy metadata to %s (nothing of it was kept; run the same command again): %w", db, err)
	}
	return rep, nil
}

// say writes a progress line, if o has somewhere to write it.
func (o *Options) say(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

func (o *Options) check() error {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if (o.FromDatabase == "" || o.FromStorage == "") && o.FromData == "" {
		return errors.New("the source's database or blobs are in a data directory: give --from-data DIR (or both --from-database and --from-storage)")
	}
	if (o.ToDatabase == "" || o.ToStorage == "") && o.ToData == "" {
		return errors.New("the target's database or blobs go in a data directory: give --to-data DIR (or both --to-database and --to-storage)")
	}
	if o.FromDatabase == "" && o.ToDatabase == "" && samePath(o.FromData, o.ToData) {
		return errors.New("the source and the target are the same SQLite database: give --to-data a new directory, or --to-database")
	}
	if o.FromDatabase != "" && o.FromDatabase == o.ToDatabase {
		return errors.New("the source and the target are the same database")
	}
	return nil
}

func samePath(a, b string) bool {
	pa, err1 := filepath.Abs(a)
	pb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if ra, err := filepath.EvalSymlinks(pa); err == nil {
		pa = ra
	}
	if rb, err := filepath.EvalSymlinks(pb); err == nil {
		pb = rb
	}
	return pa == pb
}

// sourceID names the source database in the target's progress record, so
// that a run continues only a run from the same source: its engine and
// when its metadata tables were created.
func sourceID(ctx context.Context, src *source) (string, error) {
	var created int64
	if err := src.db.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&created); err != nil {
		return "", fmt.Errorf("source database %s: read its creation time: %w", src.name, err)
	}
	return fmt.Sprintf("%s:%d", src.d.Engine(), created), nil
}

// referencedBlobs returns every blob some repository links, once, with
// its size.
func referencedBlobs(ctx context.Context, src *source) ([]blobRef, error) {
	rows, err := src.db.QueryContext(ctx, `SELECT digest, MAX(size) FROM repository_blobs GROUP BY digest ORDER BY digest`)
	if err != nil {
		return nil, fmt.Errorf("source database %s: list blobs: %w", src.name, err)
	}
	defer rows.Close()
	var out []blobRef
	for rows.Next() {
		var b blobRef
		if err := rows.Scan(&b.digest, &b.size); err != nil {
			return nil, fmt.Errorf("source database %s: list blobs: %w", src.name, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// findOrphans counts the blobs in the source store that no repository
// links.
func findOrphans(ctx context.Context, st blobSource, refs []blobRef, rep *Report) error {
	linked := make(map[digest.Digest]bool, len(refs))
	for _, b := range refs {
		linked[b.digest] = true
	}
	return st.Walk(ctx, func(b storage.BlobInfo) error {
		if !linked[b.Digest] {
			rep.Orphans++
			rep.OrphanBytes += b.Size
		}
		return nil
	})
}

// progressTable records migrations into this database: which source, when
// started, when completed.
const (
	progressTable     = "migrate_runs"
	progressComponent = "migrate"
)

var progressSteps = map[sqldb.Engine][]string{
	sqldb.SQLite: {`CREATE TABLE migrate_runs (
		source TEXT PRIMARY KEY,
		description TEXT NOT NULL,
		started_at INTEGER NOT NULL,
		completed_at INTEGER NOT NULL DEFAULT 0
	)`},
	sqldb.Postgres: {`CREATE TABLE migrate_runs (
		source TEXT PRIMARY KEY,
		description TEXT NOT NULL,
		started_at BIGINT NOT NULL,
		completed_at BIGINT NOT NULL DEFAULT 0
	)`},
}

// prepareTarget brings every component's tables in db to this binary's
// schema version, and checks that none was newer.
func prepareTarget(ctx context.Context, db *sqldb.DB) error {
	if err := meta.Migrate(ctx, db); err != nil {
		return err
	}
	if err := identity.Migrate(ctx, db); err != nil {
		return err
	}
	if err := encryption.Migrate(ctx, db); err != nil {
		return err
	}
	if err := audit.Migrate(ctx, db); err != nil {
		return err
	}
	if err := netrule.Migrate(ctx, db); err != nil {
		return err
	}
	if err := ratelimit.Migrate(ctx, db); err != nil {
		return err
	}
	if err := trust.Migrate(ctx, db); err != nil {
		return err
	}
	if err := db.Migrate(ctx, progressComponent, progressSteps[db.Engine()]); err != nil {
		return err
	}
	have, err := versions(ctx, db.W().SQL(), db.Engine())
	if err != nil {
		return err
	}
	return checkVersions(have, db.Engine(), "the target")
}

// planned is one table to copy: the source's columns, and the target's
// in the same order.
type planned struct {
	src, dst *table
	cols     []column
}

// planTables matches every source table to copy with the target's, in an
// order that satisfies the foreign keys.
func planTables(srcTables, dstTables map[string]*table, de sqldb.Engine) ([]planned, error) {
	copyTables := map[string]*table{}
	for n, t := range srcTables {
		if !skipped(n) {
			copyTables[n] = t
		}
	}
	order, err := copyOrder(copyTables)
	if err != nil {
		return nil, err
	}
	var missing []string
	var plan []planned
	for _, t := range order {
		d, ok := dstTables[t.name]
		if !ok {
			missing = append(missing, t.name)
			continue
		}
		cols, err := matchColumns(t, d)
		if err != nil {
			return nil, err
		}
		plan = append(plan, planned{src: t, dst: d, cols: cols})
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("this version of berth keeps no tables %s on %s, which the source has (the data of a part of berth that runs on the embedded database only): keep the registry on the embedded SQLite database until a version of berth keeps them on %[2]s: %[3]w",
			strings.Join(missing, ", "), de, errTablesUnsupported)
	}
	return plan, nil
}

// seeded are the tables whose migrations insert a row (a version counter
// of one row), which the copy replaces.
var seeded = map[string]bool{"identity_state": true, "token_limits_state": true, "trust_state": true}

// runState is what the target's progress record says about a migration
// from this source.
type runState struct {
	started   bool
	completed int64 // when, in Unix milliseconds; 0 if not
}

// targetState checks that the target may receive the copy: it is empty, or
// it holds an unfinished run of the same migration (blobs, and no
// metadata: the metadata is committed with the run's completion), or a
// finished one, which is then not repeated.
func targetState(ctx context.Context, q queryer, dstTables map[string]*table, srcID string) (runState, error) {
	var st runState
	if _, ok := dstTables[progressTable]; ok {
		if err := readRuns(ctx, q, srcID, &st); err != nil {
			return st, err
		}
	}
	if st.completed != 0 {
		return st, nil
	}
	names := make([]string, 0, len(dstTables))
	for n := range dstTables {
		if !skipped(n) && !seeded[n] {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		var one int
		err := q.QueryRowContext(ctx, `SELECT 1 FROM `+quote(n)+` LIMIT 1`).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("check that table %s is empty: %w", n, err)
		}
		return st, fmt.Errorf("it already holds a registry (table %s has rows): berth migrate copies into an empty database only (a server started on it once creates its owner user); give an empty database", n)
	}
	return st, nil
}

// readRuns reads the target's migration records into st, refusing a
// record of a migration from another source.
func readRuns(ctx context.Context, q queryer, srcID string, st *runState) error {
	rows, err := q.QueryContext(ctx, `SELECT source, description, started_at, completed_at FROM `+progressTable)
	if err != nil {
		return fmt.Errorf("read the migration record: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, desc string
		var started, completed int64
		if err := rows.Scan(&id, &desc, &started, &completed); err != nil {
			return fmt.Errorf("read the migration record: %w", err)
		}
		if id != srcID {
			state := "an unfinished migration"
			if completed != 0 {
				state = "a migration"
			}
			return fmt.Errorf("it holds %s from another registry (%s, started %s): migrate into an empty database",
				state, desc, time.UnixMilli(started).UTC().Format(time.RFC3339))
		}
		st.started, st.completed = true, completed
	}
	return rows.Err()
}

// dryRun reports what a run would copy, checking the target as far as it
// exists, and writes nothing.
func dryRun(ctx context.Context, o Options, rep *Report, src *source, srcTables map[string]*table, srcID string, refs []blobRef) error {
	dbName := "the SQLite file in " + o.ToData
	exists := o.ToDatabase != ""
	if !exists {
		_, err := os.Stat(filepath.Join(o.ToData, sqldb.SQLiteFile))
		exists = err == nil
	}
	if exists {
		db, err := openReadOnly(ctx, o.ToDatabase, o.ToData)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		defer db.Close()
		dbName = db.name
		dstTables, err := readSchema(ctx, db.db, db.d.Engine())
		if err != nil {
			return fmt.Errorf("target database %s: %w", db.name, err)
		}
		st, err := targetState(ctx, db.db, dstTables, srcID)
		if err != nil {
			return fmt.Errorf("target database %s: %w", db.name, err)
		}
		if st.completed != 0 {
			rep.AlreadyDone, rep.CompletedAt = true, time.UnixMilli(st.completed)
		}
	}
	dst, storeName, err := openStore(ctx, o.ToStorage, o.ToData, false)
	if err != nil {
		return fmt.Errorf("target storage: %w", err)
	}
	rep.Target = dbName + ", " + storeName
	for _, b := range refs {
		if dst != nil {
			if n, err := dst.Stat(ctx, b.digest); err == nil && n == b.size {
				rep.BlobsSkipped++
				rep.BytesSkipped += b.size
				continue
			} else if err != nil && !errors.Is(err, storage.ErrBlobNotFound) {
				return fmt.Errorf("target storage %s: %w", storeName, err)
			}
		}
		rep.BlobsCopied++
		rep.BytesCopied += b.size
	}
	for n := range srcTables {
		if skipped(n) {
			continue
		}
		var c int64
		if err := src.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quote(n)).Scan(&c); err != nil {
			return fmt.Errorf("source database %s: count %s: %w", src.name, n, err)
		}
		rep.Rows[n] = c
	}
	return nil
}
