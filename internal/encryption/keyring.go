// Package encryption is berth's encryption at rest with customer-managed
// keys: envelope encryption of blob content, each blob with a data key of
// its own (AES-256-GCM in fixed-size segments, so ranges and resumed reads
// decrypt only what they need), data keys wrapped by a key-encryption key
// (KEK) that the operator holds in a key file or an HSM (PKCS#11).
//
// Wrapped data keys live in the metadata database (encryption_data_keys,
// one per digest, so deduplicated content has one key), so rotating the KEK
// re-wraps them without touching content. Blobs wraps any content store.
package encryption

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
)

var migrations = map[sqldb.Engine][]string{
	sqldb.SQLite: {
		`CREATE TABLE encryption_kek (
			version INTEGER PRIMARY KEY,
			kek_id TEXT NOT NULL,
			check_value BLOB NOT NULL,
			created_at INTEGER NOT NULL
		);
		CREATE TABLE encryption_data_keys (
			digest TEXT PRIMARY KEY,
			kek_version INTEGER NOT NULL,
			wrapped BLOB NOT NULL,
			created_at INTEGER NOT NULL
		);
		CREATE INDEX encryption_data_keys_version ON encryption_data_keys (kek_version, digest);
		CREATE TABLE encryption_jobs (
			name TEXT PRIMARY KEY,
			state TEXT NOT NULL,
			updated_at INTEGER NOT NULL
		);`,
	},
	sqldb.Postgres: {
		`CREATE TABLE encryption_kek (
			version INTEGER PRIMARY KEY,
			kek_id TEXT NOT NULL,
			check_value BYTEA NOT NULL,
			created_at BIGINT NOT NULL
		);
		CREATE TABLE encryption_data_keys (
			digest TEXT COLLATE "C" PRIMARY KEY,
			kek_version INTEGER NOT NULL,
			wrapped BYTEA NOT NULL,
			created_at BIGINT NOT NULL
		);
		CREATE INDEX encryption_data_keys_version ON encryption_data_keys (kek_version, digest);
		CREATE TABLE encryption_jobs (
			name TEXT PRIMARY KEY,
			state TEXT NOT NULL,
			updated_at BIGINT NOT NULL
		);`,
	},
}

// SchemaVersion is the version this binary brings the encryption tables to.
func SchemaVersion(e sqldb.Engine) int { return len(migrations[e]) }

// Migrate creates or updates the encryption tables. They are created
// whether or not encryption is on, so that a registry started without a
// key can tell that its content is encrypted.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, "encryption", migrations[db.Engine()])
}

// Enabled reports whether the registry in db has encryption turned on (a
// KEK version is recorded).
func Enabled(ctx context.Context, db *sqldb.DB) (bool, error) {
	var n int
	if err := db.R().QueryRowContext(ctx, `SELECT count(*) FROM encryption_kek`).Scan(&n); err != nil {
		return false, fmt.Errorf("read encryption state: %w", err)
	}
	return n > 0, nil
}

// Keyring gives data keys by digest: unwrapped from the database with the
// KEK, or made and stored for content being written.
type Keyring struct {
	db  *sqldb.DB
	p   KeyProvider
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	current int // the KEK version new data keys are wrapped with
	aeads   map[int]cipher.AEAD
	cache   map[digest.Digest][]byte
	err     error // why the key is unavailable, nil when it is usable
	checked time.Time
}

// maxCached bounds the unwrapped data keys held in memory.
const maxCached = 8192

// OpenKeyring checks the provider's key against the registry's and
// returns the keyring. A registry without a recorded KEK (encryption just
// turned on) records the provider's newest version. A key that does not
// answer now does not stop the start: the keyring reports it as
// unavailable until Check finds it back.
func OpenKeyring(ctx context.Context, db *sqldb.DB, p KeyProvider, log *slog.Logger) (*Keyring, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{db: db, p: p, log: log, now: time.Now, aeads: map[int]cipher.AEAD{}, cache: map[digest.Digest][]byte{}}
	on, err := Enabled(ctx, db)
	if err != nil {
		return nil, err
	}
	if !on {
		vs, err := p.Versions(ctx)
		if err != nil {
			return nil, fmt.Errorf("turn encryption on: %w", err)
		}
		if err := k.record(ctx, vs[len(vs)-1]); err != nil {
			return nil, err
		}
	}
	if err := k.Check(ctx); err != nil {
		log.Error("encryption key unavailable: content is refused until it is back", "key", p.ID(), "err", err)
	}
	return k, nil
}

// record stores KEK version v as the newest, with a check value that tells
// later whether a key is this one.
func (k *Keyring) record(ctx context.Context, v int) error {
	a, err := k.p.AEAD(ctx, v)
	if err != nil {
		return err
	}
	cv, err := seal(a, make([]byte, 32), checkAAD(v))
	if err != nil {
		return err
	}
	_, err = k.db.W().ExecContext(ctx, `INSERT INTO encryption_kek (version, kek_id, check_value, created_at) VALUES (?, ?, ?, ?)`,
		v, k.p.ID(), cv, k.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("record key version %d: %w", v, err)
	}
	return nil
}

func checkAAD(v int) []byte { return fmt.Appendf(nil, "berth kek check v%d", v) }

func dataKeyAAD(d digest.Digest) []byte { return append([]byte("berth data key\x00"), d...) }

func seal(a cipher.AEAD, pt, ad []byte) ([]byte, error) {
	n := make([]byte, a.NonceSize())
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	out := a.Seal(n, n, pt, ad)
	if len(out) < len(n)+len(pt)+a.Overhead() {
		// An HSM's AEAD that failed (see recovering) returns nothing.
		return nil, fmt.Errorf("%w: the key did not wrap", ErrKeyUnavailable)
	}
	return out, nil
}

func open(a cipher.AEAD, ct, ad []byte) ([]byte, error) {
	if len(ct) < a.NonceSize() {
		return nil, errors.New("wrapped key too short")
	}
	return a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], ad)
}

// Check finds the newest recorded KEK version and makes sure the provider
// holds it (the check value opens): the key is then usable, or else
// unavailable (and every data key held in memory is forgotten) until a
// later Check.
func (k *Keyring) Check(ctx context.Context) error {
	err := k.check(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	was := k.err
	k.checked = k.now()
	if err != nil {
		if !errors.Is(err, ErrKeyUnavailable) && !sqldb.IsUnavailable(err) {
			err = fmt.Errorf("%w: %v", ErrKeyUnavailable, err)
		}
		k.err = err
		clear(k.cache)
		clear(k.aeads)
		if was == nil {
			k.log.Error("encryption key unavailable: content is refused until it is back", "key", k.p.ID(), "err", err)
		}
		return err
	}
	if was != nil {
		k.log.Info("encryption key available again", "key", k.p.ID(), "version", k.current)
	}
	k.err = nil
	return nil
}

func (k *Keyring) check(ctx context.Context) error {
	var v int
	var cv []byte
	err := k.db.R().QueryRowContext(ctx, `SELECT version, check_value FROM encryption_kek ORDER BY version DESC LIMIT 1`).Scan(&v, &cv)
	if err != nil {
		return fmt.Errorf("read key version: %w", err)
	}
	if _, err := k.p.Versions(ctx); err != nil {
		return err
	}
	a, err := k.p.AEAD(ctx, v)
	if err != nil {
		return err
	}
	if _, err := open(a, cv, checkAAD(v)); err != nil {
		return fmt.Errorf("%w: key %s version %d is not the key this registry's data keys were wrapped with", ErrKeyUnavailable, k.p.ID(), v)
	}
	k.mu.Lock()
	k.current = v
	k.aeads[v] = a
	k.mu.Unlock()
	return nil
}

// Err returns why the key is unavailable, or nil.
func (k *Keyring) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Watch runs Check every interval until ctx ends, so that a key that went
// away stops content being served, and one that came back lets it be
// served again.
func (k *Keyring) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, interval)
			_ = k.Check(cctx)
			cancel()
		}
	}
}

func (k *Keyring) aead(ctx context.Context, v int) (cipher.AEAD, error) {
	k.mu.Lock()
	a := k.aeads[v]
	k.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := k.p.AEAD(ctx, v)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.aeads[v] = a
	k.mu.Unlock()
	return a, nil
}

// DataKey returns blob d's data key. With create, a blob without one gets
// one (stored before any content is written with it; if another writer of
// the same content stored one first, that one is used).
func (k *Keyring) DataKey(ctx context.Context, d digest.Digest, create bool) ([]byte, error) {
	k.mu.Lock()
	if k.err != nil {
		err := k.err
		k.mu.Unlock()
		return nil, err
	}
	dek, ok := k.cache[d]
	current := k.current
	k.mu.Unlock()
	if ok {
		return dek, nil
	}
	v, wrapped, err := k.load(ctx, d)
	if errors.Is(err, sql.ErrNoRows) && create {
		dek = make([]byte, 32)
		if _, err := rand.Read(dek); err != nil {
			return nil, err
		}
		a, aerr := k.aead(ctx, current)
		if aerr != nil {
			return nil, k.unavailable(aerr)
		}
		w, serr := seal(a, dek, dataKeyAAD(d))
		if serr != nil {
			return nil, k.unavailable(serr)
		}
		if _, err := k.db.W().ExecContext(ctx, `INSERT INTO encryption_data_keys (digest, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`,
			string(d), current, w, k.now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("store data key of %s: %w", d, err)
		}
		v, wrapped, err = k.load(ctx, d)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNoDataKey)
	}
	if err != nil {
		return nil, err
	}
	a, err := k.aead(ctx, v)
	if err != nil {
		return nil, k.unavailable(err)
	}
	dek, err = open(a, wrapped, dataKeyAAD(d))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of %s (key version %d): %w", d, v, ErrTampered)
	}
	k.mu.Lock()
	if len(k.cache) >= maxCached {
		clear(k.cache)
	}
	if k.err == nil {
		k.cache[d] = dek
	}
	k.mu.Unlock()
	return dek, nil
}

// ErrNoDataKey means an encrypted blob's data key is not in the database.
var ErrNoDataKey = errors.New("no data key is recorded for this encrypted blob")

// unavailable turns a provider's failure into ErrKeyUnavailable.
func (k *Keyring) unavailable(err error) error {
	if errors.Is(err, ErrKeyUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrKeyUnavailable, err)
}

func (k *Keyring) load(ctx context.Context, d digest.Digest) (int, []byte, error) {
	var v int
	var w []byte
	err := k.db.R().QueryRowContext(ctx, `SELECT kek_version, wrapped FROM encryption_data_keys WHERE digest = ?`, string(d)).Scan(&v, &w)
	return v, w, err
}

// KeyID names the KEK (not secret).
func (k *Keyring) KeyID() string { return k.p.ID() }

// jobState reads a background job's progress record into v; ok is false
// if there is none.
func (k *Keyring) jobState(ctx context.Context, name string, v any) (bool, error) {
	var s string
	err := k.db.R().QueryRowContext(ctx, `SELECT state FROM encryption_jobs WHERE name = ?`, name).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s progress: %w", name, err)
	}
	return true, json.Unmarshal([]byte(s), v)
}

func (k *Keyring) saveJob(ctx context.Context, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = k.db.W().ExecContext(ctx, `INSERT INTO encryption_jobs (name, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, name, string(b), k.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("save %s progress: %w", name, err)
	}
	return nil
}
