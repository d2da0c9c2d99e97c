package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// LimiterStore keeps the login limiter's counts in the database (tables
// login_failures and login_known), so that every node of a cluster counts
// the same failures: guesses spread over nodes by a load balancer are
// slowed as if one node took them all.
type LimiterStore struct {
	db *sqldb.DB

	mu        sync.Mutex
	lastSweep time.Time
}

// NewLimiterStore returns the limiter store in db, whose identity tables
// Open has brought up to date.
func NewLimiterStore(db *sqldb.DB) *LimiterStore { return &LimiterStore{db: db} }

var _ auth.LimiterStore = (*LimiterStore)(nil)

// rowKey is the stored form of a limiter key: its SHA-256, since a key
// holds whatever username a client sent (NUL bytes and all, which
// PostgreSQL's text refuses).
func rowKey(k string) string {
	if k == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

func limitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

// Failures implements auth.LimiterStore.
func (l *LimiterStore) Failures(keys []string, since time.Time) (map[string]auth.LimitEntry, error) {
	ctx, cancel := limitCtx()
	defer cancel()
	out := map[string]auth.LimitEntry{}
	rows, err := l.db.R().QueryContext(ctx, `SELECT key, failures, last_at, until_at FROM login_failures WHERE key IN (?, ?, ?) AND last_at > ?`,
		rowKey(keys[0]), rowKey(keys[1]), rowKey(keys[2]), since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read login failures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int
		var last, until int64
		if err := rows.Scan(&k, &n, &last, &until); err != nil {
			return nil, fmt.Errorf("read login failures: %w", err)
		}
		for _, key := range keys {
			if rowKey(key) == k {
				out[key] = auth.LimitEntry{Failures: n, Last: time.UnixMilli(last), Until: time.UnixMilli(until)}
			}
		}
	}
	return out, rows.Err()
}

// Known implements auth.LimiterStore.
func (l *LimiterStore) Known(key string, since time.Time) (bool, error) {
	key = rowKey(key)
	ctx, cancel := limitCtx()
	defer cancel()
	var n int
	if err := l.db.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM login_known WHERE key = ? AND last_at > ?`, key, since.UnixMilli()).Scan(&n); err != nil {
		return false, fmt.Errorf("read known logins: %w", err)
	}
	return n > 0, nil
}

// Fail implements auth.LimiterStore: one upsert counts the failure, so
// that failures on several nodes at once all count.
func (l *LimiterStore) Fail(key string, now, since time.Time, threshold int, delay func(int) time.Duration) error {
	key = rowKey(key)
	ctx, cancel := limitCtx()
	defer cancel()
	l.sweep(ctx, since)
	return l.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `INSERT INTO login_failures(key, failures, last_at, until_at) VALUES (?, 1, ?, 0)
			ON CONFLICT(key) DO UPDATE SET failures = CASE WHEN login_failures.last_at > ? THEN login_failures.failures + 1 ELSE 1 END,
				last_at = excluded.last_at, until_at = CASE WHEN login_failures.last_at > ? THEN login_failures.until_at ELSE 0 END
			RETURNING failures`, key, now.UnixMilli(), since.UnixMilli(), since.UnixMilli()).Scan(&n)
		if err != nil {
			return fmt.Errorf("count login failure: %w", err)
		}
		if n >= threshold {
			if _, err := tx.ExecContext(ctx, `UPDATE login_failures SET until_at = ? WHERE key = ?`, now.Add(delay(n-threshold)).UnixMilli(), key); err != nil {
				return fmt.Errorf("count login failure: %w", err)
			}
		}
		return nil
	})
}

// Succeed implements auth.LimiterStore.
func (l *LimiterStore) Succeed(key string, now time.Time) error {
	key = rowKey(key)
	ctx, cancel := limitCtx()
	defer cancel()
	return l.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE key = ?`, key); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO login_known(key, last_at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET last_at = excluded.last_at`, key, now.UnixMilli())
		return err
	})
}

// sweep deletes decayed counts, at most once a minute per node.
func (l *LimiterStore) sweep(ctx context.Context, since time.Time) {
	l.mu.Lock()
	due := time.Since(l.lastSweep) >= time.Minute
	if due {
		l.lastSweep = time.Now()
	}
	l.mu.Unlock()
	if due {
		l.db.W().ExecContext(ctx, `DELETE FROM login_failures WHERE last_at <= ?`, since.UnixMilli())
		l.db.W().ExecContext(ctx, `DELETE FROM login_known WHERE last_at <= ?`, since.Add(-30*24*time.Hour).UnixMilli())
	}
}
