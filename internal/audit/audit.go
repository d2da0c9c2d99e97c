// Package audit records who did what: every login attempt, push, manifest
// pull, delete and permission change.
//
// There are three ways in, by what a record is worth in a crash:
//
//   - InsertTx writes a record in the caller's transaction: a permission
//     change and its record are committed together or not at all.
//   - Write returns once the record is committed: pushes and deletes call
//     it before they answer, so no acknowledged change lacks its record.
//     Concurrent callers share one transaction (group commit).
//   - Record queues a record and returns at once: manifest pulls and
//     logins, which are many and change nothing, are committed within
//     batchWindow, and identical ones within FoldWindow become one record
//     with a count. A crash can lose the last batchWindow of them.
//
// A batch that fails is retried, never dropped; retention deletes the
// oldest records beyond an age or a number.
package audit

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Event kinds.
const (
	KindLogin      = "login"
	KindPush       = "push"
	KindPull       = "pull"
	KindDelete     = "delete"
	KindUntag      = "untag"
	KindPermission = "permission" // scope maps, tokens, passwords, users, admin, attributes
	KindNetwork    = "network"    // requests refused by the network rules
	KindLimited    = "limited"    // requests refused for a token's limit (429), folded
	// KindAccess is a data-plane request (/v2/ or a token request's
	// scope) that the access decision refused: Action says what was asked,
	// Missing what the identity lacks. Repeats are folded.
	KindAccess = "access"
	// KindTrust is a pull a signature policy refused (failure), or served
	// in audit mode (success, Reason says what was missing).
	KindTrust = "trust"
)

// Kinds lists every event kind, for filters.
var Kinds = []string{KindLogin, KindPush, KindPull, KindDelete, KindUntag, KindPermission, KindNetwork, KindLimited, KindAccess, KindTrust}

// ParseResult reads a result filter: success or failure, or their
// synonyms allowed and denied.
func ParseResult(s string) (string, error) {
	switch s {
	case "", ResultSuccess, ResultFailure:
		return s, nil
	case "allowed":
		return ResultSuccess, nil
	case "denied":
		return ResultFailure, nil
	}
	return "", fmt.Errorf("invalid result %q: use success (or allowed) or failure (or denied)", s)
}

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
	Target string `json:"target,omitempty"`
	// Action is what a refused request asked for ("push", "pull",
	// "delete"), Missing the actions the identity lacks for it
	// ("content/write").
	Action     string `json:"action,omitempty"`
	Missing    string `json:"missing,omitempty"`
	JwtID      string `json:"jwtId,omitempty"`
	DurationMs int64  `json:"durationMs,omitempty"`
	// Count is how many identical events this record stands for: manifest
	// pulls and failed logins repeated within FoldWindow are folded into
	// one record. LastTime is then the time of the last of them.
	Count    int       `json:"count,omitempty"`
	LastTime time.Time `json:"lastTime,omitzero"`
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Identity   string
	Repository string
	Kind       string
	Result     string
	Since      time.Time
	Until      time.Time
	Limit      int
	// Before pages backwards: only events with a smaller ID.
	Before int64
	// Repositories, when not nil, keeps only events on a repository that
	// one of these repository patterns matches ("team/app", "team/*" or
	// "*"), for a user who may read the audit log of those only; events on
	// no repository (logins, permission changes) are then left out, but
	// for those of the user named by Own.
	Repositories []string
	// Own, with Repositories, keeps the events of this user as well (their
	// own logins and permission changes).
	Own string
}

// repositoriesWhere is the condition of Filter.Repositories; substr and
// length, not LIKE, so that '_' in a name is no wildcard.
func repositoriesWhere(patterns []string) (string, []any) {
	var conds []string
	var args []any
	for _, p := range patterns {
		switch prefix, ok := strings.CutSuffix(p, "/*"); {
		case p == "*":
			return "repository <> ''", nil
		case ok:
			conds = append(conds, "(length(repository) > ? AND substr(repository, 1, ?) = ?)")
			args = append(args, len(prefix)+1, len(prefix)+1, prefix+"/")
		default:
			conds = append(conds, "repository = ?")
			args = append(args, p)
		}
	}
	if len(conds) == 0 {
		return "1 = 0", nil
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// Options configure a Log.
type Options struct {
	Logger *slog.Logger
	// MaxAge and MaxRecords bound the log: retention deletes records older
	// than MaxAge and the oldest beyond MaxRecords. Zero means no limit.
	MaxAge     time.Duration
	MaxRecords int64
	// PruneInterval is how often retention runs; zero means hourly.
	PruneInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tuning of the writer.
const (
	// batchWindow is how long queued records are gathered before they are
	// written in one transaction.
	batchWindow = 200 * time.Millisecond
	// FoldWindow is how long identical pulls and failed logins keep
	// adding to one record's count: a flood costs a row a minute per
	// source, not a row per attempt.
	FoldWindow = time.Minute
	// maxQueue bounds the queued records; beyond it Record waits for the
	// writer rather than dropping anything.
	maxQueue = 8192
	// maxFolds bounds the records the writer remembers for folding;
	// forgetting them costs only extra rows.
	maxFolds = 16384
	// Retries of a failed batch wait retryBase, doubling up to retryMax.
	// Callers of Write are told of the failure after failWaitersAfter
	// attempts (their records stay queued); at shutdown the writer gives
	// up after closeAttempts.
	retryBase        = 100 * time.Millisecond
	retryMax         = 5 * time.Second
	failWaitersAfter = 3
	closeAttempts    = 5
	// pruneChunk is how many rows one retention transaction deletes, so
	// that writers never wait long behind it.
	pruneChunk = 2000
)

// Log is the audit log.
type Log struct {
	db   *sqldb.Conn
	log  *slog.Logger
	opts Options
	now  func() time.Time

	mu     sync.Mutex
	space  *sync.Cond // signalled when the queue shrinks or the log closes
	queue  []entry
	closed bool

	kick    chan struct{} // something is queued
	urgent  chan struct{} // someone waits for a commit
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
	once    sync.Once
	stopped chan struct{} // closed when the writer has finished

	folds map[foldKey]foldRow // written records still open to folding; the writer's only
}

// entry is a queued record; done, when set, is told when it is committed
// (or that committing it keeps failing). A marker entry carries no record,
// only done: Flush uses one.
type entry struct {
	e      Event
	done   chan error
	marker bool
}

type foldKey struct {
	kind, result, identity, identityKind, slot, reason, ip, ua, repo, tag, digest, action, missing string
}

type foldRow struct {
	id       int64
	first    time.Time
	identity string // the username the row names
	others   bool   // it counts other usernames too
}

// New starts a Log writing to db (whose audit table Migrate has brought up
// to date), without retention.
func New(db *sqldb.DB, log *slog.Logger) *Log {
	return Open(db, Options{Logger: log})
}

// Open starts a Log writing to db (whose audit table Migrate has brought up
// to date) and, if opts sets a limit, its retention.
func Open(db *sqldb.DB, opts Options) *Log {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = time.Hour
	}
	l := &Log{db: db.W(), log: opts.Logger, opts: opts, now: opts.Now,
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		folds: map[foldKey]foldRow{}}
	l.space = sync.NewCond(&l.mu)
	l.wg.Add(1)
	go l.run()
	if opts.MaxAge > 0 || opts.MaxRecords > 0 {
		l.wg.Add(1)
		go l.retain()
	}
	return l
}

// Record queues e to be written within batchWindow and returns; it waits
// only if the queue is full. Time defaults to now. After Close it writes e
// at once.
func (l *Log) Record(e Event) {
	e = l.prepare(e)
	l.mu.Lock()
	for len(l.queue) >= maxQueue && !l.closed {
		l.space.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		if err := l.writeNow(context.Background(), e); err != nil {
			l.log.Error("audit write failed", "err", err, "kind", e.Kind)
		}
		return
	}
	l.queue = append(l.queue, entry{e: e})
	l.mu.Unlock()
	signal(l.kick)
}

// Write records e and returns once it is committed, or with the error that
// keeps it from being committed; the record then stays queued and is
// retried. Concurrent calls share one transaction. Time defaults to now.
// After Close it writes e in a transaction of its own.
func (l *Log) Write(ctx context.Context, e Event) error {
	e = l.prepare(e)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.writeNow(ctx, e)
	}
	done := make(chan error, 1)
	l.queue = append(l.queue, entry{e: e, done: done})
	l.mu.Unlock()
	signal(l.urgent)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit record not written yet: %w", ctx.Err())
	}
}

// InsertTx writes e in tx, the transaction of the change it records, so
// that both are committed or neither is. Time defaults to now.
func (l *Log) InsertTx(ctx context.Context, tx *sqldb.Tx, e Event) error {
	e = l.prepare(e)
	if _, err := tx.ExecContext(ctx, insertSQL, insertArgs(e, max(e.Count, 1), time.Time{})...); err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}

// Flush waits until every event recorded so far is in the database, or
// writing them has failed repeatedly.
func (l *Log) Flush() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	done := make(chan error, 1)
	l.queue = append(l.queue, entry{done: done, marker: true})
	l.mu.Unlock()
	signal(l.urgent)
	<-done
}

// Close writes what is queued and stops the writer and retention. Records
// made after Close are written synchronously.
func (l *Log) Close() {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.space.Broadcast()
		l.mu.Unlock()
		close(l.stop)
		l.wg.Wait()
	})
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// prepare stamps e and clips what callers choose (usernames, agents,
// reasons), before it is queued, so that the queue's memory is bounded too.
func (l *Log) prepare(e Event) Event {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Identity, e.Reason, e.CallerIP = clip(e.Identity, 256), clip(e.Reason, 512), clip(e.CallerIP, 64)
	e.UserAgent, e.Repository, e.Tag, e.Digest = clip(e.UserAgent, 512), clip(e.Repository, 256), clip(e.Tag, 128), clip(e.Digest, 160)
	e.Target, e.JwtID = clip(e.Target, 512), clip(e.JwtID, 64)
	return e
}

func (l *Log) run() {
	defer l.wg.Done()
	defer close(l.stopped)
	for {
		select {
		case <-l.kick:
			// Only queued records so far: gather more, unless someone
			// starts waiting for a commit.
			t := time.NewTimer(batchWindow)
			select {
			case <-t.C:
			case <-l.urgent:
			case <-l.stop:
			}
			t.Stop()
		case <-l.urgent:
		case <-l.stop:
		}
		select {
		case <-l.stop:
			l.drain(true)
			return
		default:
			l.drain(false)
		}
	}
}

// take removes up to n entries from the front of the queue.
func (l *Log) take(n int) []entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, len(l.queue))
	q := l.queue[:n:n]
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil
	}
	l.space.Broadcast()
	return q
}

// waiters reports whether anyone waits for a queued entry.
func (l *Log) waiters() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, en := range l.queue {
		if en.done != nil {
			return true
		}
	}
	return false
}

// drain writes the queue, again and again while callers wait (group
// commit: whoever arrived during one transaction shares the next), and at
// shutdown until it is empty.
func (l *Log) drain(final bool) {
	for {
		batch := l.take(maxQueue)
		if len(batch) == 0 {
			return
		}
		l.commit(batch, final)
		if !final && !l.waiters() {
			return
		}
	}
}

// commit writes batch in one transaction, retrying a failure with backoff;
// records queued meanwhile join the retry, up to maxQueue of them, so that
// the queue fills and Record waits while the database is down. Waiters learn of a persistent
// failure after failWaitersAfter attempts while their records stay in the
// batch. Only at shutdown does it give up, after closeAttempts.
func (l *Log) commit(batch []entry, final bool) {
	wait := retryBase
	for attempt := 1; ; attempt++ {
		err := l.write(batch)
		if err == nil {
			for _, en := range batch {
				if en.done != nil {
					en.done <- nil
				}
			}
			return
		}
		select {
		case <-l.stop:
			final = true
		default:
		}
		records := 0
		for _, en := range batch {
			if !en.marker {
				records++
			}
		}
		if final && attempt >= closeAttempts {
			l.log.Error("audit records lost at shutdown", "err", err, "records", records)
			for _, en := range batch {
				if en.done != nil {
					en.done <- err
				}
			}
			return
		}
		l.log.Error("audit write failed; retrying", "err", err, "records", records, "attempt", attempt, "retry_in", wait)
		if attempt >= failWaitersAfter {
			tell(batch, err)
			l.mu.Lock()
			tell(l.queue, err) // waiters that a full batch kept out
			l.mu.Unlock()
		}
		time.Sleep(wait)
		wait = min(2*wait, retryMax)
		if len(batch) < maxQueue {
			batch = append(batch, l.take(maxQueue-len(batch))...)
		}
	}
}

// tell gives err to the waiters of entries, once: their records stay.
func tell(entries []entry, err error) {
	for i, en := range entries {
		if en.done != nil {
			en.done <- err
			entries[i].done = nil
		}
	}
}

// op is one statement of a batch: a new row, or more to count on a row
// written before (id > 0).
type op struct {
	e     Event
	key   *foldKey // set when later events may fold into this row
	id    int64
	first time.Time // of the row's first event, which bounds folding
	count int
	last  time.Time
	// identity is the username the row names, its first event's; others
	// says the row counts events for other usernames too.
	identity string
	others   bool
}

// plan folds the batch into ops: identical foldable events within
// FoldWindow of a row's first event add to that row, whether it is in this
// batch or was written before.
func (l *Log) plan(batch []entry) []*op {
	var ops []*op
	open := map[foldKey]*op{}
	for _, en := range batch {
		if en.marker {
			continue
		}
		e := en.e
		n := max(e.Count, 1)
		k, ok := foldable(e)
		if !ok {
			ops = append(ops, &op{e: e, count: n, identity: e.Identity})
			continue
		}
		if o := open[k]; o != nil && within(o.first, e.Time) {
			o.count += n
			o.last = later(o.last, e.Time)
			o.others = o.others || e.Identity != o.identity
			continue
		}
		o := &op{e: e, key: &k, first: e.Time, count: n, last: e.Time, identity: e.Identity}
		if fr, ok := l.folds[k]; ok && within(fr.first, e.Time) {
			o.id, o.first, o.identity = fr.id, fr.first, fr.identity
			o.others = fr.others || e.Identity != fr.identity
		}
		open[k] = o
		ops = append(ops, o)
	}
	return ops
}

// ReasonRateLimited ends the reason of a login refused by the limiter
// ("rate limited", "portal: rate limited"): such refusals from one client
// fold whatever usernames they name, and the row then says so with
// OthersSuffix.
const (
	ReasonRateLimited = "rate limited"
	OthersSuffix      = " (and other usernames)"
)

func foldable(e Event) (foldKey, bool) {
	if e.Kind != KindPull && e.Kind != KindNetwork && e.Kind != KindLimited && e.Kind != KindAccess && e.Kind != KindTrust && (e.Kind != KindLogin || e.Result != ResultFailure) {
		return foldKey{}, false
	}
	identity := e.Identity
	if e.Kind == KindLogin && strings.HasSuffix(e.Reason, ReasonRateLimited) {
		// A flood of refused guesses with a new username each must cost a
		// row per window, not a row per guess, or it pushes the real
		// history out through retention. The refusal checked nothing, so
		// the usernames it names are worth no more than the count.
		identity = ""
	}
	return foldKey{e.Kind, e.Result, identity, e.IdentityKind, e.Slot, e.Reason, e.CallerIP, e.UserAgent, e.Repository, e.Tag, e.Digest, e.Action, e.Missing}, true
}

func within(first, t time.Time) bool {
	d := t.Sub(first)
	return d < FoldWindow && d > -FoldWindow
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

const insertSQL = `INSERT INTO audit(time, kind, result, identity, identity_kind, slot, reason, caller_ip, user_agent, repository, tag, digest, target, jti, duration_ms, count, last_time, action, missing)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func insertArgs(e Event, count int, last time.Time) []any {
	lastMs := e.Time.UnixMilli()
	if !last.IsZero() {
		lastMs = last.UnixMilli()
	}
	return []any{e.Time.UnixMilli(), e.Kind, e.Result, e.Identity, e.IdentityKind, e.Slot, e.Reason, e.CallerIP,
		e.UserAgent, e.Repository, e.Tag, e.Digest, e.Target, e.JwtID, e.DurationMs, count, lastMs, e.Action, e.Missing}
}

// write commits batch in one transaction; only then does it remember the
// rows open to folding, so that a failed attempt leaves nothing behind.
func (l *Log) write(batch []entry) error {
	ops := l.plan(batch)
	if len(ops) == 0 {
		return nil
	}
	tx, err := l.db.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.SQL().Prepare(tx.Dialect().Rebind(insertSQL + ` RETURNING id`))
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer ins.Close()
	ids := make([]int64, len(ops))
	for i, o := range ops {
		reason := o.e.Reason
		if o.others {
			reason += OthersSuffix
		}
		if o.id > 0 {
			last := o.last.UnixMilli()
			res, err := tx.ExecContext(context.Background(), `UPDATE audit SET count = count + ?, last_time = CASE WHEN last_time < ? THEN ? ELSE last_time END, reason = ? WHERE id = ?`, o.count, last, last, reason, o.id)
			if err != nil {
				return fmt.Errorf("update: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil && n == 1 {
				ids[i] = o.id
				continue
			}
			// Retention deleted the row meanwhile: start a new one.
			o.first = o.e.Time
		}
		e := o.e
		e.Identity, e.Reason = o.identity, reason
		if err := ins.QueryRow(insertArgs(e, o.count, o.last)...).Scan(&ids[i]); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	l.remember(ops, ids)
	return nil
}

func (l *Log) remember(ops []*op, ids []int64) {
	// Rows whose window has passed, as the events tell time, are closed.
	var newest time.Time
	for _, o := range ops {
		newest = later(newest, o.last)
	}
	for k, fr := range l.folds {
		if !within(fr.first, newest) {
			delete(l.folds, k)
		}
	}
	for i, o := range ops {
		if o.key == nil {
			continue
		}
		if len(l.folds) >= maxFolds {
			clear(l.folds)
		}
		l.folds[*o.key] = foldRow{id: ids[i], first: o.first, identity: o.identity, others: o.others}
	}
}

// writeNow writes e in a transaction of its own, for records made after
// Close.
func (l *Log) writeNow(ctx context.Context, e Event) error {
	if _, err := l.db.ExecContext(ctx, insertSQL, insertArgs(e, max(e.Count, 1), time.Time{})...); err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (l *Log) retain() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(l.opts.PruneInterval)
	defer t.Stop()
	for {
		if n, err := l.Prune(ctx); err != nil && !errors.Is(err, context.Canceled) {
			l.log.Error("audit retention failed", "err", err, "deleted", n)
		} else if n > 0 {
			l.log.Info("audit retention", "deleted", n)
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// Prune deletes the records older than MaxAge and the oldest beyond
// MaxRecords, a chunk per transaction so that writers never wait long
// behind it, and returns how many it deleted.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	var total int64
	if l.opts.MaxAge > 0 {
		cutoff := l.now().Add(-l.opts.MaxAge).UnixMilli()
		n, err := l.deleteChunks(ctx, `DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? ORDER BY time LIMIT ?)`, cutoff)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete audit records older than %s: %w", l.opts.MaxAge, err)
		}
	}
	if l.opts.MaxRecords > 0 {
		var newestGone int64
		err := l.db.QueryRowContext(ctx, `SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?`, l.opts.MaxRecords).Scan(&newestGone)
		if errors.Is(err, sql.ErrNoRows) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("count audit records: %w", err)
		}
		n, err := l.deleteChunks(ctx, `DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id <= ? ORDER BY id LIMIT ?)`, newestGone)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete audit records beyond %d: %w", l.opts.MaxRecords, err)
		}
	}
	return total, nil
}

func (l *Log) deleteChunks(ctx context.Context, q string, bound int64) (int64, error) {
	var total int64
	for {
		res, err := l.db.ExecContext(ctx, q, bound, pruneChunk)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// List returns events matching f, newest first. Events recorded before the
// call are included: it waits for the writer first.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, error) {
	l.Flush()
	where, args := f.where()
	q := `SELECT id, time, kind, result, identity, identity_kind, slot, reason, caller_ip, user_agent, repository, tag, digest, target, jti, duration_ms, count, last_time, action, missing FROM audit`
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
		var t, last int64
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Result, &e.Identity, &e.IdentityKind, &e.Slot, &e.Reason, &e.CallerIP, &e.UserAgent,
			&e.Repository, &e.Tag, &e.Digest, &e.Target, &e.JwtID, &e.DurationMs, &e.Count, &last, &e.Action, &e.Missing); err != nil {
			return nil, fmt.Errorf("scan audit event: %w", err)
		}
		e.Time = time.UnixMilli(t).UTC()
		if e.Count > 1 && last > 0 {
			e.LastTime = time.UnixMilli(last).UTC()
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// where is the filter as SQL conditions and their arguments.
func (f Filter) where() (where []string, args []any) {
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Identity != "" {
		add("identity = ?", f.Identity)
	}
	if f.Repository != "" {
		add("repository = ?", f.Repository)
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
	if f.Repositories != nil {
		cond, a := repositoriesWhere(f.Repositories)
		if f.Own != "" {
			cond, a = "("+cond+" OR (identity_kind = 'user' AND identity = ?))", append(a, f.Own)
		}
		where = append(where, cond)
		args = append(args, a...)
	}
	return where, args
}

// Count returns how many events match f (f.Limit and f.Before aside),
// counting a folded record as the events it stands for.
func (l *Log) Count(ctx context.Context, f Filter) (int64, error) {
	l.Flush()
	f.Before = 0
	where, args := f.where()
	q := `SELECT COALESCE(SUM(count), 0) FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var n int64
	if err := l.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count audit events: %w", err)
	}
	return n, nil
}

// Migrate brings the audit table in db up to date. On SQLite it follows the
// metadata store's migrations, which created the table before components
// kept their own schema versions: open the metadata store first.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	steps := sqliteMigrations
	if db.Engine() == sqldb.Postgres {
		steps = postgresMigrations
	}
	return db.Migrate(ctx, "audit", steps)
}

// SchemaVersion is the version of the audit table's schema on engine e.
func SchemaVersion(e sqldb.Engine) int {
	if e == sqldb.Postgres {
		return len(postgresMigrations)
	}
	return len(sqliteMigrations)
}

// sqliteMigrations start from the table as the metadata store's
// migrations left it (they made it part of the one schema), or create it
// where they did not run.
var sqliteMigrations = []string{
	`CREATE TABLE IF NOT EXISTS audit (
		id INTEGER PRIMARY KEY,
		time INTEGER NOT NULL,
		kind TEXT NOT NULL,
		result TEXT NOT NULL,
		identity TEXT NOT NULL DEFAULT '',
		identity_kind TEXT NOT NULL DEFAULT '',
		slot TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL DEFAULT '',
		caller_ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		repository TEXT NOT NULL DEFAULT '',
		tag TEXT NOT NULL DEFAULT '',
		digest TEXT NOT NULL DEFAULT '',
		target TEXT NOT NULL DEFAULT '',
		jti TEXT NOT NULL DEFAULT '',
		duration_ms INTEGER NOT NULL DEFAULT 0,
		count INTEGER NOT NULL DEFAULT 1,
		last_time INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
	CREATE INDEX IF NOT EXISTS audit_identity ON audit(identity, time);`,
	`ALTER TABLE audit ADD COLUMN action TEXT NOT NULL DEFAULT '';
	ALTER TABLE audit ADD COLUMN missing TEXT NOT NULL DEFAULT '';
	CREATE INDEX IF NOT EXISTS audit_repository ON audit(repository, time);`,
}

var postgresMigrations = []string{
	`CREATE TABLE audit (
		id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		time BIGINT NOT NULL,
		kind TEXT NOT NULL,
		result TEXT NOT NULL,
		identity TEXT COLLATE "C" NOT NULL DEFAULT '',
		identity_kind TEXT NOT NULL DEFAULT '',
		slot TEXT NOT NULL DEFAULT '',
		reason TEXT NOT NULL DEFAULT '',
		caller_ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		repository TEXT NOT NULL DEFAULT '',
		tag TEXT NOT NULL DEFAULT '',
		digest TEXT NOT NULL DEFAULT '',
		target TEXT NOT NULL DEFAULT '',
		jti TEXT NOT NULL DEFAULT '',
		duration_ms BIGINT NOT NULL DEFAULT 0,
		count BIGINT NOT NULL DEFAULT 1,
		last_time BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX audit_time ON audit(time);
	CREATE INDEX audit_identity ON audit(identity, time);`,
	`ALTER TABLE audit ADD COLUMN action TEXT NOT NULL DEFAULT '';
	ALTER TABLE audit ADD COLUMN missing TEXT NOT NULL DEFAULT '';
	CREATE INDEX audit_repository ON audit(repository, time);`,
}

// MaxExport bounds the events one export returns.
const MaxExport = 100000

// ListAll returns every event matching f, newest first, up to max (at
// most MaxExport), a page at a time; f.Limit is ignored.
func (l *Log) ListAll(ctx context.Context, f Filter, max int) ([]Event, error) {
	if max <= 0 || max > MaxExport {
		max = MaxExport
	}
	var out []Event
	f.Limit = 1000
	for len(out) < max {
		page, err := l.List(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			break
		}
		f.Before = page[len(page)-1].ID
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// csvHeader names the columns of WriteCSV, as the JSON fields are named.
var csvHeader = []string{"id", "time", "lastTime", "count", "kind", "result", "identity", "identityKind", "credential",
	"repository", "tag", "digest", "action", "missing", "target", "reason", "callerIpAddress", "userAgent", "durationMs"}

// WriteCSV writes events as CSV with a header row. A cell that a
// spreadsheet would run as a formula (it starts with =, +, -, @, a tab or
// a carriage return) is prefixed with a quote: repository names, user
// agents and reasons come from clients.
func WriteCSV(w io.Writer, events []Event) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, e := range events {
		row := []string{strconv.FormatInt(e.ID, 10), ts(e.Time), ts(e.LastTime), strconv.Itoa(max(e.Count, 1)), e.Kind, e.Result,
			e.Identity, e.IdentityKind, e.Slot, e.Repository, e.Tag, e.Digest, e.Action, e.Missing, e.Target, e.Reason,
			e.CallerIP, e.UserAgent, strconv.FormatInt(e.DurationMs, 10)}
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Export writes events as a download: format "csv" (WriteCSV) or "json"
// (an array of events), with a Content-Disposition naming the file.
func Export(w http.ResponseWriter, format string, events []Event) error {
	name := "berth-audit-" + time.Now().UTC().Format("20060102T150405Z")
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		return WriteCSV(w, events)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Disposition", `attachment; filename="`+name+`.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(events)
}
