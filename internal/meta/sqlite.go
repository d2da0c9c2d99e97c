package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Store is the metadata store, on the embedded SQLite database or on
// PostgreSQL: one implementation whose queries are written once, with the
// differences between the engines left to package sqldb.
//
// Writes to one repository are serialised: on SQLite by its single writer,
// on PostgreSQL, where several nodes write at once, by a lock on the
// repository's row that every write transaction takes first.
type Store struct {
	db    *sqldb.DB
	w     *sqldb.Conn
	r     *sqldb.Conn
	d     *sqldb.Dialect
	cache *readCache
	// feed keeps the cache from serving other nodes' changes on
	// PostgreSQL; nil on SQLite, whose one process makes every write.
	feed *feed
	// now stamps blob links (when a push last referred to them), which
	// garbage collection compares with its grace cutoff.
	now func() time.Time
}

// OpenSQLite opens (creating and migrating if needed) the embedded
// database in dir.
func OpenSQLite(ctx context.Context, dir string) (*Store, error) {
	db, err := sqldb.OpenSQLite(ctx, dir)
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Open returns the metadata store in db, migrating its tables. The store
// owns db from then on: Close closes it.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	s := &Store{db: db, w: db.W(), r: db.R(), d: db.Dialect(), now: time.Now}
	s.cache = newReadCache(10000)
	// On PostgreSQL other nodes write too: the feed tells this node of
	// their writes, and says when the cache cannot be trusted.
	if db.Engine() == sqldb.Postgres {
		f, err := startFeed(ctx, db, s.cache)
		if err != nil {
			return nil, err
		}
		s.feed = f
	}
	return s, nil
}

// Migrate brings the metadata store's tables in db to this binary's
// schema, without opening the store (which on PostgreSQL would follow the
// other nodes' changes until closed).
func Migrate(ctx context.Context, db *sqldb.DB) error {
	steps := sqliteMigrations
	if db.Engine() == sqldb.Postgres {
		steps = postgresMigrations
	}
	if err := db.Migrate(ctx, "meta", steps); err != nil {
		return err
	}
	return backfillSummaries(ctx, db.W())
}

// Close closes the database.
func (s *Store) Close() error {
	s.feed.close()
	return s.db.Close()
}

// readCache returns the cache if it can be trusted now, else nil (which
// caches nothing).
func (s *Store) readCache() *readCache {
	if s.feed != nil && !s.feed.current() {
		return nil
	}
	return s.cache
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// DB returns the write handle, for packages that keep their own tables in the
// same database (identities, audit).
func (s *Store) DB() *sql.DB { return s.w.SQL() }

// ReadDB returns the read pool.
func (s *Store) ReadDB() *sql.DB { return s.r.SQL() }

// Database returns the database the store is in.
func (s *Store) Database() *sqldb.DB { return s.db }

// The migrations of the metadata store's tables, one list per engine.
// The SQLite list also creates the identity and audit tables, which were
// part of the one schema before components kept their own.
var sqliteMigrations = []string{
	`CREATE TABLE repositories (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		read_enabled INTEGER NOT NULL DEFAULT 1,
		write_enabled INTEGER NOT NULL DEFAULT 1,
		delete_enabled INTEGER NOT NULL DEFAULT 1,
		list_enabled INTEGER NOT NULL DEFAULT 1
	);
	CREATE TABLE repository_blobs (
		repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL,
		size INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (repository_id, digest)
	) WITHOUT ROWID;
	CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
	CREATE TABLE manifests (
		repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT NOT NULL DEFAULT '',
		subject TEXT NOT NULL DEFAULT '',
		size INTEGER NOT NULL,
		content BLOB NOT NULL,
		annotations TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		read_enabled INTEGER NOT NULL DEFAULT 1,
		write_enabled INTEGER NOT NULL DEFAULT 1,
		delete_enabled INTEGER NOT NULL DEFAULT 1,
		list_enabled INTEGER NOT NULL DEFAULT 1,
		PRIMARY KEY (repository_id, digest)
	) WITHOUT ROWID;
	CREATE INDEX manifests_subject ON manifests(repository_id, subject);
	CREATE TABLE tags (
		repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		digest TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (repository_id, name)
	) WITHOUT ROWID;
	CREATE INDEX tags_digest ON tags(repository_id, digest);`,
	// Identities and policy (package identity) and the audit log (package audit).
	`CREATE TABLE scope_maps (
		name TEXT PRIMARY KEY,
		description TEXT NOT NULL DEFAULT '',
		actions TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE tokens (
		name TEXT PRIMARY KEY,
		scope_map TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		generation INTEGER NOT NULL DEFAULT 1,
		created_at INTEGER NOT NULL,
		last_used INTEGER
	);
	CREATE TABLE users (
		name TEXT PRIMARY KEY,
		role TEXT NOT NULL,
		password_hash TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		generation INTEGER NOT NULL DEFAULT 1,
		created_at INTEGER NOT NULL,
		last_used INTEGER
	);
	CREATE TABLE passwords (
		owner_kind TEXT NOT NULL,
		owner TEXT NOT NULL,
		slot TEXT NOT NULL,
		hash TEXT NOT NULL,
		serial INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER,
		last_used INTEGER,
		PRIMARY KEY (owner_kind, owner, slot)
	);
	CREATE TABLE settings (
		key TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE audit (
		id INTEGER PRIMARY KEY,
		time INTEGER NOT NULL,
		kind TEXT NOT NULL,
		result TEXT NOT NULL,
		identity TEXT NOT NULL DEFAULT '',
		identity_kind TEXT NOT NULL DEFAULT '',
		slot TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL DEFAULT '',
		caller_ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		repository TEXT NOT NULL DEFAULT '',
		tag TEXT NOT NULL DEFAULT '',
		digest TEXT NOT NULL DEFAULT '',
		target TEXT NOT NULL DEFAULT '',
		jti TEXT NOT NULL DEFAULT '',
		duration_ms INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX audit_time ON audit(time);
	CREATE INDEX audit_identity ON audit(identity, time);`,
	`ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;`,
	// referenced_at is when a push last referred to a blob link (linked it,
	// mounted it, or found it with HEAD); garbage collection spares links
	// referenced within its grace period.
	`ALTER TABLE repository_blobs ADD COLUMN referenced_at INTEGER NOT NULL DEFAULT 0;
	UPDATE repository_blobs SET referenced_at = created_at;`,
	// summary is what lists show of a manifest (Summary, as JSON), worked
	// out when it is stored; '' until backfillSummaries fills it in.
	//
	// manifests_list covers every column that lists read, so that a list
	// reads the index alone: the columns after content in a row can only
	// be reached by walking the content's overflow pages, megabytes for a
	// large index.
	`ALTER TABLE manifests ADD COLUMN summary TEXT NOT NULL DEFAULT '';
	CREATE INDEX manifests_list ON manifests(repository_id, digest, media_type, artifact_type, subject, size, created_at,
		read_enabled, write_enabled, delete_enabled, list_enabled, summary);`,
	// The time of the last event folded into a record.
	`ALTER TABLE audit ADD COLUMN last_time INTEGER NOT NULL DEFAULT 0;`,
	// Upload sessions, shared by every node: any node continues an upload
	// another started, and the caps count sessions across nodes.
	`CREATE TABLE uploads (
		id TEXT PRIMARY KEY,
		repository TEXT NOT NULL,
		owner TEXT NOT NULL DEFAULT '',
		state BLOB NOT NULL DEFAULT x'',
		size INTEGER NOT NULL DEFAULT 0,
		started_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX uploads_owner ON uploads(owner);
	CREATE INDEX uploads_repository ON uploads(repository);
	CREATE INDEX uploads_updated ON uploads(updated_at);`,
	// A request's claim on an upload session (see ClaimUpload).
	`ALTER TABLE uploads ADD COLUMN claim TEXT NOT NULL DEFAULT '';
	ALTER TABLE uploads ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;`,
	// Blob content on shared storage: when a push last referred to it,
	// and whether garbage collection is deleting it (see content.go).
	`CREATE TABLE blobs (
		digest TEXT PRIMARY KEY,
		referenced_at INTEGER NOT NULL DEFAULT 0,
		deleting_at INTEGER NOT NULL DEFAULT 0
	);`,
	// The image manifests stored before summaries carried an image's
	// platform, which only the content store can tell: the registry reads
	// their configs and works the list off (platformfill.go).
	`CREATE TABLE platform_fill (
		repository_id INTEGER NOT NULL,
		digest TEXT NOT NULL,
		PRIMARY KEY (repository_id, digest)
	);
	INSERT INTO platform_fill(repository_id, digest) SELECT repository_id, digest FROM manifests
		WHERE media_type IN ('application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json');`,
}

// postgresMigrations start from the SQLite schema as it is at version 7
// (without the covering index manifests_list, which only SQLite needs: it
// keeps a large content inline before the columns after it, where
// PostgreSQL moves it out of the row).
// Names compare and sort bytewise (COLLATE "C"), as in SQLite, so listings
// page the same on both engines whatever the server's locale.
var postgresMigrations = []string{
	`CREATE TABLE repositories (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		name TEXT COLLATE "C" NOT NULL UNIQUE,
		created_at BIGINT NOT NULL,
		read_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		write_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		delete_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		list_enabled BOOLEAN NOT NULL DEFAULT TRUE
	);
	CREATE TABLE repository_blobs (
		repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT COLLATE "C" NOT NULL,
		size BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		referenced_at BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (repository_id, digest)
	);
	CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
	CREATE TABLE manifests (
		repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT COLLATE "C" NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT NOT NULL DEFAULT '',
		subject TEXT COLLATE "C" NOT NULL DEFAULT '',
		size BIGINT NOT NULL,
		content BYTEA NOT NULL,
		annotations TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		read_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		write_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		delete_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		list_enabled BOOLEAN NOT NULL DEFAULT TRUE,
		summary TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (repository_id, digest)
	);
	CREATE INDEX manifests_subject ON manifests(repository_id, subject);
	CREATE TABLE tags (
		repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		name TEXT COLLATE "C" NOT NULL,
		digest TEXT COLLATE "C" NOT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (repository_id, name)
	);
	CREATE INDEX tags_digest ON tags(repository_id, digest);
	CREATE TABLE uploads (
		id TEXT COLLATE "C" PRIMARY KEY,
		repository TEXT COLLATE "C" NOT NULL,
		owner TEXT COLLATE "C" NOT NULL DEFAULT '',
		state BYTEA NOT NULL DEFAULT '',
		size BIGINT NOT NULL DEFAULT 0,
		started_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX uploads_owner ON uploads(owner);
	CREATE INDEX uploads_repository ON uploads(repository);
	CREATE INDEX uploads_updated ON uploads(updated_at);`,
	`ALTER TABLE uploads ADD COLUMN claim TEXT NOT NULL DEFAULT '';
	ALTER TABLE uploads ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;`,
	`CREATE TABLE blobs (
		digest TEXT COLLATE "C" PRIMARY KEY,
		referenced_at BIGINT NOT NULL DEFAULT 0,
		deleting_at BIGINT NOT NULL DEFAULT 0
	);`,
	// The read caches' feed (feed.go): the version every write takes, and
	// the version each node has applied.
	`CREATE TABLE meta_version (v BIGINT NOT NULL);
	INSERT INTO meta_version VALUES (0);
	CREATE TABLE meta_nodes (
		node TEXT COLLATE "C" PRIMARY KEY,
		applied BIGINT NOT NULL,
		seen_at BIGINT NOT NULL
	);`,
	`CREATE TABLE platform_fill (
		repository_id BIGINT NOT NULL,
		digest TEXT COLLATE "C" NOT NULL,
		PRIMARY KEY (repository_id, digest)
	);
	INSERT INTO platform_fill(repository_id, digest) SELECT repository_id, digest FROM manifests
		WHERE media_type IN ('application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json');`,
}

// SchemaVersion is the version of the metadata store's schema on engine e.
func SchemaVersion(e sqldb.Engine) int {
	if e == sqldb.Postgres {
		return len(postgresMigrations)
	}
	return len(sqliteMigrations)
}

// tx runs fn in a write transaction on repository repo, then invalidates
// what the read cache holds for repo. On PostgreSQL it also tells the other
// nodes, and returns once they have invalidated theirs (see feed.go).
func (s *Store) tx(ctx context.Context, repo string, fn func(*sqldb.Tx) error) error {
	if s.feed == nil {
		defer s.cache.bump(repo)
		return s.db.InTx(ctx, fn)
	}
	var v int64
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		v, err = s.feed.announce(ctx, tx, repo)
		return err
	})
	s.cache.bump(repo)
	if err == nil {
		s.feed.await(v)
	}
	return err
}

// change appends c to the change log in tx; it must be the transaction's
// last statement (see sqldb.AppendChange).
func (s *Store) change(ctx context.Context, tx *sqldb.Tx, c sqldb.Change) error {
	c.Time = s.now()
	return sqldb.AppendChange(ctx, tx, c)
}

// Changes returns up to n entries of the change log after sequence number
// after, oldest first.
func (s *Store) Changes(ctx context.Context, after int64, n int) ([]sqldb.Change, error) {
	return s.db.Changes(ctx, after, n)
}

// The kinds of change the metadata store logs.
const (
	ChangePush                 = "manifest.push"
	ChangeTag                  = "tag.set"
	ChangeTagDelete            = "tag.delete"
	ChangeManifestDelete       = "manifest.delete"
	ChangeBlobDelete           = "blob.delete"
	ChangeRepositoryDelete     = "repository.delete"
	ChangeRepositoryAttributes = "repository.attributes"
	ChangeManifestAttributes   = "manifest.attributes"
)

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func repoID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrRepositoryNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up repository: %w", err)
	}
	return id, nil
}

// lockRepo returns the ID of repository name and locks its row until tx
// ends, so that writes to one repository from several nodes queue.
func lockRepo(ctx context.Context, tx *sqldb.Tx, name string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = ?`+tx.Dialect().ForUpdate(), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrRepositoryNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up repository: %w", err)
	}
	return id, nil
}

// ensureRepo is lockRepo, creating the repository if needed.
func ensureRepo(ctx context.Context, tx *sqldb.Tx, name string) (int64, error) {
	id, err := lockRepo(ctx, tx, name)
	if !errors.Is(err, ErrRepositoryNotFound) {
		return id, err
	}
	// Two nodes creating one repository: the second's insert waits for the
	// first's commit and then does nothing.
	if _, err := tx.ExecContext(ctx, `INSERT INTO repositories(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING`, name, time.Now().UnixMilli()); err != nil {
		return 0, fmt.Errorf("create repository: %w", err)
	}
	return lockRepo(ctx, tx, name)
}

// Repository returns one repository.
func (s *Store) Repository(ctx context.Context, name string) (Repository, error) {
	c := s.readCache()
	if r, ok := c.repository(name); ok {
		return r, nil
	}
	gen := c.gen(name)
	r, err := s.readRepository(ctx, name)
	if err == nil {
		c.putRepository(name, gen, r)
	}
	return r, err
}

func (s *Store) readRepository(ctx context.Context, name string) (Repository, error) {
	var r Repository
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT name, created_at, read_enabled, write_enabled, delete_enabled, list_enabled FROM repositories WHERE name = ?`, name).
		Scan(&r.Name, &created, &r.Attributes.ReadEnabled, &r.Attributes.WriteEnabled, &r.Attributes.DeleteEnabled, &r.Attributes.ListEnabled)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrRepositoryNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read repository: %w", err)
	}
	r.CreatedAt = time.UnixMilli(created)
	return r, nil
}

// SetClock replaces the clock that stamps blob links (for tests that let
// garbage collection's grace period pass). Call it before use.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// LinkBlob records that repo may see blob d, creating the repository if
// needed; a repository with writeEnabled=false refuses with a *LockedError.
// Linking a blob the repository already has counts as a fresh
// reference: a client re-pushing a layer is about to push the manifest that
// needs it, so garbage collection must not take the link meanwhile.
func (s *Store) LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := ensureRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		// Checked here, in the transaction that links, and not only when
		// the upload began: a repository locked during a long upload must
		// not receive its blob.
		var writable bool
		if err := tx.QueryRowContext(ctx, `SELECT write_enabled FROM repositories WHERE id = ?`, id).Scan(&writable); err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		if !writable {
			return &LockedError{What: "repository " + repo, Attr: "writeEnabled"}
		}
		now := s.now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO repository_blobs(repository_id, digest, size, created_at, referenced_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(repository_id, digest) DO UPDATE SET referenced_at = excluded.referenced_at`,
			id, d.String(), size, now, now); err != nil {
			return fmt.Errorf("link blob: %w", err)
		}
		return nil
	})
}

// refreshSlack is how old a link's last reference may be before
// ReferenceBlob writes a new one. It must stay well below the shortest grace
// period garbage collection accepts (one minute), so a link referenced
// within the slack is still spared by any collection.
const refreshSlack = 10 * time.Second

// ReferenceBlob records that a push found blob d in repo (a HEAD before
// skipping its upload), so garbage collection spares the link as if it had
// just been made. It returns ErrBlobNotFound if repo has no such link.
// A link referenced moments ago is not written again: a push HEADs every
// layer, and a write per request would queue behind the database writer.
func (s *Store) ReferenceBlob(ctx context.Context, repo string, d digest.Digest) error {
	now := s.now()
	var ref int64
	err := s.r.QueryRowContext(ctx, `SELECT b.referenced_at FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id WHERE r.name = ? AND b.digest = ?`,
		repo, d.String()).Scan(&ref)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrBlobNotFound
	}
	if err != nil {
		return fmt.Errorf("look up blob: %w", err)
	}
	if ref >= now.Add(-refreshSlack).UnixMilli() {
		return nil
	}
	// The update, not the read above, decides: a collection may have
	// removed the link in between, and then the push must upload. Nothing
	// cached changes, so this skips s.tx and its cache invalidation.
	res, err := s.w.ExecContext(ctx, `UPDATE repository_blobs SET referenced_at = ? WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?`,
		now.UnixMilli(), repo, d.String())
	if err != nil {
		return fmt.Errorf("reference blob: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("reference blob: %w", err)
	} else if n == 0 {
		return ErrBlobNotFound
	}
	return nil
}

// Blob returns the size of blob d if repo may see it.
func (s *Store) Blob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	var size int64
	err := s.r.QueryRowContext(ctx, `SELECT b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id WHERE r.name = ? AND b.digest = ?`,
		repo, d.String()).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrBlobNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("look up blob: %w", err)
	}
	return size, nil
}

// UnlinkBlob removes blob d from repo. The content stays until no repository
// refers to it (garbage collection). A locked repository (deleteEnabled
// false) or a locked manifest using the blob forbids it: a lock must protect
// an image's layers too.
func (s *Store) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return ErrBlobNotFound
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?`, id, d.String()).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrBlobNotFound
		}
		if err != nil {
			return fmt.Errorf("look up blob: %w", err)
		}
		var deletable bool
		if err := tx.QueryRowContext(ctx, `SELECT delete_enabled FROM repositories WHERE id = ?`, id).Scan(&deletable); err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		if !deletable {
			return &LockedError{What: "repository " + repo, Attr: "deleteEnabled"}
		}
		locked, err := lockedManifestUses(ctx, tx, id, d)
		if err != nil {
			return err
		}
		if locked != "" {
			return &LockedError{What: "blob " + d.String(), Reason: "is used by locked manifest " + locked}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?`, id, d.String()); err != nil {
			return fmt.Errorf("unlink blob: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeBlobDelete, Repository: repo, Digest: d.String()})
	})
}

// lockedManifestUses returns the digest of a locked manifest (writeEnabled
// or deleteEnabled false) of the repository whose config or layers include
// d, or "".
func lockedManifestUses(ctx context.Context, tx *sqldb.Tx, repoID int64, d digest.Digest) (string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT digest, content FROM manifests WHERE repository_id = ? AND (NOT write_enabled OR NOT delete_enabled)`, repoID)
	if err != nil {
		return "", fmt.Errorf("read manifests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var md string
		var content []byte
		if err := rows.Scan(&md, &content); err != nil {
			return "", fmt.Errorf("read manifests: %w", err)
		}
		if manifestBlobs(content)[d] {
			return md, nil
		}
	}
	return "", rows.Err()
}

// RepositoriesWithBlob lists the repositories that have blob d, for
// mounting a blob without naming its source.
func (s *Store) RepositoriesWithBlob(ctx context.Context, d digest.Digest) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT r.name FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id WHERE b.digest = ? ORDER BY r.name LIMIT 1000`, d.String())
	if err != nil {
		return nil, fmt.Errorf("find blob: %w", err)
	}
	return scanStrings(rows)
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return out, nil
}

// PutManifest stores a manifest and points tags at it, in one transaction,
// after checking that the repository has every blob it requires and that no
// attribute forbids the change.
func (s *Store) PutManifest(ctx context.Context, req PutManifestRequest) error {
	m := req.Manifest
	// The summary is worked out before the write transaction: parsing a
	// large index takes a while, and nothing else may write meanwhile.
	child := func(digest.Digest) (int64, bool, error) { return 0, false, nil }
	if id, err := repoID(ctx, s.r, req.Repository); err == nil {
		child = childSize(ctx, s.r, id)
	} else if !errors.Is(err, ErrRepositoryNotFound) {
		return err
	}
	sum, err := summarize(m.Size, m.Content, child)
	if err != nil {
		return err
	}
	if req.Platform != "" && sum.Children == 0 {
		sum.Platforms, sum.PlatformCount = []string{req.Platform}, 1
	}
	return s.tx(ctx, req.Repository, func(tx *sqldb.Tx) error {
		id, err := ensureRepo(ctx, tx, req.Repository)
		if err != nil {
			return err
		}
		var writable bool
		if err := tx.QueryRowContext(ctx, `SELECT write_enabled FROM repositories WHERE id = ?`, id).Scan(&writable); err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		if !writable {
			return &LockedError{What: "repository " + req.Repository, Attr: "writeEnabled"}
		}
		for _, d := range req.Requires {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?`, id, d.String()).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return &BlobUnknownError{Digest: d}
			}
			if err != nil {
				return fmt.Errorf("check blob: %w", err)
			}
		}
		for _, tag := range req.Tags {
			// Moving a tag away from a locked manifest would overwrite it.
			var cur string
			var curWritable bool
			err := tx.QueryRowContext(ctx, `SELECT t.digest, m.write_enabled FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest WHERE t.repository_id = ? AND t.name = ?`, id, tag).Scan(&cur, &curWritable)
			if err == nil && !curWritable && cur != m.Digest.String() {
				return &LockedError{What: req.Repository + ":" + tag, Attr: "writeEnabled"}
			}
			if err == nil && cur != m.Digest.String() && slices.Contains(req.Keep, tag) {
				return &TagMoveError{Tag: tag, Current: digest.Digest(cur)}
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read tag: %w", err)
			}
		}
		var ann string
		if len(m.Annotations) > 0 {
			b, _ := json.Marshal(m.Annotations)
			ann = string(b)
		}
		now := time.Now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO manifests(repository_id, digest, media_type, artifact_type, subject, size, content, annotations, created_at, summary)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(repository_id, digest) DO NOTHING`,
			id, m.Digest.String(), m.MediaType, m.ArtifactType, m.Subject.String(), m.Size, m.Content, ann, now, encodeSummary(sum)); err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		for _, tag := range req.Tags {
			if _, err := tx.ExecContext(ctx, `INSERT INTO tags(repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT(repository_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
				id, tag, m.Digest.String(), now); err != nil {
				return fmt.Errorf("store tag: %w", err)
			}
		}
		if err := s.change(ctx, tx, sqldb.Change{Kind: ChangePush, Repository: req.Repository, Digest: m.Digest.String(), Detail: m.MediaType}); err != nil {
			return err
		}
		for _, tag := range req.Tags {
			if err := s.change(ctx, tx, sqldb.Change{Kind: ChangeTag, Repository: req.Repository, Tag: tag, Digest: m.Digest.String()}); err != nil {
				return err
			}
		}
		return nil
	})
}

const manifestCols = `m.digest, m.media_type, m.artifact_type, m.subject, m.size, m.content, m.annotations, m.created_at, m.read_enabled, m.write_enabled, m.delete_enabled, m.list_enabled, m.summary`

// manifestListCols are manifestCols without the content and the
// annotations, for lists: they show summaries, and read only the
// manifests_list index (a page of tags of large indexes would otherwise
// read megabytes per row).
const manifestListCols = `m.digest, m.media_type, m.artifact_type, m.subject, m.size, NULL, '', m.created_at, m.read_enabled, m.write_enabled, m.delete_enabled, m.list_enabled, m.summary`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanManifest(row scanner) (Manifest, error) {
	var m Manifest
	var dg, subj, ann, sum string
	var created int64
	err := row.Scan(&dg, &m.MediaType, &m.ArtifactType, &subj, &m.Size, &m.Content, &ann, &created,
		&m.Attributes.ReadEnabled, &m.Attributes.WriteEnabled, &m.Attributes.DeleteEnabled, &m.Attributes.ListEnabled, &sum)
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrManifestNotFound
	}
	if err != nil {
		return m, fmt.Errorf("read manifest: %w", err)
	}
	m.Digest, m.Subject = digest.Digest(dg), digest.Digest(subj)
	m.CreatedAt = time.UnixMilli(created)
	m.Summary, _ = decodeSummary(sum)
	if ann != "" {
		_ = json.Unmarshal([]byte(ann), &m.Annotations)
	}
	return m, nil
}

// Manifest returns the manifest that ref (a tag or a digest) names in repo.
// The result's Content is shared with the cache and must not be changed.
func (s *Store) Manifest(ctx context.Context, repo, ref string) (Manifest, error) {
	c := s.readCache()
	if m, ok := c.manifest(repo, ref); ok {
		return m, nil
	}
	gen := c.gen(repo)
	m, err := s.readManifest(ctx, repo, ref)
	if err == nil {
		c.putManifest(repo, ref, gen, m)
	}
	return m, err
}

func (s *Store) readManifest(ctx context.Context, repo, ref string) (Manifest, error) {
	var row *sql.Row
	if _, err := digest.Parse(ref); err == nil {
		row = s.r.QueryRowContext(ctx, `SELECT `+manifestCols+` FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.digest = ?`, repo, ref)
	} else {
		row = s.r.QueryRowContext(ctx, `SELECT `+manifestCols+` FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest WHERE r.name = ? AND t.name = ?`, repo, ref)
	}
	return scanManifest(row)
}

// UntaggedManifests lists up to n manifests of repo that no tag points at
// (platform images of an index, signatures, SBOMs, images whose tag moved
// on), newest first, without their content and annotations (Content and
// Annotations are nil).
func (s *Store) UntaggedManifests(ctx context.Context, repo string, n int) ([]Manifest, error) {
	id, err := repoID(ctx, s.r, repo)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+manifestListCols+` FROM manifests m INDEXED BY manifests_list
		WHERE m.repository_id = ? AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)
		ORDER BY m.created_at DESC, m.digest LIMIT ?`, id, limit(n))
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	defer rows.Close()
	var out []Manifest
	for rows.Next() {
		m, err := scanManifest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// TagManifests lists up to n tags of repo after last, in order, each with
// the manifest it points at, without the manifest's content and
// annotations (Content and Annotations are nil): one query for a page of a
// repository's tags. As Tags, it leaves out the tags of manifests with
// listEnabled=false.
func (s *Store) TagManifests(ctx context.Context, repo, last string, n int) ([]TaggedManifest, error) {
	id, err := repoID(ctx, s.r, repo)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT t.name, `+manifestListCols+` FROM tags t
		JOIN manifests m INDEXED BY manifests_list ON m.repository_id = t.repository_id AND m.digest = t.digest
		WHERE t.repository_id = ? AND t.name > ? AND m.list_enabled ORDER BY t.name LIMIT ?`, id, last, limit(n))
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	defer rows.Close()
	var out []TaggedManifest
	for rows.Next() {
		var t TaggedManifest
		if t.Manifest, err = scanManifest(prefixScanner{rows, &t.Tag}); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteManifest deletes a manifest and every tag that points at it.
func (s *Store) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return ErrManifestNotFound
		}
		var repoDel, manDel, manWrite bool
		err = tx.QueryRowContext(ctx, `SELECT r.delete_enabled, m.delete_enabled, m.write_enabled FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE m.repository_id = ? AND m.digest = ?`, id, d.String()).
			Scan(&repoDel, &manDel, &manWrite)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrManifestNotFound
		}
		if err != nil {
			return fmt.Errorf("read manifest: %w", err)
		}
		switch {
		case !repoDel:
			return &LockedError{What: "repository " + repo, Attr: "deleteEnabled"}
		case !manDel:
			return &LockedError{What: "manifest " + d.String(), Attr: "deleteEnabled"}
		case !manWrite:
			return &LockedError{What: "manifest " + d.String(), Attr: "writeEnabled"}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE repository_id = ? AND digest = ?`, id, d.String()); err != nil {
			return fmt.Errorf("delete tags: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM manifests WHERE repository_id = ? AND digest = ?`, id, d.String()); err != nil {
			return fmt.Errorf("delete manifest: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeManifestDelete, Repository: repo, Digest: d.String()})
	})
}

// DeleteTag removes a tag; the manifest stays.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return ErrTagNotFound
		}
		var repoDel, manWrite bool
		err = tx.QueryRowContext(ctx, `SELECT r.delete_enabled, m.write_enabled FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest WHERE t.repository_id = ? AND t.name = ?`, id, tag).
			Scan(&repoDel, &manWrite)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrTagNotFound
		}
		if err != nil {
			return fmt.Errorf("read tag: %w", err)
		}
		if !repoDel {
			return &LockedError{What: "repository " + repo, Attr: "deleteEnabled"}
		}
		if !manWrite {
			return &LockedError{What: repo + ":" + tag, Attr: "writeEnabled"}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE repository_id = ? AND name = ?`, id, tag); err != nil {
			return fmt.Errorf("delete tag: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeTagDelete, Repository: repo, Tag: tag})
	})
}

// Tags lists up to n of repo's tags that sort after last, in lexical order.
// n < 0 means no limit.
func (s *Store) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	id, err := repoID(ctx, s.r, repo)
	if err != nil {
		return nil, err
	}
	// listEnabled=false hides a manifest's tags from listings (ACR's meaning).
	rows, err := s.r.QueryContext(ctx, `SELECT t.name FROM tags t JOIN manifests m INDEXED BY manifests_list ON m.repository_id = t.repository_id AND m.digest = t.digest
		WHERE t.repository_id = ? AND t.name > ? AND m.list_enabled ORDER BY t.name LIMIT ?`, id, last, limit(n))
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	tags, err := scanStrings(rows)
	if tags == nil && err == nil {
		tags = []string{}
	}
	return tags, err
}

// Repositories lists up to n repository names that sort after last,
// leaving out those with listEnabled=false. n < 0 means no limit.
func (s *Store) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	return s.ListRepositories(ctx, last, n, false)
}

// ListRepositories is Repositories, optionally with hidden ones (for
// management views, where a hidden repository must stay reachable).
func (s *Store) ListRepositories(ctx context.Context, last string, n int, includeHidden bool) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM repositories WHERE name > ? AND (list_enabled OR ?) ORDER BY name LIMIT ?`, last, includeHidden, limit(n))
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	return scanStrings(rows)
}

// Referrers lists the manifests in repo whose subject is d, optionally only
// those of one artifact type.
func (s *Store) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]Referrer, error) {
	q := `SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations FROM manifests m INDEXED BY manifests_subject JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.subject = ?`
	args := []any{repo, d.String()}
	if artifactType != "" {
		q += ` AND m.artifact_type = ?`
		args = append(args, artifactType)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY m.created_at, m.digest`, args...)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	defer rows.Close()
	out := []Referrer{}
	for rows.Next() {
		var r Referrer
		var dg, ann string
		if err := rows.Scan(&r.MediaType, &dg, &r.Size, &r.ArtifactType, &ann); err != nil {
			return nil, fmt.Errorf("scan referrer: %w", err)
		}
		r.Digest = digest.Digest(dg)
		if ann != "" {
			_ = json.Unmarshal([]byte(ann), &r.Annotations)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UpdateRepositoryAttributes changes a repository's attributes with fn,
// reading and writing in one transaction so concurrent changes of different
// attributes do not undo each other. It returns the new attributes.
func (s *Store) UpdateRepositoryAttributes(ctx context.Context, repo string, fn func(Attributes) Attributes) (Attributes, error) {
	var out Attributes
	err := s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		var a Attributes
		err = tx.QueryRowContext(ctx, `SELECT read_enabled, write_enabled, delete_enabled, list_enabled FROM repositories WHERE id = ?`, id).
			Scan(&a.ReadEnabled, &a.WriteEnabled, &a.DeleteEnabled, &a.ListEnabled)
		if err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		out = fn(a)
		if _, err := tx.ExecContext(ctx, `UPDATE repositories SET read_enabled = ?, write_enabled = ?, delete_enabled = ?, list_enabled = ? WHERE id = ?`,
			out.ReadEnabled, out.WriteEnabled, out.DeleteEnabled, out.ListEnabled, id); err != nil {
			return fmt.Errorf("update repository: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeRepositoryAttributes, Repository: repo, Detail: attrJSON(out)})
	})
	return out, err
}

// UpdateManifestAttributes changes the attributes of manifest d in repo
// with fn, in one transaction. It returns the new attributes.
func (s *Store) UpdateManifestAttributes(ctx context.Context, repo string, d digest.Digest, fn func(Attributes) Attributes) (Attributes, error) {
	var out Attributes
	err := s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return ErrManifestNotFound
		}
		var a Attributes
		err = tx.QueryRowContext(ctx, `SELECT read_enabled, write_enabled, delete_enabled, list_enabled FROM manifests WHERE repository_id = ? AND digest = ?`, id, d.String()).
			Scan(&a.ReadEnabled, &a.WriteEnabled, &a.DeleteEnabled, &a.ListEnabled)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrManifestNotFound
		}
		if err != nil {
			return fmt.Errorf("read manifest: %w", err)
		}
		out = fn(a)
		if _, err := tx.ExecContext(ctx, `UPDATE manifests SET read_enabled = ?, write_enabled = ?, delete_enabled = ?, list_enabled = ? WHERE repository_id = ? AND digest = ?`,
			out.ReadEnabled, out.WriteEnabled, out.DeleteEnabled, out.ListEnabled, id, d.String()); err != nil {
			return fmt.Errorf("update manifest: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeManifestAttributes, Repository: repo, Digest: d.String(), Detail: attrJSON(out)})
	})
	return out, err
}

// DeleteRepository deletes a repository with all its manifests, tags and blob
// links.
func (s *Store) DeleteRepository(ctx context.Context, repo string) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if err != nil {
			return err
		}
		var del bool
		if err := tx.QueryRowContext(ctx, `SELECT delete_enabled FROM repositories WHERE id = ?`, id).Scan(&del); err != nil {
			return fmt.Errorf("read repository: %w", err)
		}
		if !del {
			return &LockedError{What: "repository " + repo, Attr: "deleteEnabled"}
		}
		var locked int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM manifests WHERE repository_id = ? AND (NOT delete_enabled OR NOT write_enabled)`, id).Scan(&locked); err != nil {
			return fmt.Errorf("read manifests: %w", err)
		}
		if locked > 0 {
			return &LockedError{What: fmt.Sprintf("repository %s", repo), Reason: fmt.Sprintf("has %d locked manifest(s) (writeEnabled=false or deleteEnabled=false)", locked)}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM repositories WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete repository: %w", err)
		}
		return s.change(ctx, tx, sqldb.Change{Kind: ChangeRepositoryDelete, Repository: repo})
	})
}

// limit is a LIMIT for n, where n < 0 means none (PostgreSQL refuses a
// negative LIMIT that SQLite takes as none).
func limit(n int) int64 {
	if n < 0 {
		return math.MaxInt64
	}
	return int64(n)
}

func attrJSON(a Attributes) string {
	b, _ := json.Marshal(a)
	return string(b)
}
