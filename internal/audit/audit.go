// Package audit records who did what: every login attempt, push, manifest
// pull, delete and permission change. Records are written in batches by one
// goroutine so that the request path never waits for the database.
package audit

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Event kinds.
const (
	KindLogin      = "login"
	KindPush       = "push"
	KindPull       = "pull"
	KindDelete     = "delete"
	KindUntag      = "untag"
	KindPermission = "permission" // scope maps, tokens, passwords, users, admin, attributes
)

// Results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Event is one audit record, with ACR's login-event columns.
type Event struct {
	ID           int64     `json:"id"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	Result       string    `json:"result"`
	Identity     string    `json:"identity,omitempty"`
	IdentityKind string    `json:"identityKind,omitempty"`
	Slot         string    `json:"credential,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	CallerIP     string    `json:"callerIpAddress,omitempty"`
	UserAgent    string    `json:"userAgent,omitempty"`
	Repository   string    `json:"repository,omitempty"`
	Tag          string    `json:"tag,omitempty"`
	Digest       string    `json:"digest,omitempty"`
	// Target names what a permission change touched ("token ci", "scope map x").
	Target     string `json:"target,omitempty"`
	JwtID      string `json:"jwtId,omitempty"`
	DurationMs int64  `json:"durationMs,omitempty"`
	// Count is how many identical events this record stands for (manifest
	// pulls repeated within a fraction of a second are folded into one).
	Count int `json:"count,omitempty"`
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Identity string
	Kind     string
	Result   string
	Since    time.Time
	Until    time.Time
	Limit    int
	// Before pages backwards: only events with a smaller ID.
	Before int64
}

// Log is the audit log.
type Log struct {
	db  *sql.DB
	log *slog.Logger
	ch  chan Event

	wg      sync.WaitGroup
	once    sync.Once
	flushc  chan chan struct{}
	stopped chan struct{} // closed when the writer has finished
}

// queueSize bounds memory when the database is slow; beyond it, events are
// written synchronously rather than dropped.
const queueSize = 4096

// New starts a Log writing to db (which holds the audit table).
func New(db *sql.DB, log *slog.Logger) *Log {
	l := &Log{db: db, log: log, ch: make(chan Event, queueSize), flushc: make(chan chan struct{}), stopped: make(chan struct{})}
	l.wg.Add(1)
	go l.run()
	return l
}

// Record queues e. Time defaults to now.
func (l *Log) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case l.ch <- e:
	default:
		l.write([]Event{e})
	}
}

// Flush waits until every event recorded so far is in the database.
func (l *Log) Flush() {
	done := make(chan struct{})
	select {
	case l.flushc <- done:
		<-done
	case <-l.stopped: // closed: everything was written
	}
}

// Close flushes and stops the writer.
func (l *Log) Close() {
	l.once.Do(func() {
		close(l.ch)
		l.wg.Wait()
	})
}

// batchWindow is how long the writer gathers events before writing them in
// one transaction; identical manifest pulls within it become one record
// with a count, so a busy pull path costs one row a window, not one a pull.
const batchWindow = 200 * time.Millisecond

func (l *Log) run() {
	defer l.wg.Done()
	defer close(l.stopped)
	var batch []Event
	var timer <-chan time.Time
	for {
		select {
		case e, ok := <-l.ch:
			if !ok {
				l.write(fold(batch))
				return
			}
			batch = append(batch, e)
			if timer == nil {
				timer = time.After(batchWindow)
			}
			if len(batch) >= queueSize {
				l.write(fold(batch))
				batch, timer = nil, nil
			}
		case <-timer:
			l.write(fold(batch))
			batch, timer = nil, nil
		case done := <-l.flushc:
			for len(l.ch) > 0 {
				batch = append(batch, <-l.ch)
			}
			l.write(fold(batch))
			batch, timer = nil, nil
			close(done)
		}
	}
}

// fold merges identical pull events (same identity, credential, address,
// client, repository, tag and digest) into one with a count.
func fold(events []Event) []Event {
	type key struct {
		identity, slot, ip, ua, repo, tag, digest string
	}
	out := events[:0]
	seen := map[key]int{}
	for _, e := range events {
		if e.Kind != KindPull {
			out = append(out, e)
			continue
		}
		k := key{e.Identity, e.Slot, e.CallerIP, e.UserAgent, e.Repository, e.Tag, e.Digest}
		if i, ok := seen[k]; ok {
			out[i].Count += max(e.Count, 1)
			continue
		}
		e.Count = max(e.Count, 1)
		seen[k] = len(out)
		out = append(out, e)
	}
	return out
}

func (l *Log) write(events []Event) {
	if len(events) == 0 {
		return
	}
	tx, err := l.db.Begin()
	if err != nil {
		l.log.Error("audit write failed", "err", err, "events", len(events))
		return
	}
	stmt, err := tx.Prepare(`INSERT INTO audit(time, kind, result, identity, identity_kind, slot, reason, caller_ip, user_agent, repository, tag, digest, target, jti, duration_ms, count)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tx.Rollback()
		l.log.Error("audit write failed", "err", err)
		return
	}
	defer stmt.Close()
	for _, e := range events {
		// Callers choose usernames, agents and reasons: clip what is kept.
		if _, err := stmt.Exec(e.Time.UnixMilli(), e.Kind, e.Result, clip(e.Identity, 256), e.IdentityKind, e.Slot, clip(e.Reason, 512), clip(e.CallerIP, 64),
			clip(e.UserAgent, 512), clip(e.Repository, 256), clip(e.Tag, 128), clip(e.Digest, 160), clip(e.Target, 512), clip(e.JwtID, 64), e.DurationMs, max(e.Count, 1)); err != nil {
			tx.Rollback()
			l.log.Error("audit write failed", "err", err)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		l.log.Error("audit write failed", "err", err)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// List returns events matching f, newest first. Events recorded before the
// call are included: it waits for the writer first.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, error) {
	l.Flush()
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Identity != "" {
		add("identity = ?", f.Identity)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if f.Result != "" {
		add("result = ?", f.Result)
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until.UnixMilli())
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	q := `SELECT id, time, kind, result, identity, identity_kind, slot, reason, caller_ip, user_agent, repository, tag, digest, target, jti, duration_ms, count FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", limit)
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Result, &e.Identity, &e.IdentityKind, &e.Slot, &e.Reason, &e.CallerIP, &e.UserAgent,
			&e.Repository, &e.Tag, &e.Digest, &e.Target, &e.JwtID, &e.DurationMs, &e.Count); err != nil {
			return nil, fmt.Errorf("scan audit event: %w", err)
		}
		e.Time = time.UnixMilli(t).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
