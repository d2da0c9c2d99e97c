package identity

import (
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// AuthError says why a login failed, for the audit log; the client is told
// only that its credentials are not valid.
type AuthError struct {
	Reason string
}

func (e *AuthError) Error() string { return e.Reason }

// ErrAuth matches every *AuthError with errors.Is.
var ErrAuth = errors.New("authentication failed")

func (e *AuthError) Is(target error) bool { return target == ErrAuth }

func authErr(reason string) error { return &AuthError{Reason: reason} }

// dummyUserHash is checked for unknown usernames; nothing matches it. It is
// made on first use, as making it costs what checking it does.
var dummyUserHash = sync.OnceValue(func() string { return auth.HashUserPassword("berth: no such user") })

// Login is a successful authentication.
type Login struct {
	Identity auth.Identity
	// Subject is what an access token issued for this login names.
	Subject auth.Subject
}

// Authenticate checks a username and password against the admin user,
// tokens and users, in that order (names are unique across them).
func (s *Service) Authenticate(username, password string) (Login, error) {
	if username == "" || password == "" {
		return Login{}, authErr("empty username or password")
	}
	if err := s.feed.current(); err != nil {
		return Login{}, err
	}
	s.mu.RLock()
	var p *principal
	isAdmin := username == s.admin.name
	switch {
	case isAdmin:
		p = s.admin
	case s.tokens[username] != nil:
		p = s.tokens[username]
	case s.users[username] != nil:
		p = s.users[username]
	}
	if p == nil {
		s.mu.RUnlock()
		// As much work as for a token's wrong password, which is checked
		// against two slots before it pays the slow hash too.
		auth.MatchSecret(password, "", "")
		s.slowCheck(dummyUserHash(), password)
		return Login{}, authErr("unknown username")
	}
	if p.kind == auth.KindUser {
		hash, gen, enabled, id := p.userHash, p.generation, p.enabled, userIdentity(p)
		s.mu.RUnlock()
		return s.authenticateUser(p, hash, gen, enabled, id, password)
	}
	login, err := s.authenticateSlots(p, isAdmin, password)
	s.mu.RUnlock()
	if err != nil {
		// Token passwords are random and hashed fast, but a failure must
		// cost what one for a user or an unknown name does (one slow hash),
		// or the time of a wrong guess tells which names are tokens. A
		// right password stays fast.
		s.slowCheck(dummyUserHash(), password)
		return Login{}, err
	}
	return login, nil
}

// slowCheck checks a password against a user's argon2id hash. argon2id
// takes ~19 MiB and ~40 ms per check: the semaphore bounds how many run at
// once, so a burst of logins cannot exhaust memory.
func (s *Service) slowCheck(hash, password string) bool {
	s.argon <- struct{}{}
	defer func() { <-s.argon }()
	if s.verifyUser != nil {
		return s.verifyUser(hash, password)
	}
	return auth.VerifyUserPassword(hash, password)
}

// authenticateSlots checks password against the slots of p, a token or the
// admin user; s.mu is read-locked.
func (s *Service) authenticateSlots(p *principal, isAdmin bool, password string) (Login, error) {
	now := s.now()
	order := []string{SlotPassword1, SlotPassword2}
	if isAdmin {
		order = []string{SlotAdminPassword, SlotAdminPassword2}
	}
	hashes := make([]string, len(order))
	for i, n := range order {
		if sl := p.slots[n]; sl != nil && !sl.expired(now) {
			hashes[i] = sl.hash
		}
	}
	i, ok := auth.MatchSecret(password, hashes...)
	if !ok {
		// Say why, for the audit log: a password that matches an expired
		// slot is a different story from a wrong one.
		for _, n := range order {
			if sl := p.slots[n]; sl != nil && sl.expired(now) && auth.VerifySecret(sl.hash, password) {
				return Login{}, authErr(n + " expired")
			}
		}
		return Login{}, authErr("wrong password")
	}
	if !p.enabled {
		if isAdmin {
			return Login{}, authErr("admin user disabled")
		}
		return Login{}, authErr("token disabled")
	}
	sl := p.slots[order[i]]
	s.markUsed(p, sl)
	id := auth.Identity{Kind: p.kind, Name: p.name}
	if p.kind == auth.KindToken {
		if m := s.scopeMaps[p.scopeMap]; m != nil {
			id.Policy = m.policy
		}
	}
	return Login{Identity: id, Subject: auth.Subject{Kind: p.kind, Name: p.name, Slot: sl.name, Generation: p.generation, SlotSerial: sl.serial, Expiry: sl.expiresAt}}, nil
}

// userCacheTTL bounds how long a verified user password is remembered, so
// that Basic authentication straight on /v2/ does not pay argon2id on every
// request. Any change to the user (generation) voids the entry at once.
const userCacheTTL = 5 * time.Minute

type cachedLogin struct {
	generation uint64
	until      time.Time
}

// Remembered reports whether password is known to be username's without
// a slow hash: a user's password verified within userCacheTTL (and the user
// unchanged since), or a token's or the admin user's current password,
// which are hashed fast. The limiter lets such an attempt skip the queue of
// a username under pressure: it cannot be a guess, and saying so fast
// tells only the holder of the password that it is right.
func (s *Service) Remembered(username, password string) bool {
	if username == "" || password == "" {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	var p *principal
	order := []string{SlotPassword1, SlotPassword2}
	switch {
	case username == s.admin.name:
		p, order = s.admin, []string{SlotAdminPassword, SlotAdminPassword2}
	case s.tokens[username] != nil:
		p = s.tokens[username]
	case s.users[username] != nil:
		p = s.users[username]
		key := sha256.Sum256([]byte(s.opts.RegistryName + "\x00" + p.name + "\x00" + password))
		v, ok := s.userLogins.Load(key)
		return ok && v.(cachedLogin).generation == p.generation && now.Before(v.(cachedLogin).until)
	default:
		return false
	}
	hashes := make([]string, len(order))
	for i, n := range order {
		if sl := p.slots[n]; sl != nil && !sl.expired(now) {
			hashes[i] = sl.hash
		}
	}
	_, ok := auth.MatchSecret(password, hashes...)
	return ok
}

func (s *Service) authenticateUser(p *principal, hash string, gen uint64, enabled bool, id auth.Identity, password string) (Login, error) {
	key := sha256.Sum256([]byte(s.opts.RegistryName + "\x00" + p.name + "\x00" + password))
	now := s.now()
	cached := false
	if v, ok := s.userLogins.Load(key); ok {
		c := v.(cachedLogin)
		cached = c.generation == gen && now.Before(c.until)
	}
	if !cached && !s.slowCheck(hash, password) {
		return Login{}, authErr("wrong password")
	}
	if !enabled {
		return Login{}, authErr("user disabled")
	}
	if !cached {
		s.userLogins.Store(key, cachedLogin{generation: gen, until: now.Add(userCacheTTL)})
	}
	s.markUsed(p, nil)
	return Login{Identity: id,
		Subject: auth.Subject{Kind: auth.KindUser, Name: p.name, Slot: "password", Generation: gen}}, nil
}

// markUsed records a use; it writes memory only, at most once a second per
// credential, and flushLoop persists it (lastUsed differs from flushed).
func (s *Service) markUsed(p *principal, sl *slot) {
	now := s.now().UnixMilli()
	if now-p.lastUsed.Load() >= 1000 {
		p.lastUsed.Store(now)
	}
	if sl != nil && now-sl.lastUsed.Load() >= 1000 {
		sl.lastUsed.Store(now)
	}
}

// ResolveClaims turns verified access-token or refresh-token claims into
// the identity as it is now: a token or user deleted or disabled since, a
// password deleted, regenerated or expired since, yields an error.
func (s *Service) ResolveClaims(c *auth.Claims) (auth.Identity, error) {
	if err := s.feed.current(); err != nil {
		return auth.Identity{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var p *principal
	switch c.Kind {
	case auth.KindAdmin:
		if c.Subject == s.admin.name {
			p = s.admin
		}
	case auth.KindToken:
		p = s.tokens[c.Subject]
	case auth.KindUser:
		p = s.users[c.Subject]
	default:
		return auth.Identity{}, authErr("access token for an unknown kind of identity")
	}
	if p == nil {
		return auth.Identity{}, authErr(c.Kind.String() + " deleted")
	}
	if !p.enabled {
		return auth.Identity{}, authErr(c.Kind.String() + " disabled")
	}
	if p.generation != c.Generation {
		return auth.Identity{}, authErr(c.Kind.String() + " credentials changed since this token was issued")
	}
	var sl *slot
	if fed, ok := strings.CutPrefix(c.Slot, FederatedSlotPrefix); ok && p.kind == auth.KindToken {
		if err := checkFederatedSlot(p, fed, c.SlotSerial); err != nil {
			return auth.Identity{}, err
		}
	} else if p.kind != auth.KindUser {
		sl = p.slots[c.Slot]
		switch {
		case sl == nil:
			return auth.Identity{}, authErr(c.Slot + " deleted")
		case sl.serial != c.SlotSerial:
			return auth.Identity{}, authErr(c.Slot + " regenerated")
		case sl.expired(s.now()):
			return auth.Identity{}, authErr(c.Slot + " expired")
		}
	}
	s.markUsed(p, sl)
	id := auth.Identity{Kind: p.kind, Name: p.name, Role: p.role, Assignments: p.assignments, Bearer: c}
	if p.kind == auth.KindToken {
		if m := s.scopeMaps[p.scopeMap]; m != nil {
			id.Policy = m.policy
		}
	}
	return id, nil
}
