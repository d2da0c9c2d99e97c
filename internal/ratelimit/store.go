package ratelimit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Kinds of what limits are set on, as stored.
const (
	kindToken    = "token"
	kindScopeMap = "scope map"
)

// Migrate brings the limit tables in db up to date. They refer to the
// identity tables (triggers on tokens and scope_maps), so the identity
// schema must be migrated first.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, "ratelimit", migrations(db.Engine()))
}

// SchemaVersion is the version of the limit schema on engine e.
func SchemaVersion(e sqldb.Engine) int { return len(migrations(e)) }

func migrations(e sqldb.Engine) []string {
	if e == sqldb.Postgres {
		return postgresMigrations
	}
	return sqliteMigrations
}

// The tables: token_limits holds the limits set on tokens and scope maps
// (rate in millionths of a request per second, -1 for unlimited);
// token_usage the bytes each token moved per UTC day (day numbers from the
// Unix epoch); token_buckets the shared request buckets of a cluster
// (level in thousandths of a request, at in Unix milliseconds); and
// token_limits_state a version that every change of token_limits bumps,
// which the nodes poll to reload. Deleting a token or a scope map deletes
// what was kept for it, so that one created later under the same name
// starts without limits.
func tablesSQL(bigint string) string {
	return `CREATE TABLE token_limits (
		kind TEXT NOT NULL CHECK (kind IN ('token', 'scope map')),
		name TEXT NOT NULL,
		rate_micro ` + bigint + ` NOT NULL DEFAULT 0,
		burst ` + bigint + ` NOT NULL DEFAULT 0,
		pull_bytes ` + bigint + ` NOT NULL DEFAULT 0,
		push_bytes ` + bigint + ` NOT NULL DEFAULT 0,
		PRIMARY KEY (kind, name)
	);
	CREATE TABLE token_usage (
		token TEXT NOT NULL,
		day ` + bigint + ` NOT NULL,
		pulled ` + bigint + ` NOT NULL DEFAULT 0,
		pushed ` + bigint + ` NOT NULL DEFAULT 0,
		PRIMARY KEY (token, day)
	);
	CREATE TABLE token_buckets (
		token TEXT PRIMARY KEY,
		level ` + bigint + ` NOT NULL,
		at ` + bigint + ` NOT NULL
	);
	CREATE TABLE token_limits_state (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		version ` + bigint + ` NOT NULL
	);
	INSERT INTO token_limits_state(id, version) VALUES (1, 0);`
}

var sqliteMigrations = []string{
	tablesSQL("INTEGER") + `
	CREATE TRIGGER token_limits_token_deleted AFTER DELETE ON tokens
	BEGIN
		DELETE FROM token_limits WHERE kind = 'token' AND name = OLD.name;
		DELETE FROM token_usage WHERE token = OLD.name;
		DELETE FROM token_buckets WHERE token = OLD.name;
		UPDATE token_limits_state SET version = version + 1;
	END;
	CREATE TRIGGER token_limits_scope_map_deleted AFTER DELETE ON scope_maps
	BEGIN
		DELETE FROM token_limits WHERE kind = 'scope map' AND name = OLD.name;
		UPDATE token_limits_state SET version = version + 1;
	END;`,
}

var postgresMigrations = []string{
	tablesSQL("BIGINT") + `
	CREATE FUNCTION berth_token_limits_token_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		DELETE FROM token_limits WHERE kind = 'token' AND name = OLD.name;
		DELETE FROM token_usage WHERE token = OLD.name;
		DELETE FROM token_buckets WHERE token = OLD.name;
		UPDATE token_limits_state SET version = version + 1;
		RETURN OLD;
	END $$;
	CREATE TRIGGER token_limits_token_deleted AFTER DELETE ON tokens
		FOR EACH ROW EXECUTE FUNCTION berth_token_limits_token_deleted();
	CREATE FUNCTION berth_token_limits_scope_map_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		DELETE FROM token_limits WHERE kind = 'scope map' AND name = OLD.name;
		UPDATE token_limits_state SET version = version + 1;
		RETURN OLD;
	END $$;
	CREATE TRIGGER token_limits_scope_map_deleted AFTER DELETE ON scope_maps
		FOR EACH ROW EXECUTE FUNCTION berth_token_limits_scope_map_deleted();`,
}

// store is the limit tables.
type store struct{ db *sqldb.DB }

// snapshot is every limit set, as loaded at version.
type snapshot struct {
	version   int64
	tokens    map[string]Limits
	scopeMaps map[string]Limits
}

func (s *snapshot) empty() bool { return len(s.tokens) == 0 && len(s.scopeMaps) == 0 }

// effective returns the limits of token (whose scope map is scopeMap),
// and whether any applies.
func (s *snapshot) effective(token, scopeMap string) (Effective, bool) {
	own, ok1 := s.tokens[token]
	inh, ok2 := s.scopeMaps[scopeMap]
	if !ok1 && !ok2 {
		return Effective{}, false
	}
	e := Resolve(own, inh)
	return e, e.Any()
}

func toRow(l Limits) (rate, burst, pull, push int64) {
	rate = int64(math.Round(l.RatePerSecond * 1e6))
	if l.RatePerSecond == Unlimited {
		rate = Unlimited
	}
	return rate, l.Burst, l.PullBytesPerDay, l.PushBytesPerDay
}

func fromRow(rate, burst, pull, push int64) Limits {
	l := Limits{Burst: burst, PullBytesPerDay: pull, PushBytesPerDay: push}
	if rate == Unlimited {
		l.RatePerSecond = Unlimited
	} else {
		l.RatePerSecond = float64(rate) / 1e6
	}
	return l
}

func (st store) version(ctx context.Context) (int64, error) {
	var v int64
	if err := st.db.R().QueryRowContext(ctx, `SELECT version FROM token_limits_state WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the limits version: %w", err)
	}
	return v, nil
}

// load reads every limit in one snapshot.
func (st store) load(ctx context.Context) (*snapshot, error) {
	tx, err := st.db.R().BeginTx(ctx, st.db.Dialect().SnapshotTx())
	if err != nil {
		return nil, fmt.Errorf("read limits: %w", err)
	}
	defer tx.Rollback()
	s := &snapshot{tokens: map[string]Limits{}, scopeMaps: map[string]Limits{}}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM token_limits_state WHERE id = 1`).Scan(&s.version); err != nil {
		return nil, fmt.Errorf("read the limits version: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT kind, name, rate_micro, burst, pull_bytes, push_bytes FROM token_limits`)
	if err != nil {
		return nil, fmt.Errorf("read limits: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, name string
		var rate, burst, pull, push int64
		if err := rows.Scan(&kind, &name, &rate, &burst, &pull, &push); err != nil {
			return nil, fmt.Errorf("read limits: %w", err)
		}
		l := fromRow(rate, burst, pull, push)
		if kind == kindToken {
			s.tokens[name] = l
		} else {
			s.scopeMaps[name] = l
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read limits: %w", err)
	}
	return s, nil
}

// errNoTarget means the token or scope map was deleted before its limits
// were written.
var errNoTarget = errors.New("not found")

// set writes the limits of one token or scope map (removing the row when
// none is set) and bumps the version. The row is written only while its
// token or scope map exists, so that a concurrent delete cannot leave one
// behind for a later namesake.
func (st store) set(ctx context.Context, kind, name string, l Limits) error {
	return st.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if l.IsZero() {
			if _, err := tx.ExecContext(ctx, `DELETE FROM token_limits WHERE kind = ? AND name = ?`, kind, name); err != nil {
				return fmt.Errorf("clear limits: %w", err)
			}
		} else {
			parent := "tokens"
			if kind == kindScopeMap {
				parent = "scope_maps"
			}
			rate, burst, pull, push := toRow(l)
			res, err := tx.ExecContext(ctx, `INSERT INTO token_limits(kind, name, rate_micro, burst, pull_bytes, push_bytes)
				SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM `+parent+` WHERE name = ?)
				ON CONFLICT(kind, name) DO UPDATE SET rate_micro = excluded.rate_micro, burst = excluded.burst,
					pull_bytes = excluded.pull_bytes, push_bytes = excluded.push_bytes`,
				kind, name, rate, burst, pull, push, name)
			if err != nil {
				return fmt.Errorf("set limits: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return errNoTarget
			}
		}
		if kind == kindToken {
			// A new rate starts with a full bucket.
			if _, err := tx.ExecContext(ctx, `DELETE FROM token_buckets WHERE token = ?`, name); err != nil {
				return fmt.Errorf("reset the request bucket: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE token_limits_state SET version = version + 1 WHERE id = 1`); err != nil {
			return fmt.Errorf("bump the limits version: %w", err)
		}
		return nil
	})
}

// usage is the bytes a token moved in one day.
type usage struct{ pulled, pushed int64 }

// addUsage adds each token's bytes of day and returns the totals of every
// token counted that day (by every node).
func (st store) addUsage(ctx context.Context, day int64, add map[string]usage) (map[string]usage, error) {
	err := st.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for tok, u := range add {
			if _, err := tx.ExecContext(ctx, `INSERT INTO token_usage(token, day, pulled, pushed) VALUES (?, ?, ?, ?)
				ON CONFLICT(token, day) DO UPDATE SET pulled = token_usage.pulled + excluded.pulled, pushed = token_usage.pushed + excluded.pushed`,
				tok, day, u.pulled, u.pushed); err != nil {
				return fmt.Errorf("count bytes: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st.usageOf(ctx, day)
}

func (st store) usageOf(ctx context.Context, day int64) (map[string]usage, error) {
	rows, err := st.db.R().QueryContext(ctx, `SELECT token, pulled, pushed FROM token_usage WHERE day = ?`, day)
	if err != nil {
		return nil, fmt.Errorf("read byte counts: %w", err)
	}
	defer rows.Close()
	out := map[string]usage{}
	for rows.Next() {
		var tok string
		var u usage
		if err := rows.Scan(&tok, &u.pulled, &u.pushed); err != nil {
			return nil, fmt.Errorf("read byte counts: %w", err)
		}
		out[tok] = u
	}
	return out, rows.Err()
}

// pruneUsage deletes the counts of days before day.
func (st store) pruneUsage(ctx context.Context, day int64) error {
	if _, err := st.db.W().ExecContext(ctx, `DELETE FROM token_usage WHERE day < ?`, day); err != nil {
		return fmt.Errorf("prune byte counts: %w", err)
	}
	return nil
}

// lease takes up to want requests from token's shared bucket, returning
// how many it got, or how long until one is there.
func (st store) lease(ctx context.Context, token string, now time.Time, rate float64, burst, want int64) (int64, time.Duration, error) {
	var got int64
	var wait time.Duration
	err := st.db.InTx(ctx, func(tx *sqldb.Tx) error {
		b, err := st.bucketTx(ctx, tx, token, now, burst)
		if err != nil {
			return err
		}
		got, wait = b.grant(now, rate, burst, want)
		if got == 0 {
			return nil // nothing changed
		}
		_, err = tx.ExecContext(ctx, `UPDATE token_buckets SET level = ?, at = ? WHERE token = ?`,
			int64(math.Floor(b.level*1000)), b.at.UnixMilli(), token)
		if err != nil {
			return fmt.Errorf("lease requests: %w", err)
		}
		return nil
	})
	return got, wait, err
}

// bucketTx reads (creating it full, if missing) token's shared bucket,
// locked until tx ends.
func (st store) bucketTx(ctx context.Context, tx *sqldb.Tx, token string, now time.Time, burst int64) (bucket, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO token_buckets(token, level, at) VALUES (?, ?, ?) ON CONFLICT(token) DO NOTHING`,
		token, burst*1000, now.UnixMilli()); err != nil {
		return bucket{}, fmt.Errorf("lease requests: %w", err)
	}
	var level, at int64
	if err := tx.QueryRowContext(ctx, `SELECT level, at FROM token_buckets WHERE token = ?`+tx.Dialect().ForUpdate(), token).Scan(&level, &at); err != nil {
		return bucket{}, fmt.Errorf("lease requests: %w", err)
	}
	return bucket{level: float64(level) / 1000, at: time.UnixMilli(at)}, nil
}

// sharedLevel reads token's shared bucket as of now, without changing it
// (the token's page).
func (st store) sharedLevel(ctx context.Context, token string, now time.Time, rate float64, burst int64) (float64, error) {
	var level, at int64
	err := st.db.R().QueryRowContext(ctx, `SELECT level, at FROM token_buckets WHERE token = ?`, token).Scan(&level, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return float64(burst), nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the request bucket: %w", err)
	}
	b := bucket{level: float64(level) / 1000, at: time.UnixMilli(at)}
	b.refill(now, rate, burst)
	return b.level, nil
}
