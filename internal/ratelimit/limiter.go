package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/sqldb"
)

// The limits a refusal names (the metric's label).
const (
	LimitRate = "rate"
	LimitPull = "pull_bytes"
	LimitPush = "push_bytes"
)

// Refusal is one request refused for a limit, for metrics and the audit log.
type Refusal struct {
	Token   string
	Limit   string // LimitRate, LimitPull or LimitPush
	Reason  string // the limit, without the wait (so that records fold)
	Request *http.Request
}

// Options configure a Limiter.
type Options struct {
	DB *sqldb.DB
	// Shared says that other nodes use the database too (PostgreSQL):
	// request buckets are then leased from it, and byte counts and limit
	// changes come back from it at every sync.
	Shared bool
	// Identify returns the identity behind a registry caller.
	Identify func(registry.Caller) (auth.Identity, bool)
	// OnRefusal, when set, is told of each refused request.
	OnRefusal func(Refusal)
	Logger    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// SyncInterval is how often counts are written and read back and limit
	// changes looked for; default 250 ms. Negative: never on its own
	// (tests call Sync).
	SyncInterval time.Duration
}

// Limiter applies the limits to /v2/ requests (it implements
// registry.Limiter).
//
// On one node the request bucket of each limited token is in memory. On
// PostgreSQL it is a row of token_buckets that every node takes leases
// from: a node takes a tenth of a second's worth of requests (at least one)
// in one short transaction and admits them from memory, so the database
// sees about ten writes a second per busy token and node instead of one per
// request, and the cluster never admits more than the bucket holds. A lease
// unused after a second is dropped.
//
// Bytes are counted in memory per token and UTC day and added to
// token_usage at every sync, whose answer (every node's totals) replaces
// what the node knew of the others. A response of known size (a blob, a
// manifest) is reserved before its first byte: if it does not fit in what
// is left of the day it is refused with 429 before it starts; a request
// body of known size likewise. A body of unknown size (a chunked upload)
// is cut with 429 where it would cross the limit. Only what was actually
// sent or received is counted: a pull stopped halfway counts its half.
// Between syncs a node does not see the others' bytes, so a cluster may
// overshoot a byte limit by what the other nodes moved in one interval.
type Limiter struct {
	store     store
	shared    bool
	identify  func(registry.Caller) (auth.Identity, bool)
	onRefusal func(Refusal)
	log       *slog.Logger
	now       func() time.Time

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex // guards tokens
	tokens map[string]*tokenState

	syncMu    sync.Mutex // one sync at a time
	prunedDay int64
	stop      chan struct{}
	done      chan struct{}
	warned    atomic.Int64 // when the database last failed a lease, Unix seconds
}

// tokenState is what a node counts for one limited token.
type tokenState struct {
	name string

	mu       sync.Mutex
	local    bucket // the token's bucket, on one node
	leased   int64  // requests leased from the shared bucket and not used
	leasedAt time.Time
	// emptyUntil is when the shared bucket, found empty, holds a request
	// again at the soonest: until then requests are refused without
	// asking the database, so that a client hammering a token over its
	// limit costs no database work.
	emptyUntil time.Time

	day      int64
	loaded   bool  // base was read from the database for day
	base     usage // every node's bytes as last read from the database
	flushing usage // being added to the database now
	pending  usage // counted here, not yet written
	reserved usage // promised to requests in flight
}

func (st *tokenState) used() usage {
	return usage{
		pulled: st.base.pulled + st.flushing.pulled + st.pending.pulled + st.reserved.pulled,
		pushed: st.base.pushed + st.flushing.pushed + st.pending.pushed + st.reserved.pushed,
	}
}

// Open loads the limits and starts the sync loop.
func Open(ctx context.Context, o Options) (*Limiter, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnRefusal == nil {
		o.OnRefusal = func(Refusal) {}
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 250 * time.Millisecond
	}
	l := &Limiter{store: store{o.DB}, shared: o.Shared, identify: o.Identify, onRefusal: o.OnRefusal, log: o.Logger, now: o.Now,
		tokens: map[string]*tokenState{}, stop: make(chan struct{}), done: make(chan struct{})}
	s, err := l.store.load(ctx)
	if err != nil {
		return nil, err
	}
	l.snap.Store(s)
	if o.SyncInterval < 0 {
		close(l.done)
		return l, nil
	}
	go l.loop(o.SyncInterval)
	return l, nil
}

// Close stops the sync loop after writing what was counted.
func (l *Limiter) Close() {
	if l == nil {
		return
	}
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Sync(ctx); err != nil {
		l.log.Warn("could not write the last byte counts", "err", err)
	}
}

func (l *Limiter) loop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.Sync(ctx); err != nil {
			l.log.Warn("token limits: sync with the database failed", "err", err)
		}
		cancel()
	}
}

// Sync writes the bytes counted since the last sync, reads back every
// node's totals, and reloads the limits if they changed.
func (l *Limiter) Sync(ctx context.Context) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	today := dayOf(l.now())
	if l.prunedDay != today {
		// Yesterday's counts are kept a day for the record, then dropped.
		if err := l.store.pruneUsage(ctx, today-1); err != nil {
			return err
		}
		l.prunedDay = today
	}
	if err := l.flush(ctx, today); err != nil {
		return err
	}
	v, err := l.store.version(ctx)
	if err != nil {
		return err
	}
	if v != l.snap.Load().version {
		return l.reload(ctx)
	}
	return nil
}

func (l *Limiter) reload(ctx context.Context) error {
	s, err := l.store.load(ctx)
	if err != nil {
		return err
	}
	l.snap.Store(s)
	return nil
}

func (l *Limiter) flush(ctx context.Context, today int64) error {
	l.mu.Lock()
	states := make([]*tokenState, 0, len(l.tokens))
	for _, st := range l.tokens {
		states = append(states, st)
	}
	l.mu.Unlock()
	if len(states) == 0 {
		return nil
	}
	add := map[string]usage{}
	for _, st := range states {
		st.mu.Lock()
		if st.day == today && st.pending != (usage{}) {
			st.flushing, st.pending = st.pending, usage{}
			add[st.name] = st.flushing
		}
		st.mu.Unlock()
	}
	var totals map[string]usage
	var err error
	if len(add) > 0 || l.shared {
		totals, err = l.store.addUsage(ctx, today, add)
	}
	for _, st := range states {
		st.mu.Lock()
		if st.day == today {
			if err != nil {
				// Counted again at the next sync.
				st.pending.pulled += st.flushing.pulled
				st.pending.pushed += st.flushing.pushed
			} else if totals != nil {
				st.base = totals[st.name]
			}
			st.flushing = usage{}
		}
		st.mu.Unlock()
	}
	return err
}

// state returns the token's state, with its counts of today.
func (l *Limiter) state(ctx context.Context, token string, now time.Time) (*tokenState, error) {
	l.mu.Lock()
	st := l.tokens[token]
	if st == nil {
		st = &tokenState{name: token}
		l.tokens[token] = st
	}
	l.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	today := dayOf(now)
	if st.day != today {
		// A new day: what was pending belongs to the last one.
		st.day, st.loaded, st.base, st.pending, st.flushing = today, false, usage{}, usage{}, usage{}
	}
	if !st.loaded {
		u, err := l.store.usageOf(ctx, today)
		if err != nil {
			return nil, err
		}
		st.base, st.loaded = u[token], true
	}
	return st, nil
}

// Admit implements registry.Limiter: it counts the request against the
// caller's limits and returns the writer to answer through (counting bytes
// when the token has byte limits) and what to call when it is answered.
func (l *Limiter) Admit(w http.ResponseWriter, r *http.Request, c registry.Caller) (http.ResponseWriter, func(), error) {
	s := l.snap.Load()
	if s.empty() {
		return w, nil, nil
	}
	id, ok := l.identify(c)
	if !ok || id.Kind != auth.KindToken {
		return w, nil, nil
	}
	eff, ok := s.effective(id.Name, id.Policy.Name())
	if !ok {
		return w, nil, nil
	}
	now := l.now()
	st, err := l.state(r.Context(), id.Name, now)
	if err != nil {
		// A limit bounds cost, it guards nothing: a database that cannot
		// be read must not stop the tokens that have one.
		l.warn("read byte counts", err)
		return w, nil, nil
	}
	if eff.Rate > 0 {
		if ok, wait := l.take(r.Context(), st, eff, now); !ok {
			reason := fmt.Sprintf("over its rate limit of %s (burst %d)", FormatRate(eff.Rate), eff.Burst)
			return w, nil, l.refuse(r, id.Name, LimitRate, reason, wait)
		}
	}
	m := &meter{l: l, st: st, token: id.Name, eff: eff, r: r}
	switch r.Method {
	case http.MethodGet:
		if eff.PullBytes <= 0 {
			return w, nil, nil
		}
		if err := m.check(LimitPull); err != nil {
			return w, nil, err
		}
		pw := &pullWriter{ResponseWriter: w, m: m}
		return pw, pw.finish, nil
	case http.MethodPut, http.MethodPatch, http.MethodPost:
		if eff.PushBytes <= 0 || r.Body == nil || r.Body == http.NoBody {
			return w, nil, nil
		}
		if r.ContentLength > 0 {
			if err := m.reserve(LimitPush, r.ContentLength); err != nil {
				return w, nil, err
			}
		} else if err := m.check(LimitPush); err != nil {
			return w, nil, err
		}
		pb := &pushBody{ReadCloser: r.Body, m: m, reserved: max(r.ContentLength, 0)}
		r.Body = pb
		return w, pb.finish, nil
	}
	return w, nil, nil
}

// take takes one request from the token's bucket.
func (l *Limiter) take(ctx context.Context, st *tokenState, eff Effective, now time.Time) (bool, time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !l.shared {
		return st.local.take(now, eff.Rate, eff.Burst)
	}
	if st.leased > 0 && now.Sub(st.leasedAt) < leaseTTL {
		st.leased--
		return true, 0
	}
	if now.Before(st.emptyUntil) {
		return false, st.emptyUntil.Sub(now)
	}
	got, wait, err := l.store.lease(ctx, st.name, now, eff.Rate, eff.Burst, leaseSize(eff.Rate, eff.Burst))
	if err != nil {
		l.warn("lease requests", err)
		return true, 0
	}
	if got == 0 {
		st.leased, st.emptyUntil = 0, now.Add(wait)
		return false, wait
	}
	st.leased, st.leasedAt = got-1, now
	return true, 0
}

// warn logs a database failure at most once a minute.
func (l *Limiter) warn(what string, err error) {
	now := l.now().Unix()
	if last := l.warned.Load(); now-last >= 60 && l.warned.CompareAndSwap(last, now) {
		l.log.Warn("token limits: could not "+what+"; requests are admitted meanwhile", "err", err)
	}
}

// refuse builds the 429 and reports it.
func (l *Limiter) refuse(r *http.Request, token, limit, reason string, wait time.Duration) error {
	l.onRefusal(Refusal{Token: token, Limit: limit, Reason: reason, Request: r})
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	return &registry.Error{Code: registry.CodeTooManyRequests,
		Message: fmt.Sprintf("token %q is %s; retry after %s", token, reason, formatWait(wait)),
		Detail:  map[string]any{"limit": limit, "retryAfterSeconds": secs},
		Header:  http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}}
}

// meter counts one request's bytes against its token's day.
type meter struct {
	l     *Limiter
	st    *tokenState
	token string
	eff   Effective
	r     *http.Request
}

func (m *meter) limitOf(which string) int64 {
	if which == LimitPull {
		return m.eff.PullBytes
	}
	return m.eff.PushBytes
}

func pick2(u usage, which string) int64 {
	if which == LimitPull {
		return u.pulled
	}
	return u.pushed
}

func (m *meter) overReason(which string) string {
	verb := "pushed"
	if which == LimitPull {
		verb = "pulled"
	}
	return fmt.Sprintf("over its limit of %s %s per day (UTC)", FormatBytes(m.limitOf(which)), verb)
}

// check refuses when the day's bytes already reach the limit.
func (m *meter) check(which string) error {
	m.st.mu.Lock()
	used := pick2(m.st.used(), which)
	m.st.mu.Unlock()
	if used >= m.limitOf(which) {
		return m.l.refuse(m.r, m.token, which, m.overReason(which), untilNextDay(m.l.now()))
	}
	return nil
}

// reserve promises n bytes to a request of known size, or refuses it
// before it starts when they do not fit in what is left of the day.
func (m *meter) reserve(which string, n int64) error {
	m.st.mu.Lock()
	left := m.limitOf(which) - pick2(m.st.used(), which)
	if n <= left {
		if which == LimitPull {
			m.st.reserved.pulled += n
		} else {
			m.st.reserved.pushed += n
		}
		m.st.mu.Unlock()
		return nil
	}
	m.st.mu.Unlock()
	verb := "push"
	if which == LimitPull {
		verb = "pull"
	}
	reason := m.overReason(which)
	if left > 0 {
		reason = fmt.Sprintf("allowed to %s %s more today (UTC), less than the %s of this request (its limit is %s per day)",
			verb, FormatBytes(left), FormatBytes(n), FormatBytes(m.limitOf(which)))
	}
	return m.l.refuse(m.r, m.token, which, reason, untilNextDay(m.l.now()))
}

// settle replaces a reservation by what was actually moved.
func (m *meter) settle(which string, reserved, moved int64) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	if m.st.day != dayOf(m.l.now()) {
		reserved = 0 // the new day's counts started without it
	}
	if which == LimitPull {
		m.st.reserved.pulled -= reserved
		m.st.pending.pulled += moved
	} else {
		m.st.reserved.pushed -= reserved
		m.st.pending.pushed += moved
	}
}

// left is what the day still allows of which, counting nothing reserved
// for the caller itself.
func (m *meter) left(which string) int64 {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	return m.limitOf(which) - pick2(m.st.used(), which)
}

var errRefused = errors.New("the response was refused for a token limit")

// pullWriter counts what a GET sends. A response of known size is
// reserved when its header is written, and answered 429 instead when it
// does not fit.
type pullWriter struct {
	http.ResponseWriter
	m        *meter
	status   int
	reserved int64
	sent     int64
	refused  bool
}

// The headers of the answer the handler meant, which a refusal drops.
var contentHeaders = []string{"Content-Length", "Content-Type", "Content-Range", "Accept-Ranges", "Docker-Content-Digest", "Etag", "Last-Modified", "Content-Encoding"}

func (w *pullWriter) WriteHeader(code int) {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.status = code
	if code >= 200 && code < 300 {
		if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && n > 0 {
			if err := w.m.reserve(LimitPull, n); err != nil {
				w.refused = true
				for _, h := range contentHeaders {
					w.Header().Del(h)
				}
				registry.WriteError(w.ResponseWriter, err.(*registry.Error))
				return
			}
			w.reserved = n
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *pullWriter) counting() bool { return w.status >= 200 && w.status < 300 }

func (w *pullWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.refused {
		return 0, errRefused
	}
	n, err := w.ResponseWriter.Write(p)
	if w.counting() {
		w.sent += int64(n)
	}
	return n, err
}

// ReadFrom keeps sendfile: the source goes to the connection as it is.
func (w *pullWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.refused {
		return 0, errRefused
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	var n int64
	var err error
	if ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, src)
	}
	if w.counting() {
		w.sent += n
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *pullWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *pullWriter) finish() { w.m.settle(LimitPull, w.reserved, w.sent) }

type writerOnly struct{ io.Writer }

// pushBody counts what a request body brings. A body of known size was
// reserved at admission; one of unknown size is cut where it would cross
// the day's limit.
type pushBody struct {
	io.ReadCloser
	m        *meter
	reserved int64
	read     int64
}

func (b *pushBody) Read(p []byte) (int, error) {
	if b.reserved == 0 {
		left := b.m.left(LimitPush)
		if left <= 0 {
			return 0, b.m.l.refuse(b.m.r, b.m.token, LimitPush, b.m.overReason(LimitPush), untilNextDay(b.m.l.now()))
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if b.reserved == 0 && n > 0 {
		b.m.settle(LimitPush, 0, int64(n))
	}
	return n, err
}

func (b *pushBody) finish() {
	if b.reserved > 0 {
		b.m.settle(LimitPush, b.reserved, b.read)
	}
}
