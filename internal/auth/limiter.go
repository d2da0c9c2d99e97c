package auth

import (
	"container/list"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// LimiterConfig configures a Limiter. Zero fields take the defaults.
type LimiterConfig struct {
	// Threshold is how many failures a username may have from one client
	// address before that client's attempts are refused, and how many it
	// may have from all addresses together before it is under pressure
	// (see Limiter); 5 by default.
	Threshold int
	// AddressThreshold is the same for a client address, whatever the
	// usernames; 10 × Threshold by default. It is higher because many
	// honest clients share one address (CI runners, NAT): a few
	// misconfigured jobs must not lock out the rest, while guessing many
	// usernames from one address is still slowed.
	AddressThreshold int
	// BaseDelay is the first refusal window; each further failure doubles
	// it, up to MaxDelay. 1s and 5m by default.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// ForgetAfter is how long after its last failure a count is forgotten,
	// so failures decay and nobody is locked out for good; 15 minutes by
	// default, and never less than twice MaxDelay, so that an attacker who
	// waits out the longest delay still finds the count in place.
	ForgetAfter time.Duration
	// SlowDown is how long an attempt for a username under pressure waits
	// before it is checked when it comes from an address that has neither
	// failed nor logged in as that username; 1s by default.
	SlowDown time.Duration
	// SlowChecks is how many password checks of such slowed-down attempts
	// run at once, whatever their usernames (one at a time per username);
	// max(1, GOMAXPROCS/2) by default, fewer than the slow hashes the
	// identity service runs at once (max(2, GOMAXPROCS)), so that guesses
	// from ever new addresses for many usernames still leave room for the
	// others' checks.
	SlowChecks int
	// KnownFor is how long an address is remembered as one a username
	// logged in from; 30 days by default.
	KnownFor time.Duration
	// MaxEntries bounds memory: each of the two tables (failure counts,
	// known addresses) holds at most this many keys, beyond which the
	// least recently updated is evicted. 100,000 by default (some 20 MB
	// each).
	MaxEntries int
	// Now returns the current time; time.Now if nil. Sleep waits;
	// time.Sleep if nil. Tests inject both.
	Now   func() time.Time
	Sleep func(time.Duration)
	// Store, when set, keeps the counts there instead of in memory, so
	// that several nodes count together (MaxEntries then does not apply).
	Store LimiterStore
}

// LimiterStore keeps a Limiter's counts where several nodes share them.
// Keys are opaque strings; a failure count is live while its last failure
// is after the since its caller gives.
type LimiterStore interface {
	// Failures returns the live counts of keys ("" keys are skipped).
	Failures(keys []string, since time.Time) (map[string]LimitEntry, error)
	// Known reports whether key had a success after since.
	Known(key string, since time.Time) (bool, error)
	// Fail adds a failure to key at now, starting afresh from a count
	// that is not live at since; once the count reaches threshold, the
	// key is refused until now plus delay(count - threshold).
	Fail(key string, now, since time.Time, threshold int, delay func(n int) time.Duration) error
	// Succeed forgets key's failures and records a success at now.
	Succeed(key string, now time.Time) error
}

// LimitEntry is a stored failure count.
type LimitEntry struct {
	Failures int
	Last     time.Time
	Until    time.Time
}

// Limiter slows down password guessing without letting anyone lock out the
// holder of the right password. It counts failed logins per (username,
// client address), per client address, and per username:
//
//   - A (username, address) pair with Threshold failures, or an address
//     with AddressThreshold, is refused: each further failure opens a
//     window (1s, 2s, 4s, ... up to 5 minutes) in which its attempts are
//     refused with a Retry-After, without checking the password; the
//     registry answers 429 TOOMANYREQUESTS.
//   - A username with Threshold failures from all addresses together is
//     under pressure, with a window of its own; it never refuses an
//     address that has not failed, or else anyone could keep a known
//     username locked out by guessing from rotating addresses. While the
//     window is open, an address that has failed (for this username or
//     any) is refused, unless the username logged in from it before; one
//     that has not failed and is not known waits SlowDown, then is
//     checked, one such check at a time per username and SlowChecks in
//     all, so that guesses from ever new addresses cannot fill the
//     password checks that the right password waits for; a known one
//     goes ahead at once.
//
// A success clears its (username, address) count and remembers the
// address as known for the username. It does not reset the address count,
// so that an attacker holding one valid credential cannot clear their
// address between guesses at other accounts, nor the username's, so that
// an attacker cannot reset the pressure by logging in to an account of
// their own. Counts decay, being forgotten ForgetAfter after the last
// failure. A refused attempt is not checked, so the refusal cannot be used
// as an oracle, and it does not count as a failure, so refused retries do
// not lengthen the window. IPv6 addresses are counted per /64, the block
// one customer usually controls.
//
// It is safe for concurrent use and needs no background goroutine: expired
// entries are dropped as they are met.
type Limiter struct {
	cfg LimiterConfig

	mu    sync.Mutex
	fails *lruTable // of failure counts
	known *lruTable // username and address of successful logins

	clients keyedMutex // see Guard
	// users queues the checks of a username under pressure from
	// addresses it does not know; queued counts the attempts waiting.
	users     keyedMutex
	slowSlots chan struct{} // SlowChecks of them
	queued    atomic.Int64
}

type limiterEntry struct {
	key      string
	failures int
	last     time.Time // the latest failure (or success, in known)
	until    time.Time // attempts are refused before this
}

// NewLimiter returns a Limiter with cfg's settings.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Threshold <= 0 {
		cfg.Threshold = 5
	}
	if cfg.AddressThreshold <= 0 {
		cfg.AddressThreshold = 10 * cfg.Threshold
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = time.Second
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 5 * time.Minute
	}
	if cfg.MaxDelay < cfg.BaseDelay {
		cfg.MaxDelay = cfg.BaseDelay
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 15 * time.Minute
	}
	if cfg.ForgetAfter < 2*cfg.MaxDelay {
		cfg.ForgetAfter = 2 * cfg.MaxDelay
	}
	if cfg.SlowDown <= 0 {
		cfg.SlowDown = time.Second
	}
	if cfg.SlowChecks <= 0 {
		cfg.SlowChecks = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.KnownFor <= 0 {
		cfg.KnownFor = 30 * 24 * time.Hour
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = time.Sleep
	}
	return &Limiter{cfg: cfg,
		fails:     newLRUTable(cfg.ForgetAfter, cfg.MaxEntries),
		known:     newLRUTable(cfg.KnownFor, cfg.MaxEntries),
		slowSlots: make(chan struct{}, cfg.SlowChecks)}
}

// Allow reports whether a login attempt for username from address ip may
// go ahead; it may first wait SlowDown (see Limiter). If not, retryAfter is
// how long to wait, rounded up to whole seconds for the Retry-After header.
// ip is the client address as in http.Request.RemoteAddr (with or without
// a port); without one, the username's window refuses every attempt, as
// the client cannot be told apart.
func (l *Limiter) Allow(username, ip string) (ok bool, retryAfter time.Duration) {
	retryAfter, slow := l.decide(limiterKeys(username, ip))
	if retryAfter > 0 {
		return false, retryAfter
	}
	if slow {
		l.cfg.Sleep(l.cfg.SlowDown)
	}
	return true, 0
}

// decide returns how long an attempt for k must wait, rounded up to whole
// seconds (0: it may go ahead), and whether it is to be slowed down first.
func (l *Limiter) decide(k limiterKey) (retryAfter time.Duration, slow bool) {
	now := l.cfg.Now()
	if l.cfg.Store != nil {
		retryAfter, slow = l.decideShared(k, now)
	} else {
		retryAfter, slow = l.decideLocal(k, now)
	}
	if retryAfter > 0 {
		return (retryAfter + time.Second - 1).Truncate(time.Second), false
	}
	return 0, slow
}

func (l *Limiter) decideLocal(k limiterKey, now time.Time) (retryAfter time.Duration, slow bool) {
	l.mu.Lock()
	l.fails.sweep(now)
	client, addr, user := l.fails.get(k.client, now), l.fails.get(k.addr, now), l.fails.get(k.user, now)
	for _, e := range []*limiterEntry{client, addr} {
		if e != nil && now.Before(e.until) {
			retryAfter = max(retryAfter, e.until.Sub(now))
		}
	}
	if retryAfter == 0 && user != nil && now.Before(user.until) && l.known.get(k.client, now) == nil {
		if client != nil || addr != nil || k.addr == "" {
			retryAfter = user.until.Sub(now)
		} else {
			slow = true
		}
	}
	l.mu.Unlock()
	return retryAfter, slow
}

// decideShared is decideLocal with the counts in the store. A store that
// cannot be read refuses the attempt for a second: better than letting
// guesses through uncounted.
func (l *Limiter) decideShared(k limiterKey, now time.Time) (retryAfter time.Duration, slow bool) {
	st := l.cfg.Store
	es, err := st.Failures([]string{k.client, k.addr, k.user}, now.Add(-l.cfg.ForgetAfter))
	if err != nil {
		return time.Second, false
	}
	entry := func(key string) *limiterEntry {
		e, ok := es[key]
		if key == "" || !ok {
			return nil
		}
		return &limiterEntry{key: key, failures: e.Failures, last: e.Last, until: e.Until}
	}
	client, addr, user := entry(k.client), entry(k.addr), entry(k.user)
	for _, e := range []*limiterEntry{client, addr} {
		if e != nil && now.Before(e.until) {
			retryAfter = max(retryAfter, e.until.Sub(now))
		}
	}
	if retryAfter == 0 && user != nil && now.Before(user.until) {
		known := false
		if k.client != "" {
			if known, err = st.Known(k.client, now.Add(-l.cfg.KnownFor)); err != nil {
				return time.Second, false
			}
		}
		if !known {
			if client != nil || addr != nil || k.addr == "" {
				retryAfter = user.until.Sub(now)
			} else {
				slow = true
			}
		}
	}
	return retryAfter, slow
}

// Fail records a failed login for username from ip.
func (l *Limiter) Fail(username, ip string) {
	now := l.cfg.Now()
	k := limiterKeys(username, ip)
	if l.cfg.Store != nil {
		for _, c := range []struct {
			key       string
			threshold int
		}{{k.client, l.cfg.Threshold}, {k.addr, l.cfg.AddressThreshold}, {k.user, l.cfg.Threshold}} {
			if c.key != "" {
				// A count that cannot be written is lost; the refusals
				// of the identity service cover a database that is down.
				_ = l.cfg.Store.Fail(c.key, now, now.Add(-l.cfg.ForgetAfter), c.threshold, l.delay)
			}
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails.sweep(now)
	for _, c := range []struct {
		key       string
		threshold int
	}{{k.client, l.cfg.Threshold}, {k.addr, l.cfg.AddressThreshold}, {k.user, l.cfg.Threshold}} {
		if c.key == "" {
			continue
		}
		e := l.fails.touch(c.key, now)
		e.failures++
		if n := e.failures - c.threshold; n >= 0 {
			e.until = now.Add(l.delay(n))
		}
	}
}

// Succeed records a successful login for username from ip: it clears the
// pair's count and remembers ip as known for username.
func (l *Limiter) Succeed(username, ip string) {
	now := l.cfg.Now()
	k := limiterKeys(username, ip)
	if k.client == "" {
		return
	}
	if l.cfg.Store != nil {
		_ = l.cfg.Store.Succeed(k.client, now)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails.delete(k.client)
	l.known.sweep(now)
	l.known.touch(k.client, now)
}

// delay returns the window after the (n+1)-th failure beyond the threshold:
// BaseDelay doubled n times, capped at MaxDelay.
func (l *Limiter) delay(n int) time.Duration {
	d := l.cfg.BaseDelay
	for ; n > 0 && d < l.cfg.MaxDelay; n-- {
		d *= 2
	}
	return min(d, l.cfg.MaxDelay)
}

// Len returns the number of failure counts being tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fails.lru.Len()
}

// lruTable holds entries that expire ttl after their last update, at most
// max of them, evicting the least recently updated beyond that.
type lruTable struct {
	ttl     time.Duration
	max     int
	entries map[string]*list.Element // of *limiterEntry
	lru     *list.List               // front: most recently updated
}

func newLRUTable(ttl time.Duration, max int) *lruTable {
	return &lruTable{ttl: ttl, max: max, entries: make(map[string]*list.Element), lru: list.New()}
}

// sweep drops the stale entries at the back of the list.
func (t *lruTable) sweep(now time.Time) {
	for back := t.lru.Back(); back != nil && t.stale(back.Value.(*limiterEntry), now); back = t.lru.Back() {
		t.remove(back)
	}
}

// get returns the live entry for k, forgetting it if it has decayed.
func (t *lruTable) get(k string, now time.Time) *limiterEntry {
	if k == "" {
		return nil
	}
	el, ok := t.entries[k]
	if !ok {
		return nil
	}
	e := el.Value.(*limiterEntry)
	if t.stale(e, now) {
		t.remove(el)
		return nil
	}
	return e
}

// touch returns the live entry for k, created if need be, marked updated
// at now.
func (t *lruTable) touch(k string, now time.Time) *limiterEntry {
	e := t.get(k, now)
	if e == nil {
		for t.lru.Len() >= t.max {
			t.remove(t.lru.Back())
		}
		e = &limiterEntry{key: k}
		t.entries[k] = t.lru.PushFront(e)
	} else {
		t.lru.MoveToFront(t.entries[k])
	}
	e.last = now
	return e
}

func (t *lruTable) delete(k string) {
	if el, ok := t.entries[k]; ok {
		t.remove(el)
	}
}

func (t *lruTable) stale(e *limiterEntry, now time.Time) bool {
	return !now.Before(e.last.Add(t.ttl))
}

func (t *lruTable) remove(el *list.Element) {
	delete(t.entries, el.Value.(*limiterEntry).key)
	t.lru.Remove(el)
}

// limiterKey names what a Limiter counts; "" for what an empty argument
// leaves out.
type limiterKey struct {
	client string // username and address
	addr   string
	user   string
}

// limiterKeys returns the keys for username and ip. The prefixes keep a
// username from colliding with an address.
func limiterKeys(username, ip string) limiterKey {
	var k limiterKey
	if ip != "" {
		k.addr = "addr:" + normalizeAddr(ip)
	}
	if username != "" {
		k.user = "user:" + username
		if ip != "" {
			k.client = "client:" + normalizeAddr(ip) + "\x00" + username
		}
	}
	return k
}

// normalizeAddr reduces a client address to the unit that is counted: an
// IPv4 address, or the /64 of an IPv6 address. Anything unparsable is
// counted as given.
func normalizeAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return s
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// MaxUsernameLength is the longest username worth checking; a longer one is
// refused before it reaches the limiter, the audit log or a password check.
const MaxUsernameLength = 256

// Guard serialises the attempts of one client (username and address), so
// that Allow, the password check and Fail happen as one step: a burst of
// concurrent guesses from one address is then counted as it arrives, and
// only Threshold of them are ever checked. Each client has a lock of its
// own, so attempts from other addresses do not wait behind it and guesses
// from elsewhere cannot hold up the holder of the right password. Call the
// returned function when the attempt is recorded.
func (l *Limiter) Guard(username, ip string) (unlock func()) {
	return l.clients.lock(normalizeAddr(ip) + "\x00" + username)
}

// Queued returns how many attempts wait for their turn: those from
// addresses a username under pressure does not know, which are checked one
// at a time per username and SlowChecks at a time in all.
func (l *Limiter) Queued() int { return int(l.queued.Load()) }

// keyedMutex is a lock per key, kept only while someone holds it or waits
// for it, so that its memory is bounded by the attempts in progress.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*countedMutex
}

type countedMutex struct {
	sync.Mutex
	refs int // holders and waiters; guarded by keyedMutex.mu
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*countedMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &countedMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// len returns how many keys have a lock.
func (k *keyedMutex) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}

// LimitedError refuses a login attempt because of earlier failures.
type LimitedError struct {
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	secs := (e.RetryAfter + time.Second - 1) / time.Second
	return fmt.Sprintf("too many failed logins: retry in %d seconds", secs)
}

// Attempt is one password check under the limiter, with the steps every
// face takes, in this order: it waits for the client's attempt in progress
// (Guard); refuses at once with a *LimitedError if the username or address
// is held back (Allow); else runs check and records its outcome (Fail or
// Succeed) before the client's next attempt may start. An attempt to be
// slowed down waits SlowDown without the client's lock, then looks again,
// and waits for the username's turn (see Limiter). It returns check's
// error. The token endpoint, Basic credentials, the REST API's and the
// portal's password checks all call it, so that none can leave a step out.
func (l *Limiter) Attempt(username, ip string, check func() error) error {
	return l.AttemptVouched(username, ip, nil, check)
}

// AttemptVouched is Attempt with vouched, which reports without a slow
// hash whether the password is known to be right (a recently verified
// one): such an attempt is not slowed down or queued when the username is
// under pressure, as it cannot be a guess. It is still refused where
// Attempt refuses, and still checked.
func (l *Limiter) AttemptVouched(username, ip string, vouched func() bool, check func() error) error {
	k := limiterKeys(username, ip)
	unlock := l.Guard(username, ip)
	defer func() { unlock() }()
	wait, slow := l.decide(k)
	if slow && vouched != nil && vouched() {
		slow = false
	}
	if slow {
		// The client's other attempts may have failed meanwhile: decide
		// again.
		unlock()
		l.cfg.Sleep(l.cfg.SlowDown)
		unlock = l.Guard(username, ip)
		wait, slow = l.decide(k)
	}
	if wait > 0 {
		return &LimitedError{RetryAfter: wait}
	}
	if slow {
		l.queued.Add(1)
		release := l.users.lock(k.user)
		l.slowSlots <- struct{}{}
		l.queued.Add(-1)
		defer func() {
			<-l.slowSlots
			release()
		}()
	}
	if err := check(); err != nil {
		l.Fail(username, ip)
		return err
	}
	l.Succeed(username, ip)
	return nil
}
