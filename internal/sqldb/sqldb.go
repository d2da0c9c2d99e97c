// Package sqldb opens berth's database, the embedded SQLite file or a
// PostgreSQL server, and gives the components that keep tables in it (the
// metadata store, identities, the audit log) what differs between the two
// engines: query placeholders, column types, error classes, migrations and
// leases.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver, as "pgx"
	_ "modernc.org/sqlite"             // the pure-Go SQLite driver
)

// Engine is a database engine.
type Engine int

// The engines berth runs on.
const (
	SQLite Engine = iota
	Postgres
)

func (e Engine) String() string {
	if e == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is an open database: a write handle and a read handle, which for
// SQLite are two pools (one writer, many readers beside it in WAL mode) and
// for PostgreSQL one pool.
type DB struct {
	w, r    *Conn
	dialect *Dialect
	name    string // where, without secrets, for messages
	mu      sync.Mutex
	onClose []func()
}

// SQLiteFile is the name of the embedded database in the data directory.
const SQLiteFile = "berth.db"

// Open opens the database a setting names: a postgres:// (or
// postgresql://) URL, or "" for the embedded SQLite file in dataDir. It
// applies the migrations of the tables sqldb keeps itself (leases, the
// change log).
func Open(ctx context.Context, setting, dataDir string) (*DB, error) {
	if setting == "" {
		return OpenSQLite(ctx, dataDir)
	}
	if IsPostgresURL(setting) {
		return OpenPostgres(ctx, setting)
	}
	return nil, fmt.Errorf("database %q: want a postgres:// URL, or nothing for the embedded SQLite file", Redact(setting))
}

// IsPostgresURL reports whether setting names a PostgreSQL server.
func IsPostgresURL(setting string) bool {
	return strings.HasPrefix(setting, "postgres://") || strings.HasPrefix(setting, "postgresql://")
}

// OpenSQLite opens (creating if needed) the embedded database in dir.
// Writes go through a single connection with immediate transactions, so
// writers queue instead of failing with SQLITE_BUSY; reads use a pool that
// WAL mode lets run beside the writer.
func OpenSQLite(ctx context.Context, dir string) (*DB, error) {
	path := filepath.Join(dir, SQLiteFile)
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn+"&mode=ro")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	r.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	r.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	d := newDialect(SQLite)
	db := &DB{w: &Conn{w, d}, r: &Conn{r, d}, dialect: d, name: path}
	if err := db.Migrate(ctx, "sqldb", ownMigrations[SQLite]); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenPostgres connects to the PostgreSQL database that setting names
// (postgres://user:pass@host:port/db?sslmode=...).
func OpenPostgres(ctx context.Context, setting string) (*DB, error) {
	name := Redact(setting)
	p, err := sql.Open("pgx", setting)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %s", name, hidePassword(err.Error(), setting))
	}
	// Every node has its own pool; the server's max_connections bounds the
	// sum, so a node takes a modest share (two of them listen for the
	// identity and metadata feeds).
	p.SetMaxOpenConns(max(16, 8*runtime.GOMAXPROCS(0)))
	p.SetMaxIdleConns(max(16, 8*runtime.GOMAXPROCS(0)))
	d := newDialect(Postgres)
	c := &Conn{p, d}
	db := &DB{w: c, r: c, dialect: d, name: name}
	if err := p.PingContext(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("connect to database %s: %w", name, err)
	}
	if err := db.Migrate(ctx, "sqldb", ownMigrations[Postgres]); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Redact returns a database setting fit for logs: a URL's password is
// replaced by "xxxxx" (also one given as a password= query parameter).
func Redact(setting string) string {
	u, err := url.Parse(setting)
	if err != nil {
		return "(unparsable database URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// hidePassword removes the password of setting from msg, in case a
// driver's message quotes the URL it was given.
func hidePassword(msg, setting string) string {
	u, err := url.Parse(setting)
	if err != nil {
		return "invalid connection URL"
	}
	pw, _ := u.User.Password()
	if p := u.Query().Get("password"); p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	if pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// Engine returns the database's engine.
func (db *DB) Engine() Engine { return db.dialect.engine }

// Dialect returns what differs between engines.
func (db *DB) Dialect() *Dialect { return db.dialect }

// String names the database without secrets.
func (db *DB) String() string { return db.Engine().String() + " " + db.name }

// W returns the write handle.
func (db *DB) W() *Conn { return db.w }

// R returns the read handle (for SQLite a read-only pool).
func (db *DB) R() *Conn { return db.r }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.r.db.PingContext(ctx) }

// OnClose registers fn to run when Close begins, while the database still
// answers: for work in the background that holds a connection of its own.
func (db *DB) OnClose(fn func()) {
	db.mu.Lock()
	db.onClose = append(db.onClose, fn)
	db.mu.Unlock()
}

// Close closes the database.
func (db *DB) Close() error {
	db.mu.Lock()
	fns := db.onClose
	db.onClose = nil
	db.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	if db.r == db.w {
		return db.w.db.Close()
	}
	return errors.Join(db.r.db.Close(), db.w.db.Close())
}

// Conn is a pool that rebinds each query's ? placeholders for its engine.
type Conn struct {
	db *sql.DB
	d  *Dialect
}

// SQL returns the underlying pool, whose queries must already use the
// engine's placeholders.
func (c *Conn) SQL() *sql.DB { return c.db }

// QueryRowContext is sql.DB's, with ? placeholders.
func (c *Conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return c.db.QueryRowContext(ctx, c.d.Rebind(query), args...)
}

// QueryContext is sql.DB's, with ? placeholders.
func (c *Conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.db.QueryContext(ctx, c.d.Rebind(query), args...)
}

// ExecContext is sql.DB's, with ? placeholders.
func (c *Conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.db.ExecContext(ctx, c.d.Rebind(query), args...)
}

// BeginTx starts a transaction.
func (c *Conn) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	tx, err := c.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Tx{tx, c.d}, nil
}

// Tx is a transaction that rebinds ? placeholders for its engine.
type Tx struct {
	tx *sql.Tx
	d  *Dialect
}

// Dialect returns the transaction's dialect.
func (t *Tx) Dialect() *Dialect { return t.d }

// SQL returns the underlying transaction.
func (t *Tx) SQL() *sql.Tx { return t.tx }

// QueryRowContext is sql.Tx's, with ? placeholders.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.Rebind(query), args...)
}

// QueryContext is sql.Tx's, with ? placeholders.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.d.Rebind(query), args...)
}

// ExecContext is sql.Tx's, with ? placeholders.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.Rebind(query), args...)
}

// Commit commits the transaction.
func (t *Tx) Commit() error { return t.tx.Commit() }

// Rollback aborts the transaction.
func (t *Tx) Rollback() error { return t.tx.Rollback() }

// InTx runs fn in a write transaction and commits it if fn returns nil.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
