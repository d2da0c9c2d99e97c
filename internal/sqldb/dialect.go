package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is what differs between the engines in the SQL berth writes.
// Queries are written once, for both, with ? placeholders.
type Dialect struct {
	engine Engine
	// rebound caches each query string's PostgreSQL form. Queries are
	// constants or built from a few parts, so the program's text bounds
	// the cache; cached caps it all the same, should a caller build
	// queries with values in them (which it must not: values go in
	// arguments).
	rebound sync.Map // string → string
	cached  atomic.Int64
}

// maxRebound bounds the queries whose PostgreSQL form is cached.
const maxRebound = 4096

// indexedBy matches SQLite's index hint, which PostgreSQL's planner does
// without.
var indexedBy = regexp.MustCompile(`(?i)\s+INDEXED\s+BY\s+\w+`)

func newDialect(e Engine) *Dialect { return &Dialect{engine: e} }

// NewDialect returns the dialect of engine e (for tests and tools that
// hold no database).
func NewDialect(e Engine) *Dialect { return newDialect(e) }

// Engine returns the dialect's engine.
func (d *Dialect) Engine() Engine { return d.engine }

// Rebind turns a query written for SQLite into the engine's: unchanged for
// SQLite; for PostgreSQL the ? placeholders become $1, $2, … and SQLite's
// index hints ("INDEXED BY name") go. It is worked out once per query
// string.
func (d *Dialect) Rebind(query string) string {
	if d.engine != Postgres {
		return query
	}
	if q, ok := d.rebound.Load(query); ok {
		return q.(string)
	}
	q := rebindDollar(query)
	if d.cached.Load() < maxRebound {
		if _, loaded := d.rebound.LoadOrStore(query, q); !loaded {
			d.cached.Add(1)
		}
	}
	return q
}

// rebindDollar numbers the ? outside quoted strings and identifiers, and
// drops INDEXED BY hints.
func rebindDollar(query string) string {
	query = indexedBy.ReplaceAllString(query, "")
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Cached returns how many queries' rewritten forms are cached.
func (d *Dialect) Cached() int { return int(d.cached.Load()) }

// ForUpdate is the clause that locks the rows a SELECT reads until the
// transaction ends: " FOR UPDATE" on PostgreSQL, where several nodes write at
// once, and nothing on SQLite, whose one writer already excludes the others.
func (d *Dialect) ForUpdate() string {
	if d.engine == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// Lock takes a lock named key until tx ends (a transaction-scoped advisory
// lock on PostgreSQL; nothing on SQLite, where a write transaction already
// excludes every other writer). Different keys may share a lock.
func (d *Dialect) Lock(ctx context.Context, tx *Tx, key string) error {
	if d.engine != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, key)
	return err
}

// SnapshotTx is the options of a read transaction that sees one snapshot
// throughout (SQLite's read transactions always do).
func (d *Dialect) SnapshotTx() *sql.TxOptions {
	if d.engine == Postgres {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return &sql.TxOptions{ReadOnly: true}
}

// Column types for DDL that components build for both engines.
func (d *Dialect) BoolType() string { return d.pick("INTEGER", "BOOLEAN") }

// BlobType is the type of a byte-string column.
func (d *Dialect) BlobType() string { return d.pick("BLOB", "BYTEA") }

// BigintType is the type of a 64-bit integer column (times in milliseconds,
// sizes).
func (d *Dialect) BigintType() string { return d.pick("INTEGER", "BIGINT") }

// IDType is the type of a generated 64-bit primary key.
func (d *Dialect) IDType() string {
	return d.pick("INTEGER PRIMARY KEY", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
}

func (d *Dialect) pick(sqlite, postgres string) string {
	if d.engine == Postgres {
		return postgres
	}
	return sqlite
}

// IsUniqueViolation reports whether err is a unique or primary key
// constraint failing, on either engine.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsDiskFull reports whether err is the database running out of space.
func IsDiskFull(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "53100" // disk_full
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_FULL
	}
	return errors.Is(err, syscall.ENOSPC)
}

// IsReadOnly reports whether err is a PostgreSQL server refusing a write
// because it is read-only (a standby, or default_transaction_read_only).
func IsReadOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "25006" // read_only_sql_transaction
}

// IsUnavailable reports whether err means the database cannot be reached
// or is shutting down (answer 503 and let the client retry), as opposed to
// a query being wrong.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "57P"), // admin, crash shutdown; cannot connect now
			pe.Code == "53300":                // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.As(err, &ce), errors.As(err, &oe),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return pgconn.SafeToRetry(err)
}
