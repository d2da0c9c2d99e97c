package sqldb

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseLost means a lease expired or passed to another holder before
// its holder renewed it: the holder must stop the work the lease covers.
var ErrLeaseLost = errors.New("lease lost")

// Leases let one node of several run a job (garbage collection, the upload
// purge) at a time. A lease is named, held by one holder until it expires,
// and taken over by anyone after that. Expiry is stamped with the
// acquiring node's clock, so the nodes' clocks must agree to well within
// the leases' time to live.
type Leases struct {
	db  *DB
	now func() time.Time
}

// Leases returns the database's leases, timed by now (time.Now if nil).
func (db *DB) Leases(now func() time.Time) *Leases {
	if now == nil {
		now = time.Now
	}
	return &Leases{db: db, now: now}
}

// Acquire takes lease name for holder for ttl, if no one else holds it
// unexpired; it reports whether holder now holds it. A holder acquiring a
// lease it holds renews it.
func (l *Leases) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := l.now()
	// One statement, so two nodes racing for a free lease cannot both win:
	// the loser's insert conflicts and its update's condition fails.
	res, err := l.db.w.ExecContext(ctx, `INSERT INTO leases(name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.expires_at <= ? OR leases.holder = excluded.holder`,
		name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return n == 1, nil
}

// Renew extends holder's lease name to ttl from now, or fails with
// ErrLeaseLost if holder no longer holds it unexpired.
func (l *Leases) Renew(ctx context.Context, name, holder string, ttl time.Duration) error {
	now := l.now()
	res, err := l.db.w.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND expires_at > ?`,
		now.Add(ttl).UnixMilli(), name, holder, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("renew lease %s: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("renew lease %s: %w", name, ErrLeaseLost)
	}
	return nil
}

// Release gives up holder's lease name, so another node need not wait for
// it to expire. Releasing a lease one does not hold does nothing.
func (l *Leases) Release(ctx context.Context, name, holder string) error {
	if _, err := l.db.w.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// Holder returns who holds lease name unexpired, or "".
func (l *Leases) Holder(ctx context.Context, name string) (string, error) {
	rows, err := l.db.r.QueryContext(ctx, `SELECT holder FROM leases WHERE name = ? AND expires_at > ?`, name, l.now().UnixMilli())
	if err != nil {
		return "", fmt.Errorf("read lease %s: %w", name, err)
	}
	defer rows.Close()
	var h string
	if rows.Next() {
		if err := rows.Scan(&h); err != nil {
			return "", fmt.Errorf("read lease %s: %w", name, err)
		}
	}
	return h, rows.Err()
}
