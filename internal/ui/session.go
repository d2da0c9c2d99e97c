package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"
)

// maxUserSessions is how many sessions one user may have; a new sign-in
// beyond it ends that user's least recently used session, never anyone
// else's. Sessions idle out after an hour, so only a script signing in
// over and over meets it.
const maxUserSessions = 32

// maxSessions bounds memory. It is far above what one user can hold, so a
// user who signs in over and over cannot push other users' sessions out;
// if many users together reach it, the session dropped is the least
// recently used one of those who hold the most.
const maxSessions = 100_000

// maxNonces is how many used one-time form nonces a session remembers.
const maxNonces = 32

// session is a signed-in user's state. It never holds a secret of the
// registry: generated passwords are rendered into the one response that
// generated them and nowhere else.
type session struct {
	key      [32]byte // sessionKey of its id
	user     string
	gen      uint64 // the user's generation at sign-in: a password change ends the session
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    flash
	nonces   []string // one-time form nonces already used
}

// flash is a message shown once on the next page, after a redirect.
type flash struct {
	Kind string // "ok" or "error"
	Msg  string
}

// sessions is the in-memory session store, keyed by the SHA-256 of the
// session ID, so that the store (a heap dump, say) does not hold anything a
// browser could present.
type sessions struct {
	ttl, idle time.Duration
	now       func() time.Time

	// shared, when set, keeps the sessions in the database instead, for
	// several nodes; the maps below are then unused.
	shared *sharedSessions

	mu        sync.Mutex
	m         map[[32]byte]*session
	byUser    map[string]map[[32]byte]*session // the same sessions, by user
	lastSweep time.Time
}

func newSessions(ttl, idle time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, idle: idle, now: now, m: make(map[[32]byte]*session), byUser: make(map[string]map[[32]byte]*session)}
}

// randomString returns n random bytes from crypto/rand, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// create starts a session for user and returns its ID (256 random bits).
func (s *sessions) create(user string, gen uint64) (string, *session, error) {
	id := randomString(32)
	now := s.now()
	sess := &session{key: sessionKey(id), user: user, gen: gen, csrf: randomString(32), created: now, lastSeen: now}
	if s.shared != nil {
		return id, sess, s.shared.create(s, id, sess)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.byUser[user]) >= maxUserSessions {
		s.dropOldestLocked(user)
	}
	if len(s.m) >= maxSessions {
		s.dropBusiestLocked()
	}
	s.addLocked(sessionKey(id), sess)
	return id, sess, nil
}

func (s *sessions) addLocked(k [32]byte, sess *session) {
	s.m[k] = sess
	m := s.byUser[sess.user]
	if m == nil {
		m = make(map[[32]byte]*session)
		s.byUser[sess.user] = m
	}
	m[k] = sess
}

func (s *sessions) removeLocked(k [32]byte) {
	sess := s.m[k]
	if sess == nil {
		return
	}
	delete(s.m, k)
	if m := s.byUser[sess.user]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.byUser, sess.user)
		}
	}
}

// dropBusiestLocked ends the least recently used session among those of
// the users holding the most sessions.
func (s *sessions) dropBusiestLocked() {
	most := 0
	for _, m := range s.byUser {
		most = max(most, len(m))
	}
	var oldest [32]byte
	var t time.Time
	for k, v := range s.m {
		if len(s.byUser[v.user]) == most && (t.IsZero() || v.lastSeen.Before(t)) {
			oldest, t = k, v.lastSeen
		}
	}
	if !t.IsZero() {
		s.removeLocked(oldest)
	}
}

// dropOldestLocked ends user's least recently used session.
func (s *sessions) dropOldestLocked(user string) {
	var oldest [32]byte
	var t time.Time
	for k, v := range s.byUser[user] {
		if t.IsZero() || v.lastSeen.Before(t) {
			oldest, t = k, v.lastSeen
		}
	}
	if !t.IsZero() {
		s.removeLocked(oldest)
	}
}

// errSessionExpired tells an expired session from none at all, so that the
// sign-in page can say why it is shown.
var errSessionExpired = errors.New("session expired")

// get returns the live session with ID id and marks it used.
func (s *sessions) get(id string) (*session, error) {
	if id == "" {
		return nil, http.ErrNoCookie
	}
	if s.shared != nil {
		return s.shared.get(s, id)
	}
	k := sessionKey(id)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[k]
	if sess == nil {
		return nil, http.ErrNoCookie
	}
	if s.expired(sess, now) {
		s.removeLocked(k)
		return nil, errSessionExpired
	}
	sess.lastSeen = now
	return sess, nil
}

// generation returns the user generation a session was begun (or last
// confirmed) under.
func (s *sessions) generation(sess *session) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sess.gen
}

// setGeneration confirms a session under a new user generation: the
// session in which the user changed their own password lives on.
func (s *sessions) setGeneration(sess *session, gen uint64) {
	if s.shared != nil {
		s.shared.setGeneration(sess, gen)
	}
	s.mu.Lock()
	sess.gen = gen
	s.mu.Unlock()
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.created) >= s.ttl || now.Sub(sess.lastSeen) >= s.idle
}

// delete ends the session with ID id.
func (s *sessions) delete(id string) {
	if s.shared != nil {
		s.shared.delete(sessionKey(id))
		return
	}
	s.mu.Lock()
	s.removeLocked(sessionKey(id))
	s.mu.Unlock()
}

// deleteUser ends every session of user except keep (which may be nil).
func (s *sessions) deleteUser(user string, keep *session) {
	if s.shared != nil {
		s.shared.deleteUser(user, keep)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.byUser[user] {
		if v != keep {
			s.removeLocked(k)
		}
	}
}

// sweepLocked drops expired sessions, at most once a minute.
func (s *sessions) sweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for k, v := range s.m {
		if s.expired(v, now) {
			s.removeLocked(k)
		}
	}
}

func (s *sessions) setFlash(sess *session, kind, msg string) {
	if s.shared != nil {
		s.shared.setFlash(sess, flash{Kind: kind, Msg: msg})
	}
	s.mu.Lock()
	sess.flash = flash{Kind: kind, Msg: msg}
	s.mu.Unlock()
}

func (s *sessions) popFlash(sess *session) flash {
	s.mu.Lock()
	f := sess.flash
	sess.flash = flash{}
	s.mu.Unlock()
	if s.shared != nil && f != (flash{}) {
		s.shared.setFlash(sess, flash{})
	}
	return f
}

// useNonce marks a one-time form nonce used; it reports false if it was
// used before (the form was submitted twice, as by reloading the page that
// a POST rendered).
func (s *sessions) useNonce(sess *session, nonce string) bool {
	if nonce == "" {
		return true
	}
	if s.shared != nil {
		return s.shared.useNonce(sess, nonce)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range sess.nonces {
		if n == nonce {
			return false
		}
	}
	sess.nonces = append(sess.nonces, nonce)
	if len(sess.nonces) > maxNonces {
		sess.nonces = sess.nonces[len(sess.nonces)-maxNonces:]
	}
	return true
}

// count returns the number of sessions (for tests).
func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// tokenEqual compares a submitted CSRF token with the expected one in
// constant time.
func tokenEqual(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Cookie names. Under TLS the session cookie takes the __Host- prefix,
// which browsers accept only with Secure, Path=/ and no Domain, so that no
// sibling host can set or shadow it.
func (h *Handler) sessionCookieName() string {
	if h.secure {
		return "__Host-berth_session"
	}
	return "berth_session"
}

func (h *Handler) signinCookieName() string {
	if h.secure {
		return "__Host-berth_signin"
	}
	return "berth_signin"
}

func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode})
}

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}
