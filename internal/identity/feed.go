package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Several nodes on one PostgreSQL database each hold the identities in
// memory. The feed keeps a node's memory current with the others'
// changes:
//
//   - every change increments the identity version in its transaction and
//     notifies (pg_notify, delivered when it commits) on notifyChannel;
//   - each node listens on a connection of its own and, when notified,
//     loads the identities anew if the version moved; it also reads the
//     version every heartbeat, so a lost notification costs at most that;
//   - each node records the version it has applied in identity_nodes, and
//     the node that made a change waits (at most ConfirmWithin) until every
//     live node has applied it, so the change is in force on every node
//     when the call that made it returns;
//   - a node that has not confirmed within ConfirmWithin that its memory is
//     current (database down, listening connection lost) refuses every
//     credential check with ErrUnavailable until it has: a stale node
//     never allows what a change has taken away. A node that has not
//     applied a change within ConfirmWithin is by then refusing by this
//     rule, which is why the writer need not wait longer.
const (
	notifyChannel = "berth_identity"
	// ConfirmWithin is how recent a node's confirmation that its memory is
	// current must be for it to check credentials.
	ConfirmWithin = time.Second
	// heartbeat is how often a node reads the version and says it is alive.
	heartbeat = 250 * time.Millisecond
	// liveWithin is how recently a node must have said it is alive to be
	// waited for.
	liveWithin = 2 * time.Second
)

// ErrUnavailable means the service cannot tell that its identities are
// current, so it cannot check credentials now; retry shortly (503 with
// Retry-After).
var ErrUnavailable = errors.New("identities unavailable")

type feed struct {
	s    *Service
	node string
	// confirmed is when (unix ns) the node last began a check that found
	// memory at the database's version; 0 = never or lost.
	confirmed atomic.Int64
	// epoch counts the times memory was marked unconfirmed, so that a
	// check begun before cannot confirm it after.
	epoch     atomic.Int64
	listening atomic.Bool
	// reported and reportedAt are the version last recorded in
	// identity_nodes, and when.
	reported   atomic.Int64
	reportedAt atomic.Int64
	kick       chan struct{}
	stop       chan struct{}
	wg         sync.WaitGroup
	cancel     context.CancelFunc
}

func (s *Service) startFeed(ctx context.Context) (*feed, error) {
	node := s.opts.Node
	if node == "" {
		// Unique per Service, even for two in one process.
		node = sqldb.NodeName()
	}
	f := &feed{s: s, node: node, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	// Nodes that ended without saying so (killed, crashed) leave a row
	// behind: forget those long gone.
	if _, err := s.db.W().ExecContext(ctx, `DELETE FROM identity_nodes WHERE seen_at < ?`, time.Now().Add(-24*time.Hour).UnixMilli()); err != nil {
		return nil, fmt.Errorf("forget old nodes: %w", err)
	}
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(2)
	go f.listenLoop(lctx)
	go f.beatLoop(lctx)
	// Serve only once memory is confirmed current, or every first request
	// would be refused.
	for deadline := time.Now().Add(5 * time.Second); f.confirmed.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return f, nil
}

func (s *Service) stopFeed() {
	if s.feed == nil {
		return
	}
	close(s.feed.stop)
	s.feed.cancel()
	s.feed.wg.Wait()
	// Not waited for any more.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.db.W().ExecContext(ctx, `DELETE FROM identity_nodes WHERE node = ?`, s.feed.node)
}

// check reads the database's version, loads memory anew if it differs, and
// records the version applied; on success memory was current when check
// began.
func (f *feed) check(ctx context.Context) error {
	epoch := f.epoch.Load()
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, ConfirmWithin)
	defer cancel()
	s := f.s
	s.writeMu.Lock()
	err := s.syncLocked(ctx)
	v := s.version
	s.writeMu.Unlock()
	if err != nil {
		return err
	}
	if err := f.report(ctx, v); err != nil {
		return err
	}
	if f.listening.Load() && f.epoch.Load() == epoch {
		f.confirmed.Store(began.UnixNano())
	}
	return nil
}

// report records that this node has applied version v and is alive:
// at once when v is new, else at most once a second (liveWithin is 2 s).
// The record need not survive a crash of the database, so it is committed
// without waiting for the disk (it is visible to the other nodes at once
// all the same).
func (f *feed) report(ctx context.Context, v int64) error {
	now := time.Now()
	if v == f.reported.Load() && now.Sub(time.Unix(0, f.reportedAt.Load())) < time.Second {
		return nil
	}
	err := f.s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO identity_nodes(node, applied_version, seen_at) VALUES (?, ?, ?)
			ON CONFLICT(node) DO UPDATE SET applied_version = excluded.applied_version, seen_at = excluded.seen_at`,
			f.node, v, now.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("report identity version: %w", err)
	}
	f.reported.Store(v)
	f.reportedAt.Store(now.UnixNano())
	return nil
}

// beatLoop checks every heartbeat, and at once when notified.
func (f *feed) beatLoop(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		case <-f.kick:
		}
		if err := f.check(ctx); err != nil {
			if !failing {
				f.s.log.Warn("cannot confirm that identities are current; credential checks fail until then", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			f.s.log.Info("identities confirmed current again")
		}
		failing = false
	}
}

// listenLoop keeps a connection listening for change notifications,
// opening a new one when it is lost.
func (f *feed) listenLoop(ctx context.Context) {
	defer f.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		err := f.listen(ctx)
		f.lost()
		select {
		case <-f.stop:
			return
		default:
		}
		f.s.log.Warn("identity change notifications lost; reconnecting", "err", err)
		select {
		case <-f.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (f *feed) listen(ctx context.Context) error {
	return f.s.db.Listen(ctx, notifyChannel, func(context.Context, *pgx.Conn) error {
		f.listening.Store(true)
		// Changes committed before LISTEN took effect have no
		// notification coming: check now.
		signalKick(f.kick)
		return nil
	}, func(string) { signalKick(f.kick) })
}

func signalKick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// lost marks the listening connection gone, and memory unconfirmed until
// a new connection listens and the next check succeeds.
func (f *feed) lost() {
	if f == nil {
		return
	}
	f.listening.Store(false)
	f.epoch.Add(1)
	f.confirmed.Store(0)
}

// stale marks memory unconfirmed until the next successful check (memory
// could not be brought up to date); the connection still listens.
func (f *feed) stale() {
	if f == nil {
		return
	}
	f.epoch.Add(1)
	f.confirmed.Store(0)
	signalKick(f.kick)
}

// applied is called after this node applied a change of its own (with
// s.writeMu held): it records the version and waits, at most
// ConfirmWithin, until every other live node has applied it too.
func (f *feed) applied() {
	if f == nil {
		return
	}
	v := f.s.version
	ctx, cancel := context.WithTimeout(context.Background(), ConfirmWithin)
	defer cancel()
	if err := f.report(ctx, v); err != nil {
		return
	}
	for {
		var behind int
		err := f.s.db.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM identity_nodes WHERE node <> ? AND seen_at > ? AND applied_version < ?`,
			f.node, time.Now().Add(-liveWithin).UnixMilli(), v).Scan(&behind)
		if err != nil || behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// current reports whether memory is confirmed current recently enough to
// check credentials with.
func (f *feed) current() error {
	if f == nil {
		return nil
	}
	c := f.confirmed.Load()
	if c == 0 || time.Since(time.Unix(0, c)) > ConfirmWithin {
		return &Error{Kind: ErrUnavailable, Msg: "cannot confirm that identities are current (database or its change notifications unreachable): retry shortly"}
	}
	return nil
}

// Current returns ErrUnavailable if credentials cannot be checked now,
// because this node cannot confirm that its identities are current.
func (s *Service) Current() error { return s.feed.current() }

// Following reports whether the service follows other nodes' changes
// through the database (several nodes on PostgreSQL).
func (s *Service) Following() bool { return s.feed != nil }
