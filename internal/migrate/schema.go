package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/sqldb"
)

// queryer is what the schema readers need: a pool, a connection or a
// transaction, whose queries already use the engine's placeholders.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// kind is how a column's values are stored, which decides how a value read
// from the other engine is converted (SQLite keeps booleans as integers).
type kind int

const (
	kindAny kind = iota // SQLite's untyped columns: the value as it is
	kindBool
	kindInt
	kindReal
	kindText
	kindBlob
)

func (k kind) String() string {
	return [...]string{"untyped", "boolean", "integer", "real", "text", "blob"}[k]
}

type column struct {
	name string
	kind kind
	// identity is a PostgreSQL identity column, whose sequence must be set
	// past the copied values.
	identity bool
}

// table is one table's columns and the tables its foreign keys refer to.
type table struct {
	name string
	cols []column
	refs []string
	// autoincrement is an SQLite table whose ids are never reused (its
	// counter is in sqlite_sequence).
	autoincrement bool
}

// skipped reports whether table name is not copied: the schema version
// records (the target has its own), leases, the nodes following
// identity and metadata changes (held by running nodes) and the metadata
// version they follow,
// upload sessions (the state of a half-done upload belongs to the content
// store it was made in; the client starts it again), the login names of
// users and tokens (the target's triggers fill them as those are copied),
// and this command's own progress record.
func skipped(name string) bool {
	return name == "schema_migrations" || strings.HasPrefix(name, "schema_migrations_") ||
		name == "leases" || name == "identity_nodes" || name == "meta_nodes" || name == "meta_version" || name == "uploads" || name == "principal_names" || name == progressTable || strings.HasPrefix(name, "sqlite_")
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// readSchema returns every table of the database, by name.
func readSchema(ctx context.Context, q queryer, e sqldb.Engine) (map[string]*table, error) {
	names, err := tableNames(ctx, q, e)
	if err != nil {
		return nil, err
	}
	tables := make(map[string]*table, len(names))
	for _, n := range names {
		t := &table{name: n}
		if err := readTable(ctx, q, e, t); err != nil {
			return nil, fmt.Errorf("read the schema of table %s: %w", n, err)
		}
		tables[n] = t
	}
	return tables, nil
}

func tableNames(ctx context.Context, q queryer, e sqldb.Engine) ([]string, error) {
	query := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	if e == sqldb.Postgres {
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	return strings1(ctx, q, query)
}

func strings1(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func readTable(ctx context.Context, q queryer, e sqldb.Engine, t *table) error {
	if e == sqldb.Postgres {
		rows, err := q.QueryContext(ctx, `SELECT column_name, data_type, is_identity FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, t.name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c column
			var typ, ident string
			if err := rows.Scan(&c.name, &typ, &ident); err != nil {
				return err
			}
			c.kind, c.identity = postgresKind(typ), ident == "YES"
			t.cols = append(t.cols, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		t.refs, err = strings1(ctx, q, `SELECT DISTINCT r.relname FROM pg_constraint k
			JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE k.contype = 'f' AND c.relname = $1 AND n.nspname = current_schema()`, t.name)
		return err
	}
	rows, err := q.QueryContext(ctx, `SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, t.name)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c column
		var typ string
		if err := rows.Scan(&c.name, &typ); err != nil {
			return err
		}
		c.kind = sqliteKind(typ)
		t.cols = append(t.cols, c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if t.refs, err = strings1(ctx, q, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, t.name); err != nil {
		return err
	}
	var ddl string
	if err := q.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, t.name).Scan(&ddl); err != nil {
		return err
	}
	t.autoincrement = strings.Contains(strings.ToUpper(ddl), "AUTOINCREMENT")
	return nil
}

func postgresKind(typ string) kind {
	switch typ {
	case "boolean":
		return kindBool
	case "bigint", "integer", "smallint":
		return kindInt
	case "double precision", "real", "numeric":
		return kindReal
	case "bytea":
		return kindBlob
	}
	return kindText
}

// sqliteKind follows SQLite's rules for a declared type's affinity.
func sqliteKind(typ string) kind {
	t := strings.ToUpper(typ)
	switch {
	case strings.Contains(t, "INT"):
		return kindInt
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return kindText
	case t == "" || strings.Contains(t, "BLOB"):
		return kindAny
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return kindReal
	}
	return kindAny
}

// convert turns a value read from one engine into what a column of kind k
// takes on the other: SQLite keeps booleans as 0 and 1, PostgreSQL as
// booleans; everything else maps one to one.
func convert(v any, k kind) (any, error) {
	if v == nil || k == kindAny {
		return v, nil
	}
	switch k {
	case kindBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			return x != 0, nil
		}
	case kindInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		case float64:
			if x == math.Trunc(x) {
				return int64(x), nil
			}
		case string:
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n, nil
			}
		}
	case kindReal:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
	case kindText:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
	case kindBlob:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("a %T value does not fit a %s column", v, k)
}

// copyOrder returns the tables to copy so that every table comes after the
// tables its foreign keys refer to.
func copyOrder(tables map[string]*table) ([]*table, error) {
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []*table
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("foreign keys of table %s form a cycle", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, r := range tables[n].refs {
			if _, ok := tables[r]; ok && r != n {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		out = append(out, tables[n])
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// matchColumns checks that the target table has the source table's columns,
// no more and no fewer, and returns the target's columns in the source's
// order.
func matchColumns(src, dst *table) ([]column, error) {
	byName := map[string]column{}
	for _, c := range dst.cols {
		byName[c.name] = c
	}
	out := make([]column, 0, len(src.cols))
	for _, c := range src.cols {
		d, ok := byName[c.name]
		if !ok {
			return nil, fmt.Errorf("table %s: the target has no column %s", src.name, c.name)
		}
		out = append(out, d)
		delete(byName, c.name)
	}
	for n := range byName {
		return nil, fmt.Errorf("table %s: the source has no column %s", src.name, n)
	}
	return out, nil
}
