package sqldb

import (
	"context"
	"fmt"
	"time"
)

// Migrate brings component's tables up to date: steps[i] takes the schema
// from version i to i+1, and is applied with its version record in one
// transaction. Each component (meta, identity, audit) keeps its own
// versions, in a table of its own, and its own steps for each engine.
// Several nodes starting at once on PostgreSQL take turns under a lock, so
// each step runs once.
//
// A database at a version newer than steps is left alone: during a rolling
// upgrade older nodes keep running beside newer ones, so a step may only
// add what older code ignores.
func (db *DB) Migrate(ctx context.Context, component string, steps []string) error {
	table := "schema_migrations"
	if component != "meta" {
		// The metadata store's table predates components and keeps its name.
		table += "_" + component
	}
	for {
		done, err := db.migrateStep(ctx, component, table, steps)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateStep applies the next step, if any, and reports whether there was
// none.
func (db *DB) migrateStep(ctx context.Context, component, table string, steps []string) (done bool, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		if err := db.dialect.Lock(ctx, tx, "berth migrate "+component); err != nil {
			return fmt.Errorf("lock %s schema: %w", component, err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (version INTEGER PRIMARY KEY, applied_at `+db.dialect.BigintType()+` NOT NULL)`); err != nil {
			return fmt.Errorf("create %s: %w", table, err)
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+table).Scan(&have); err != nil {
			return fmt.Errorf("read %s schema version: %w", component, err)
		}
		if have >= len(steps) {
			done = true
			return nil
		}
		v := have + 1
		if _, err := tx.ExecContext(ctx, steps[v-1]); err != nil {
			return fmt.Errorf("migrate %s schema to %d: %w", component, v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+`(version, applied_at) VALUES (?, ?)`, v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate %s schema to %d: %w", component, v, err)
		}
		return nil
	})
	return done, err
}

// Version returns the schema version of component (0 for none).
func (db *DB) Version(ctx context.Context, component string) (int, error) {
	table := "schema_migrations"
	if component != "meta" {
		table += "_" + component
	}
	var v int
	err := db.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+table).Scan(&v)
	return v, err
}

// SchemaVersion is the version of the tables sqldb keeps itself (component
// "sqldb") on engine e.
func SchemaVersion(e Engine) int { return len(ownMigrations[e]) }

// ownMigrations are the tables sqldb keeps for every component: leases and
// the change log.
var ownMigrations = map[Engine][]string{
	SQLite: {
		`CREATE TABLE leases (
			name TEXT PRIMARY KEY,
			holder TEXT NOT NULL,
			expires_at INTEGER NOT NULL
		);
		CREATE TABLE changes (
			seq INTEGER PRIMARY KEY AUTOINCREMENT,
			time INTEGER NOT NULL,
			kind TEXT NOT NULL,
			repository TEXT NOT NULL DEFAULT '',
			tag TEXT NOT NULL DEFAULT '',
			digest TEXT NOT NULL DEFAULT '',
			detail TEXT NOT NULL DEFAULT ''
		);`,
	},
	Postgres: {
		`CREATE TABLE leases (
			name TEXT COLLATE "C" PRIMARY KEY,
			holder TEXT NOT NULL,
			expires_at BIGINT NOT NULL
		);
		CREATE TABLE changes (
			seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			time BIGINT NOT NULL,
			kind TEXT NOT NULL,
			repository TEXT NOT NULL DEFAULT '',
			tag TEXT NOT NULL DEFAULT '',
			digest TEXT NOT NULL DEFAULT '',
			detail TEXT NOT NULL DEFAULT ''
		);`,
	},
}
