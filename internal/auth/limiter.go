package auth

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// LimiterConfig configures a Limiter. Zero fields take the defaults.
type LimiterConfig struct {
	// Threshold is how many consecutive failures a key may have before
	// attempts are delayed; 5 by default.
	Threshold int
	// AddressThreshold is the same for a client address; 10 × Threshold
	// by default. It is higher because many honest clients share one
	// address (CI runners, NAT): a few misconfigured jobs must not lock
	// out the rest, while guessing many usernames from one address is
	// still slowed.
	AddressThreshold int
	// BaseDelay is the first delay; each further failure doubles it, up to
	// MaxDelay. 1s and 5m by default.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// ForgetAfter is how long after its last failure a key is forgotten,
	// so failures decay and nobody is locked out for good; 15 minutes by
	// default, and never less than twice MaxDelay, so that an attacker who
	// waits out the longest delay still finds the count in place.
	ForgetAfter time.Duration
	// MaxEntries bounds memory: beyond it the least recently failed key is
	// evicted. 100,000 by default (some 20 MB).
	MaxEntries int
	// Now returns the current time; time.Now if nil. Tests inject a clock.
	Now func() time.Time
}

// Limiter slows down password guessing. It counts consecutive failed logins
// per username and, separately, per client address. Once a key has
// Threshold failures, each further failure opens a window (1s, 2s, 4s, ...
// up to 5 minutes) in which attempts for that key are refused with a
// Retry-After, without checking the password: the registry answers 429
// TOOMANYREQUESTS. A successful login resets its username's count; counts
// also decay, being forgotten ForgetAfter after the key's last failure.
//
// The legitimate holder of a correct password is therefore never locked out
// for good: at worst they wait out one window and then log in, and their
// success clears the username. A refused attempt is not checked, so the
// refusal cannot be used as an oracle, and it does not count as a failure,
// so refused retries do not lengthen the window.
//
// The address count is deliberately not reset by a success: an attacker
// holding one valid credential must not be able to clear their address's
// count between guesses at other accounts. IPv6 addresses are counted per
// /64, the block one customer usually controls.
//
// It is safe for concurrent use and needs no background goroutine: expired
// entries are dropped as they are met.
type Limiter struct {
	cfg LimiterConfig

	mu      sync.Mutex
	entries map[string]*list.Element // of *limiterEntry
	lru     *list.List               // front: most recent failure

	guards *[guardStripes]sync.Mutex // see Guard
}

type limiterEntry struct {
	key      string
	failures int
	last     time.Time // the latest failure
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
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, entries: make(map[string]*list.Element), lru: list.New(), guards: new([guardStripes]sync.Mutex)}
}

// Allow reports whether a login attempt for username from address ip may
// go ahead. If not, retryAfter is how long to wait, rounded up to whole
// seconds for the Retry-After header. Either argument may be empty to skip
// that key. ip is the client address as in http.Request.RemoteAddr (with or
// without a port).
func (l *Limiter) Allow(username, ip string) (ok bool, retryAfter time.Duration) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range limiterKeys(username, ip) {
		if e := l.get(k, now); e != nil && now.Before(e.until) {
			retryAfter = max(retryAfter, e.until.Sub(now))
		}
	}
	if retryAfter > 0 {
		return false, (retryAfter + time.Second - 1).Truncate(time.Second)
	}
	return true, 0
}

// Fail records a failed login for username from ip.
func (l *Limiter) Fail(username, ip string) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range limiterKeys(username, ip) {
		if k == "" {
			continue
		}
		threshold := l.cfg.Threshold
		if i == 1 {
			threshold = l.cfg.AddressThreshold
		}
		e := l.get(k, now)
		if e == nil {
			e = l.insert(k)
		} else {
			l.lru.MoveToFront(l.entries[k])
		}
		e.failures++
		e.last = now
		if n := e.failures - threshold; n >= 0 {
			e.until = now.Add(l.delay(n))
		}
	}
}

// Succeed records a successful login for username, clearing its count.
func (l *Limiter) Succeed(username string) {
	k := limiterKeys(username, "")[0]
	if k == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[k]; ok {
		l.remove(el)
	}
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

// get returns the live entry for k, forgetting it (and any other stale
// entries at the back of the list) if it has decayed.
func (l *Limiter) get(k string, now time.Time) *limiterEntry {
	for back := l.lru.Back(); back != nil && l.stale(back.Value.(*limiterEntry), now); back = l.lru.Back() {
		l.remove(back)
	}
	if k == "" {
		return nil
	}
	el, ok := l.entries[k]
	if !ok {
		return nil
	}
	e := el.Value.(*limiterEntry)
	if l.stale(e, now) {
		l.remove(el)
		return nil
	}
	return e
}

func (l *Limiter) stale(e *limiterEntry, now time.Time) bool {
	return !now.Before(e.last.Add(l.cfg.ForgetAfter))
}

func (l *Limiter) insert(k string) *limiterEntry {
	for l.lru.Len() >= l.cfg.MaxEntries {
		l.remove(l.lru.Back())
	}
	e := &limiterEntry{key: k}
	l.entries[k] = l.lru.PushFront(e)
	return e
}

func (l *Limiter) remove(el *list.Element) {
	delete(l.entries, el.Value.(*limiterEntry).key)
	l.lru.Remove(el)
}

// Len returns the number of keys being tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// limiterKeys returns the username key and the address key, "" for an
// empty argument. The prefixes keep a username from colliding with an
// address.
func limiterKeys(username, ip string) [2]string {
	var k [2]string
	if username != "" {
		k[0] = "user:" + username
	}
	if ip != "" {
		k[1] = "addr:" + normalizeAddr(ip)
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

// guardStripes is how many locks Guard spreads usernames over.
const guardStripes = 256

// Guard serialises the attempts for one username, so that Allow, the
// password check and Fail happen as one step: a burst of concurrent guesses
// is then counted as it arrives, and only Threshold of them are ever
// checked. Checking a token's password takes microseconds, so honest
// clients logging in together barely wait. Call the returned function when
// the attempt is recorded.
func (l *Limiter) Guard(username string) (unlock func()) {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(username); i++ {
		h = (h ^ uint32(username[i])) * 16777619
	}
	m := &l.guards[h%guardStripes]
	m.Lock()
	return m.Unlock
}
