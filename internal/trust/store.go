package trust

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Migrate brings the trust component's tables in db to this binary's
// schema version.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, component, migrations(db.Engine()))
}

// SchemaVersion is the version of the trust tables' schema on engine e.
func SchemaVersion(e sqldb.Engine) int { return len(migrations(e)) }

const component = "trust"

func migrations(e sqldb.Engine) []string {
	if e == sqldb.Postgres {
		return postgresMigrations
	}
	return sqliteMigrations
}

// trust_state holds one row whose version moves with every policy change:
// each node compares it with the version it compiled its policies at before
// it answers a pull, so a change on any node applies to the next request
// everywhere.
var sqliteMigrations = []string{
	`CREATE TABLE trust_policies (
		name TEXT NOT NULL PRIMARY KEY,
		repository TEXT NOT NULL,
		require TEXT NOT NULL,
		mode TEXT NOT NULL,
		keys TEXT NOT NULL DEFAULT '[]',
		certificates TEXT NOT NULL DEFAULT '[]',
		identities TEXT NOT NULL DEFAULT '[]',
		version INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX trust_policies_lower_name ON trust_policies(lower(name));
	CREATE TABLE trust_state (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
	INSERT INTO trust_state (id, version) VALUES (1, 0);`,
}

var postgresMigrations = []string{
	`CREATE TABLE trust_policies (
		name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
		repository TEXT COLLATE "C" NOT NULL,
		require TEXT NOT NULL,
		mode TEXT NOT NULL,
		keys TEXT NOT NULL DEFAULT '[]',
		certificates TEXT NOT NULL DEFAULT '[]',
		identities TEXT NOT NULL DEFAULT '[]',
		version BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE UNIQUE INDEX trust_policies_lower_name ON trust_policies(lower(name));
	CREATE TABLE trust_state (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
	INSERT INTO trust_state (id, version) VALUES (1, 0);`,
}

// store reads and writes the policies.
type store struct {
	db  *sqldb.DB
	now func() time.Time
}

// bump increments the state version in tx and returns it; on PostgreSQL
// the row lock orders concurrent changes.
func (s *store) bump(ctx context.Context, tx *sqldb.Tx) (int64, error) {
	var v int64
	if err := tx.QueryRowContext(ctx, `UPDATE trust_state SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("bump trust version: %w", err)
	}
	return v, nil
}

func (s *store) version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.R().QueryRowContext(ctx, `SELECT version FROM trust_state WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read trust version: %w", err)
	}
	return v, nil
}

func (s *store) create(ctx context.Context, p Policy, record func(context.Context, *sqldb.Tx) error) (Policy, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		p, err = s.createTx(ctx, tx, p)
		if err != nil {
			return err
		}
		return record(ctx, tx)
	})
	if err != nil {
		return Policy{}, err
	}
	return p, nil
}

// createTx stores a new policy in tx.
func (s *store) createTx(ctx context.Context, tx *sqldb.Tx, p Policy) (Policy, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	v, err := s.bump(ctx, tx)
	if err != nil {
		return Policy{}, err
	}
	p.Version, p.CreatedAt, p.UpdatedAt = v, now, now
	keys, certs, ids := jsonList(p.Keys), jsonList(p.Certificates), jsonList(p.TrustedIdentities)
	_, err = tx.ExecContext(ctx, `INSERT INTO trust_policies (name, repository, require, mode, keys, certificates, identities, version, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.Name, p.Repository, string(p.Require), string(p.Mode), keys, certs, ids, v, now.UnixMilli(), now.UnixMilli())
	if sqldb.IsUniqueViolation(err) {
		return Policy{}, fmt.Errorf("%w: %q", ErrConflict, p.Name)
	}
	if err != nil {
		return Policy{}, err
	}
	return p, nil
}

// update replaces the policy named p.Name, keeping its creation time.
func (s *store) update(ctx context.Context, p Policy, record func(context.Context, *sqldb.Tx) error) (Policy, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		p, err = s.updateTx(ctx, tx, p)
		if err != nil {
			return err
		}
		return record(ctx, tx)
	})
	if err != nil {
		return Policy{}, err
	}
	return p, nil
}

// updateTx replaces the policy named p.Name in tx.
func (s *store) updateTx(ctx context.Context, tx *sqldb.Tx, p Policy) (Policy, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	v, err := s.bump(ctx, tx)
	if err != nil {
		return Policy{}, err
	}
	p.Version, p.UpdatedAt = v, now
	keys, certs, ids := jsonList(p.Keys), jsonList(p.Certificates), jsonList(p.TrustedIdentities)
	res, err := tx.ExecContext(ctx, `UPDATE trust_policies SET repository = ?, require = ?, mode = ?, keys = ?, certificates = ?, identities = ?, version = ?, updated_at = ?
		WHERE name = ?`, p.Repository, string(p.Require), string(p.Mode), keys, certs, ids, v, now.UnixMilli(), p.Name)
	if err != nil {
		return Policy{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Policy{}, fmt.Errorf("%w: %q", ErrNotFound, p.Name)
	}
	return p, nil
}

func (s *store) delete(ctx context.Context, name string, record func(context.Context, *sqldb.Tx) error) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := s.deleteTx(ctx, tx, name); err != nil {
			return err
		}
		return record(ctx, tx)
	})
}

// deleteTx removes the policy named name in tx.
func (s *store) deleteTx(ctx context.Context, tx *sqldb.Tx, name string) error {
	res, err := tx.ExecContext(ctx, `DELETE FROM trust_policies WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	_, err = s.bump(ctx, tx)
	return err
}

// load reads every policy and the version they are current at, in one
// read transaction.
func (s *store) load(ctx context.Context) ([]Policy, int64, error) {
	tx, err := s.db.R().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("load trust policies: %w", err)
	}
	defer tx.Rollback()
	return s.loadTx(ctx, tx)
}

// loadTx reads every policy and the version they are current at in tx.
func (s *store) loadTx(ctx context.Context, tx *sqldb.Tx) ([]Policy, int64, error) {
	var v int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM trust_state WHERE id = 1`).Scan(&v); err != nil {
		return nil, 0, fmt.Errorf("load trust policies: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, repository, require, mode, keys, certificates, identities, version, created_at, updated_at FROM trust_policies ORDER BY name`)
	if err != nil {
		return nil, 0, fmt.Errorf("load trust policies: %w", err)
	}
	defer rows.Close()
	var ps []Policy
	for rows.Next() {
		var p Policy
		var req, mode, keys, certs, ids string
		var created, updated int64
		if err := rows.Scan(&p.Name, &p.Repository, &req, &mode, &keys, &certs, &ids, &p.Version, &created, &updated); err != nil {
			return nil, 0, fmt.Errorf("load trust policies: %w", err)
		}
		p.Require, p.Mode = Require(req), Mode(mode)
		if err := errors.Join(json.Unmarshal([]byte(keys), &p.Keys), json.Unmarshal([]byte(certs), &p.Certificates), json.Unmarshal([]byte(ids), &p.TrustedIdentities)); err != nil {
			return nil, 0, fmt.Errorf("trust policy %q: %w", p.Name, err)
		}
		p.CreatedAt, p.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("load trust policies: %w", err)
	}
	return ps, v, nil
}

func jsonList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l)
	return string(b)
}
