package sqldb

import (
	"context"
	"fmt"
	"time"
)

// Change is one entry of the change log: an ordered, durable record of
// metadata events (pushes, tag moves, deletes, attribute and identity
// changes) that replication to other sites reads in order.
type Change struct {
	// Seq orders changes: a later commit has a greater Seq, and a reader
	// that has seen Seq s has seen every change before it.
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Repository string    `json:"repository,omitempty"`
	Tag        string    `json:"tag,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	// Detail is kind-specific (JSON), such as the attributes set.
	Detail string `json:"detail,omitempty"`
}

// AppendChange adds c to the change log in tx, the transaction that makes
// the change, so the log holds a change exactly if it committed. Call it
// last in the transaction: on PostgreSQL it takes the log's lock, which
// makes sequence order commit order (a sequence number is drawn at insert,
// and without the lock a transaction drawing 5 could commit before one
// holding 4, and a reader that saw 5 would skip 4 for good), and holds it
// to the commit.
func AppendChange(ctx context.Context, tx *Tx, c Change) error {
	if err := tx.d.Lock(ctx, tx, "berth changes"); err != nil {
		return fmt.Errorf("lock change log: %w", err)
	}
	if c.Time.IsZero() {
		c.Time = time.Now()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO changes(time, kind, repository, tag, digest, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Time.UnixMilli(), c.Kind, c.Repository, c.Tag, c.Digest, c.Detail); err != nil {
		return fmt.Errorf("append change: %w", err)
	}
	return nil
}

// Changes returns up to n changes after sequence number after, in order.
func (db *DB) Changes(ctx context.Context, after int64, n int) ([]Change, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, time, kind, repository, tag, digest, detail FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, n)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	out := []Change{}
	for rows.Next() {
		var c Change
		var t int64
		if err := rows.Scan(&c.Seq, &t, &c.Kind, &c.Repository, &c.Tag, &c.Digest, &c.Detail); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		c.Time = time.UnixMilli(t)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	return out, nil
}
