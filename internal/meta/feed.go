package meta

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-registry/berth/internal/sqldb"
)

// On PostgreSQL several nodes share the metadata, and each keeps its own
// read cache. The feed keeps a node's cache from serving what another
// node has changed, with the guarantee the identity service gives
// (package identity, feed.go):
//
//   - every write transaction increments the metadata version (a row
//     lock held to the commit, so versions are in commit order) and
//     notifies metaChannel with the version and the repository;
//   - each node listens on a connection of its own and, when notified,
//     invalidates what it caches for that repository, then records in
//     meta_nodes the version it has applied;
//   - the node that wrote waits, at most confirmWithin, until every live
//     node has applied the write, so the change is in force on every node
//     when the call that made it returns;
//   - a node trusts its cache only while it has confirmed, less than
//     confirmWithin ago, that its notifications are current: every
//     heartbeat it notifies itself and waits to hear that back, which
//     (PostgreSQL delivers notifications in commit order) proves every
//     change committed before has been heard. Otherwise every read goes to
//     the database: slower, never stale. A node that has not applied a
//     change within confirmWithin of its commit has by then stopped
//     trusting its cache, which is why the writer need not wait longer.
const (
	metaChannel = "berth_meta"
	// confirmWithin is how recent a node's confirmation must be for it
	// to read from its cache.
	confirmWithin = time.Second
	// feedHeartbeat is how often a node confirms and says it is alive.
	feedHeartbeat = 250 * time.Millisecond
	// nodeLiveWithin is how recently a node must have said it is alive to
	// be waited for.
	nodeLiveWithin = 2 * time.Second
)

type feed struct {
	db    *sqldb.DB
	cache *readCache
	node  string
	// confirmed is when (unix ns) the last heard self-notification was
	// sent; 0 = never or lost.
	confirmed atomic.Int64
	// epoch counts losses of the listening connection, so that a
	// confirmation begun before one cannot count after it.
	epoch     atomic.Int64
	listening atomic.Bool
	// applied is the version of the last change heard and applied.
	applied atomic.Int64
	// pinged is the number of the last self-notification heard.
	pinged   atomic.Int64
	pings    atomic.Int64
	heard    chan struct{}
	kick     chan struct{}
	stop     chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	dropConn atomic.Pointer[context.CancelFunc]
	// listenPID is the server process of the listening connection.
	listenPID atomic.Uint32
	// reported and reportedAt are the version last recorded in
	// meta_nodes, and when.
	reported   atomic.Int64
	reportedAt atomic.Int64
	closeOnce  sync.Once
	// holdListen, when set, is waited on before each new listening
	// connection (for tests of what a node misses while it listens to
	// nothing).
	holdListen atomic.Pointer[chan struct{}]
}

func startFeed(ctx context.Context, db *sqldb.DB, cache *readCache) (*feed, error) {
	f := &feed{
		db: db, cache: cache,
		// Unique per Store, even for two in one process.
		node:  sqldb.NodeName(),
		heard: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	f.reported.Store(-1)
	// Nodes that ended without saying so leave a row behind: forget those
	// long gone.
	if _, err := db.W().ExecContext(ctx, `DELETE FROM meta_nodes WHERE seen_at < ?`, time.Now().Add(-24*time.Hour).UnixMilli()); err != nil {
		return nil, fmt.Errorf("forget old nodes: %w", err)
	}
	// Be waited for before the cache is first trusted.
	if err := f.report(ctx); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(3)
	go f.listenLoop(lctx)
	go f.beatLoop(lctx)
	go f.reportLoop(lctx)
	// Closing the database without the store ends the feed all the same.
	db.OnClose(f.close)
	return f, nil
}

func (f *feed) close() {
	if f == nil {
		return
	}
	f.closeOnce.Do(f.end)
}

func (f *feed) end() {
	close(f.stop)
	f.cancel()
	f.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	f.db.W().ExecContext(ctx, `DELETE FROM meta_nodes WHERE node = ?`, f.node)
}

// announce is the last step of a write transaction: it takes the next
// version and notifies the other nodes of repo's change at commit.
func (f *feed) announce(ctx context.Context, tx *sqldb.Tx, repo string) (int64, error) {
	var v int64
	if err := tx.QueryRowContext(ctx, `UPDATE meta_version SET v = v + 1 RETURNING v`).Scan(&v); err != nil {
		return 0, fmt.Errorf("take metadata version: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify(?, ?)`, metaChannel, "c "+strconv.FormatInt(v, 10)+" "+repo); err != nil {
		return 0, fmt.Errorf("notify metadata change: %w", err)
	}
	return v, nil
}

// await waits, at most confirmWithin, until every other live node has
// applied version v.
func (f *feed) await(v int64) {
	ctx, cancel := context.WithTimeout(context.Background(), confirmWithin)
	defer cancel()
	for {
		var behind int
		err := f.db.R().QueryRowContext(ctx, `SELECT COUNT(*) FROM meta_nodes WHERE node <> ? AND seen_at > ? AND applied < ?`,
			f.node, time.Now().Add(-nodeLiveWithin).UnixMilli(), v).Scan(&behind)
		if err != nil || behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// current reports whether the cache may be read: the node has confirmed
// recently enough that it has heard every change.
func (f *feed) current() bool {
	c := f.confirmed.Load()
	return c != 0 && time.Since(time.Unix(0, c)) <= confirmWithin
}

// report records that this node has applied version applied and is
// alive: at once when the version is new, else at most once a second.
// The record need not survive a crash of the database, so it is committed
// without waiting for the disk.
func (f *feed) report(ctx context.Context) error {
	v := f.applied.Load()
	now := time.Now()
	if v == f.reported.Load() && now.Sub(time.Unix(0, f.reportedAt.Load())) < time.Second {
		return nil
	}
	err := f.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta_nodes(node, applied, seen_at) VALUES (?, ?, ?)
			ON CONFLICT(node) DO UPDATE SET applied = excluded.applied, seen_at = excluded.seen_at`,
			f.node, v, now.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("report metadata version: %w", err)
	}
	f.reported.Store(v)
	f.reportedAt.Store(now.UnixNano())
	return nil
}

// reportLoop records the applied version as soon as a change is applied,
// so that its writer stops waiting.
func (f *feed) reportLoop(ctx context.Context) {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		}
		ctx, cancel := context.WithTimeout(ctx, confirmWithin)
		f.report(ctx)
		cancel()
	}
}

// beatLoop confirms every heartbeat.
func (f *feed) beatLoop(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(feedHeartbeat)
	defer t.Stop()
	for {
		f.beat(ctx)
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// beat says the node is alive and confirms, by a notification to itself,
// that it has heard every change committed before it began.
func (f *feed) beat(ctx context.Context) {
	if !f.listening.Load() {
		return
	}
	epoch := f.epoch.Load()
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, confirmWithin)
	defer cancel()
	if err := f.report(ctx); err != nil {
		return
	}
	n := f.pings.Add(1)
	if _, err := f.db.W().ExecContext(ctx, `SELECT pg_notify(?, ?)`, metaChannel, "p "+f.node+" "+strconv.FormatInt(n, 10)); err != nil {
		return
	}
	for f.pinged.Load() < n {
		select {
		case <-f.heard:
		case <-ctx.Done():
			// The listening connection hears nothing: open another.
			if drop := f.dropConn.Load(); drop != nil {
				(*drop)()
			}
			return
		}
	}
	if f.listening.Load() && f.epoch.Load() == epoch {
		f.confirmed.Store(began.UnixNano())
	}
}

// listenLoop keeps a connection listening for change notifications,
// opening a new one when it is lost.
func (f *feed) listenLoop(ctx context.Context) {
	defer f.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		f.listen(ctx)
		f.lost()
		select {
		case <-f.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (f *feed) listen(ctx context.Context) error {
	if hold := f.holdListen.Load(); hold != nil {
		select {
		case <-*hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.dropConn.Store(&cancel)
	return f.db.Listen(ctx, metaChannel, func(ctx context.Context, pc *pgx.Conn) error {
		f.listenPID.Store(pc.PgConn().PID())
		// Changes committed before LISTEN took effect were not heard:
		// forget everything cached.
		var v int64
		if err := pc.QueryRow(ctx, `SELECT v FROM meta_version`).Scan(&v); err != nil {
			return err
		}
		f.cache.bumpAll()
		f.apply(v)
		f.listening.Store(true)
		return nil
	}, f.handle)
}

// handle applies one notification: "c <version> <repository>" for a
// change, "p <node> <n>" for a node's self-notification.
func (f *feed) handle(payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	a, b, _ := strings.Cut(rest, " ")
	switch kind {
	case "c":
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return
		}
		f.cache.bump(b)
		f.apply(v)
	case "p":
		n, err := strconv.ParseInt(b, 10, 64)
		if a != f.node || err != nil {
			return
		}
		f.pinged.Store(n)
		signal(f.heard)
	}
}

func (f *feed) apply(v int64) {
	if v > f.applied.Load() {
		f.applied.Store(v)
		signal(f.kick)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// lost marks the listening connection gone, and the cache untrusted until
// a new connection listens and a confirmation succeeds.
func (f *feed) lost() {
	f.listening.Store(false)
	f.epoch.Add(1)
	f.confirmed.Store(0)
}
