package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/trust"
)

// ErrSourceInUse means the source registry is running: a copy of a
// database that is being written would lose what is written meanwhile.
var ErrSourceInUse = errors.New("the source registry is in use")

// component is one set of tables with its own schema version.
type component struct {
	name    string
	version func(sqldb.Engine) int
}

// components are the parts of berth that keep tables, with the schema
// version this binary brings each to. A source at another version is
// refused: the copy is column for column, at one version on both sides.
// A part of berth that gets tables of its own is added here; until it is,
// a source with its tables is refused as unknown (and the migration tests
// fail).
var components = []component{
	{"sqldb", sqldb.SchemaVersion},
	{"meta", meta.SchemaVersion},
	{"identity", identity.SchemaVersion},
	{"encryption", encryption.SchemaVersion},
	{identity.AssignmentsComponent, identity.AssignmentsSchemaVersion},
	{identity.FederationComponent, identity.FederationSchemaVersion},
	{"audit", audit.SchemaVersion},
	{"netrule", netrule.SchemaVersion},
	{"ratelimit", ratelimit.SchemaVersion},
	{"trust", trust.SchemaVersion},
}

// source is the database copied from, held open for reading only.
type source struct {
	db   *sql.DB
	d    *sqldb.Dialect
	name string
}

func (s *source) Close() error { return s.db.Close() }

// openSource opens the source database without changing it. The embedded
// SQLite file is opened in exclusive locking mode, which fails at once if
// a server has it open, and which keeps any server from opening it until
// the migration ends. For PostgreSQL, any other session on the database
// counts as a running node.
func openSource(ctx context.Context, setting, dataDir string) (*source, error) {
	if setting != "" {
		if !sqldb.IsPostgresURL(setting) {
			return nil, fmt.Errorf("source database %q: want a postgres:// URL, or nothing for the SQLite file in --from-data", sqldb.Redact(setting))
		}
		name := sqldb.Redact(setting)
		db, err := sql.Open("pgx", setting)
		if err != nil {
			return nil, fmt.Errorf("open source database %s: %w", name, err)
		}
		db.SetMaxOpenConns(4)
		s := &source{db: db, d: sqldb.NewDialect(sqldb.Postgres), name: "postgres " + name}
		// A session that just closed can linger in pg_stat_activity for a
		// moment while its backend exits: look again before refusing.
		var others int
		var who sql.NullString
		for attempt := 0; ; attempt++ {
			err = db.QueryRowContext(ctx, `SELECT count(*), string_agg(DISTINCT COALESCE(NULLIF(application_name, ''), 'unnamed') || ' from ' || COALESCE(host(client_addr), 'local socket'), ', ')
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&others, &who)
			if err != nil {
				db.Close()
				return nil, fmt.Errorf("connect to source database %s: %w", name, err)
			}
			if others == 0 || attempt == 10 {
				break
			}
			select {
			case <-ctx.Done():
				db.Close()
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if others > 0 {
			db.Close()
			return nil, fmt.Errorf("%w: %d other sessions are connected to source database %s (%s); stop every berth node that uses it, and run the migration again",
				ErrSourceInUse, others, name, who.String)
		}
		return s, nil
	}
	path := filepath.Join(dataDir, sqldb.SQLiteFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("source: no database at %s (--from-data names a berth data directory; give --from-database for PostgreSQL): %w", path, err)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(0)", "locking_mode(EXCLUSIVE)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open source database %s: %w", path, err)
	}
	// One connection, kept for the whole run: it holds the lock.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// An exclusive transaction takes the file's write lock, which exclusive
	// locking mode then keeps after the commit.
	if _, err := db.ExecContext(ctx, `BEGIN EXCLUSIVE; COMMIT`); err != nil {
		db.Close()
		if strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "busy") {
			return nil, fmt.Errorf("%w: %s is open in another process (a running berth serve?); stop it and run the migration again", ErrSourceInUse, path)
		}
		return nil, fmt.Errorf("open source database %s: %w", path, err)
	}
	return &source{db: db, d: sqldb.NewDialect(sqldb.SQLite), name: "sqlite " + path}, nil
}

// openReadOnly opens a database to look at it (a dry run's target),
// changing nothing: no migrations, and SQLite in read-only mode.
func openReadOnly(ctx context.Context, setting, dataDir string) (*source, error) {
	if setting != "" {
		if !sqldb.IsPostgresURL(setting) {
			return nil, fmt.Errorf("database %q: want a postgres:// URL", sqldb.Redact(setting))
		}
		name := sqldb.Redact(setting)
		db, err := sql.Open("pgx", setting)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", name, err)
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("connect to database %s: %w", name, err)
		}
		return &source{db: db, d: sqldb.NewDialect(sqldb.Postgres), name: "postgres " + name}, nil
	}
	path := filepath.Join(dataDir, sqldb.SQLiteFile)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return &source{db: db, d: sqldb.NewDialect(sqldb.SQLite), name: "sqlite " + path}, nil
}

// versions returns the schema version of each component that has a
// version table in q.
func versions(ctx context.Context, q queryer, e sqldb.Engine) (map[string]int, error) {
	names, err := tableNames(ctx, q, e)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out := map[string]int{}
	for _, n := range names {
		var comp string
		switch {
		case n == "schema_migrations":
			comp = "meta"
		case strings.HasPrefix(n, "schema_migrations_"):
			comp = strings.TrimPrefix(n, "schema_migrations_")
		default:
			continue
		}
		var v int
		if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+quote(n)).Scan(&v); err != nil {
			return nil, fmt.Errorf("read the schema version of %s: %w", comp, err)
		}
		out[comp] = v
	}
	return out, nil
}

// checkVersions refuses a database whose components are not at the
// versions this binary brings them to.
func checkVersions(have map[string]int, e sqldb.Engine, which string) error {
	if have["meta"] == 0 {
		return fmt.Errorf("%s is not a berth database (it has no metadata tables)", which)
	}
	known := map[string]bool{progressComponent: true}
	for _, c := range components {
		known[c.name] = true
		want := c.version(e)
		switch got := have[c.name]; {
		case got < want:
			return fmt.Errorf("%s: the %s tables are at schema version %d, and this berth's are at %d: start the registry once with this version of berth (berth serve, then stop it), which brings its schema up to date, then migrate",
				which, c.name, got, want)
		case got > want:
			return fmt.Errorf("%s: the %s tables are at schema version %d, newer than this berth's %d: migrate with the version of berth that wrote them",
				which, c.name, got, want)
		}
	}
	var unknown []string
	for c := range have {
		if !known[c] {
			unknown = append(unknown, c)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%s has tables of %s, which this version of berth does not know: migrate with the version of berth that wrote them", which, strings.Join(unknown, ", "))
	}
	return nil
}

// sequenceFloors returns, per table, the highest id ever handed out in the
// source: SQLite's AUTOINCREMENT counters and PostgreSQL's identity
// sequences, which may be past the largest id left in a table.
func sequenceFloors(ctx context.Context, q queryer, e sqldb.Engine, tables map[string]*table) (map[string]int64, error) {
	out := map[string]int64{}
	if e == sqldb.SQLite {
		if _, ok := tables["sqlite_sequence"]; !ok {
			return out, nil
		}
		rows, err := q.QueryContext(ctx, `SELECT name, seq FROM sqlite_sequence`)
		if err != nil {
			return nil, fmt.Errorf("read sqlite_sequence: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			var v int64
			if err := rows.Scan(&n, &v); err != nil {
				return nil, err
			}
			out[n] = v
		}
		return out, rows.Err()
	}
	for _, t := range tables {
		for _, c := range t.cols {
			if !c.identity {
				continue
			}
			var v sql.NullInt64
			if err := q.QueryRowContext(ctx, `SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)`, quote(t.name), c.name).Scan(&v); err != nil {
				return nil, fmt.Errorf("read the sequence of %s.%s: %w", t.name, c.name, err)
			}
			if v.Valid {
				out[t.name] = v.Int64
			}
		}
	}
	return out, nil
}
