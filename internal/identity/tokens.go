package identity

import (
	"context"
	"fmt"
	"github.com/berth-registry/berth/internal/sqldb"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// Token statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Password is one password slot as the faces show it. Value is set only in
// the answer to the request that generated it.
type Password struct {
	Name         string     `json:"name"`
	CreationTime time.Time  `json:"creationTime"`
	Expiry       *time.Time `json:"expiry,omitempty"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
	Value        string     `json:"value,omitempty"`
}

// Token is a token as the faces show it.
type Token struct {
	Name         string     `json:"name"`
	ScopeMap     string     `json:"scopeMap"`
	Status       string     `json:"status"`
	CreationDate time.Time  `json:"creationDate"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
	Passwords    []Password `json:"passwords"`
}

// Credentials are freshly generated passwords, shown once.
type Credentials struct {
	Username  string     `json:"username"`
	Passwords []Password `json:"passwords"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func msTime(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := time.UnixMilli(v).UTC()
	return &t
}

func slotView(sl *slot) Password {
	return Password{Name: sl.name, CreationTime: sl.createdAt, Expiry: optTime(sl.expiresAt), LastUsed: msTime(sl.lastUsed.Load())}
}

func (p *principal) passwordViews(order ...string) []Password {
	out := []Password{}
	for _, n := range order {
		if sl := p.slots[n]; sl != nil {
			out = append(out, slotView(sl))
		}
	}
	return out
}

// tokenState is what a token's view needs of its changeable state, taken
// under s.mu so that the view can be built once the lock is released.
type tokenState struct {
	p         *principal // its name and creation time never change, lastUsed is atomic
	scopeMap  string
	enabled   bool
	passwords [2]*slot // password1, password2
}

func stateOf(p *principal) tokenState {
	return tokenState{p: p, scopeMap: p.scopeMap, enabled: p.enabled, passwords: [2]*slot{p.slots[SlotPassword1], p.slots[SlotPassword2]}}
}

func (ts tokenState) view() Token {
	st := StatusEnabled
	if !ts.enabled {
		st = StatusDisabled
	}
	pws := []Password{}
	for _, sl := range ts.passwords {
		if sl != nil {
			pws = append(pws, slotView(sl))
		}
	}
	return Token{Name: ts.p.name, ScopeMap: ts.scopeMap, Status: st, CreationDate: ts.p.createdAt,
		LastUsed: msTime(ts.p.lastUsed.Load()), Passwords: pws}
}

// tokenView shows p. Call it with s.mu or s.writeMu held.
func tokenView(p *principal) Token { return stateOf(p).view() }

// ListTokens returns every token, by name.
func (s *Service) ListTokens(actor auth.Identity) ([]Token, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return nil, err
	}
	s.mu.RLock()
	states := make([]tokenState, 0, len(s.tokens))
	for _, p := range s.tokens {
		if s.checkToken(actor, auth.ViewManagement, p) == nil {
			states = append(states, stateOf(p))
		}
	}
	s.mu.RUnlock()
	// The views are built and sorted without the lock, which a change
	// waits for before it applies, and logins then wait for the change.
	out := make([]Token, 0, len(states))
	for _, ts := range states {
		out = append(out, ts.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetToken returns one token.
func (s *Service) GetToken(actor auth.Identity, name string) (Token, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return Token{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.tokens[name]
	if p == nil {
		return Token{}, errf(ErrNotFound, "token %q not found", name)
	}
	if err := s.checkToken(actor, auth.ViewManagement, p); err != nil {
		return Token{}, err
	}
	return tokenView(p), nil
}

// TokenSpec creates a token.
type TokenSpec struct {
	Name string
	// ScopeMap names an existing scope map; or else Actions (stored form)
	// make a new one named "<Name>-scope-map".
	ScopeMap string
	Actions  []string
	// Tags limits some of Actions to tag patterns (see ScopeMapSpec).
	Tags   map[string][]string
	Status string // default enabled
	// Passwords lists the slots to generate now (none, or password1 and/or
	// password2); Expiry applies to them.
	Passwords []string
	Expiry    time.Time
}

// CreateToken creates a token, and with Actions its scope map, in one
// transaction. The answer carries generated password values, once.
func (s *Service) CreateToken(ctx context.Context, actor auth.Identity, spec TokenSpec) (Token, *Credentials, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return Token{}, nil, err
	}
	if err := auth.ValidateTokenName(spec.Name); err != nil {
		return Token{}, nil, errf(ErrInvalid, "%v", err)
	}
	if spec.Status == "" {
		spec.Status = StatusEnabled
	}
	if spec.Status != StatusEnabled && spec.Status != StatusDisabled {
		return Token{}, nil, errf(ErrInvalid, "invalid status %q: use enabled or disabled", spec.Status)
	}
	if (spec.ScopeMap == "") == (len(spec.Actions) == 0) {
		return Token{}, nil, errf(ErrInvalid, "give a token either a scope map (--scope-map) or repositories and actions (--repository REPO ACTION...), not both or neither")
	}
	if err := s.checkExpiry(spec.Expiry); err != nil {
		return Token{}, nil, err
	}
	slots, err := tokenSlots(spec.Passwords)
	if err != nil {
		return Token{}, nil, err
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if other := s.tokenNamedLocked(spec.Name); other != "" {
		return Token{}, nil, errf(ErrConflict, "token %q already exists (names are case-insensitive)", other)
	}
	if s.nameTakenLocked(spec.Name) {
		return Token{}, nil, errf(ErrConflict, "%q is already the name of a user or the admin user: token names are docker usernames and must be unique", spec.Name)
	}
	var newMap *scopeMap
	if spec.ScopeMap != "" {
		m := s.scopeMaps[spec.ScopeMap]
		if m == nil {
			return Token{}, nil, errf(ErrInvalid, "scope map %q not found: create it first, or use --repository REPO ACTION...", spec.ScopeMap)
		}
		if err := checkMap(actor, auth.ManageTokens, m); err != nil {
			return Token{}, nil, err
		}
	} else {
		spec.ScopeMap = spec.Name + "-scope-map"
		if len(spec.ScopeMap) > auth.MaxNameLength {
			return Token{}, nil, errf(ErrInvalid, "token name %q is too long to name its own scope map %q (at most %d characters): create a scope map with `scope-map create` and pass it with --scope-map", spec.Name, spec.ScopeMap, auth.MaxNameLength)
		}
	}
	now := s.now().UTC()
	p := &principal{kind: auth.KindToken, name: spec.Name, enabled: spec.Status == StatusEnabled,
		createdAt: now, scopeMap: spec.ScopeMap, slots: map[string]*slot{}}
	var creds *Credentials
	var fresh map[string]*slot
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(p.name)
		if len(spec.Actions) > 0 {
			m, err := s.createScopeMapLocked(ctx, tx, actor, ScopeMapSpec{Name: spec.ScopeMap, Description: "Created with token " + spec.Name, Actions: spec.Actions, Tags: spec.Tags})
			if err != nil {
				return err
			}
			newMap = m
		}
		// A registry-wide serial, not 1: access tokens of a deleted token
		// must never match a new token that reuses its name.
		gen, err := nextSerial(ctx, tx)
		if err != nil {
			return err
		}
		p.generation = gen
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens(name, scope_map, enabled, generation, created_at) VALUES (?, ?, ?, ?, ?)`,
			p.name, p.scopeMap, p.enabled, gen, now.UnixMilli()); err != nil {
			return fmt.Errorf("store token: %w", err)
		}
		if creds, fresh, err = s.generateLocked(ctx, tx, p, slots, spec.Expiry); err != nil {
			return err
		}
		return s.record(ctx, tx, actor, "token "+p.name, fmt.Sprintf("created with scope map %s, status %s", p.scopeMap, spec.Status))
	})
	if err != nil {
		return Token{}, nil, err
	}
	maps.Copy(p.slots, fresh)
	s.apply(func() {
		if newMap != nil {
			s.scopeMaps[newMap.def.Name] = newMap
		}
		s.tokens[p.name] = p
	})
	return tokenView(p), creds, nil
}

func tokenSlots(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		if n != SlotPassword1 && n != SlotPassword2 {
			return nil, errf(ErrInvalid, "invalid password name %q: use password1 or password2", n)
		}
		if !contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Service) checkExpiry(t time.Time) error {
	if !t.IsZero() && !t.After(s.now()) {
		return errf(ErrInvalid, "expiry %s is in the past", t.UTC().Format(time.RFC3339))
	}
	return nil
}

// nameTakenLocked reports whether name is a user's or the admin user's:
// docker usernames must say which identity is meant. Names compare
// case-insensitively, as in ACR. Call it with s.writeMu held.
func (s *Service) nameTakenLocked(name string) bool {
	if strings.EqualFold(name, s.opts.RegistryName) {
		return true
	}
	for n := range s.users {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// tokenNamedLocked returns the name of the token whose name equals name
// ignoring case, or "". Call it with s.writeMu held.
func (s *Service) tokenNamedLocked(name string) string {
	if s.tokens[name] != nil {
		return name
	}
	for n := range s.tokens {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return ""
}

// generateLocked makes new passwords for p's slots inside tx and returns
// them (the caller commits, then applies them to p). Regenerating a slot
// revokes access tokens issued through it, because the slot's serial
// changes. Call it with s.writeMu held.
func (s *Service) generateLocked(ctx context.Context, tx *sqldb.Tx, p *principal, slots []string, expiry time.Time) (*Credentials, map[string]*slot, error) {
	if len(slots) == 0 {
		return nil, nil, nil
	}
	creds := &Credentials{Username: p.name}
	now := s.now().UTC()
	owner := p.name
	if p.kind == auth.KindAdmin {
		owner = "admin"
	}
	fresh := map[string]*slot{}
	for _, name := range slots {
		serial, err := nextSerial(ctx, tx)
		if err != nil {
			return nil, nil, err
		}
		value := auth.GeneratePassword()
		sl := &slot{name: name, hash: auth.HashSecret(value), serial: serial, createdAt: now, expiresAt: expiry}
		stored, err := s.sealSecret(ctx, passwordHashPurpose, sl.hash)
		if err != nil {
			return nil, nil, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO passwords(owner_kind, owner, slot, hash, serial, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(owner_kind, owner, slot) DO UPDATE SET hash = excluded.hash, serial = excluded.serial, created_at = excluded.created_at, expires_at = excluded.expires_at, last_used = NULL`,
			p.kind.String(), owner, name, stored, serial, now.UnixMilli(), ms(expiry)); err != nil {
			return nil, nil, fmt.Errorf("store password: %w", err)
		}
		fresh[name] = sl
		v := slotView(sl)
		v.Value = value
		creds.Passwords = append(creds.Passwords, v)
	}
	// The caller puts fresh into p.slots once the transaction commits.
	return creds, fresh, nil
}

func nextSerial(ctx context.Context, tx *sqldb.Tx) (uint64, error) {
	var v uint64
	err := tx.QueryRowContext(ctx, `INSERT INTO settings(key, value) VALUES ('password_serial', '1')
		ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT) RETURNING CAST(settings.value AS BIGINT)`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("allocate password serial: %w", err)
	}
	return v, nil
}

// TokenUpdate changes a token. Nil fields are left alone.
type TokenUpdate struct {
	ScopeMap *string
	Status   *string
}

// UpdateToken changes a token's scope map or status, effective from the next request.
func (s *Service) UpdateToken(ctx context.Context, actor auth.Identity, name string, u TokenUpdate) (Token, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return Token{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.tokens[name]
	if p == nil {
		return Token{}, errf(ErrNotFound, "token %q not found", name)
	}
	if err := s.checkToken(actor, auth.ManageTokens, p); err != nil {
		return Token{}, err
	}
	scopeMap, enabled := p.scopeMap, p.enabled
	var changes []string
	if u.ScopeMap != nil && *u.ScopeMap != p.scopeMap {
		m := s.scopeMaps[*u.ScopeMap]
		if m == nil {
			return Token{}, errf(ErrInvalid, "scope map %q not found", *u.ScopeMap)
		}
		if err := checkMap(actor, auth.ManageTokens, m); err != nil {
			return Token{}, err
		}
		scopeMap = *u.ScopeMap
		changes = append(changes, "scope map "+scopeMap)
	}
	if u.Status != nil {
		switch *u.Status {
		case StatusEnabled, StatusDisabled:
			enabled = *u.Status == StatusEnabled
			changes = append(changes, "status "+*u.Status)
		default:
			return Token{}, errf(ErrInvalid, "invalid status %q: use enabled or disabled", *u.Status)
		}
	}
	// Disabling needs no new generation: every request checks the status,
	// so re-enabling restores the clients' existing logins.
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(name)
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET scope_map = ?, enabled = ? WHERE name = ?`, scopeMap, enabled, name); err != nil {
			return fmt.Errorf("update token: %w", err)
		}
		if len(changes) == 0 {
			return nil
		}
		return s.record(ctx, tx, actor, "token "+name, "updated: "+strings.Join(changes, ", "))
	})
	if err != nil {
		return Token{}, err
	}
	s.apply(func() { p.scopeMap, p.enabled = scopeMap, enabled })
	return tokenView(p), nil
}

// DeleteToken deletes a token and its passwords.
func (s *Service) DeleteToken(ctx context.Context, actor auth.Identity, name string) error {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.tokens[name] == nil {
		return errf(ErrNotFound, "token %q not found", name)
	}
	if err := s.checkToken(actor, auth.ManageTokens, s.tokens[name]); err != nil {
		return err
	}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(name)
		if _, err := tx.ExecContext(ctx, `DELETE FROM passwords WHERE owner_kind = 'token' AND owner = ?`, name); err != nil {
			return fmt.Errorf("delete token passwords: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM federated_credentials WHERE token = ?`, name); err != nil {
			return fmt.Errorf("delete token federated credentials: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete token: %w", err)
		}
		return s.record(ctx, tx, actor, "token "+name, "deleted")
	})
	if err != nil {
		return err
	}
	s.apply(func() { delete(s.tokens, name) })
	return nil
}

// GenerateCredentials makes new passwords for a token's slots (both when
// slots is empty), replacing any there. The values are returned once.
func (s *Service) GenerateCredentials(ctx context.Context, actor auth.Identity, name string, slots []string, expiry time.Time) (*Credentials, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return nil, err
	}
	if len(slots) == 0 {
		slots = []string{SlotPassword1, SlotPassword2}
	}
	slots, err := tokenSlots(slots)
	if err != nil {
		return nil, err
	}
	if err := s.checkExpiry(expiry); err != nil {
		return nil, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.tokens[name]
	if p == nil {
		return nil, errf(ErrNotFound, "token %q not found", name)
	}
	if err := s.checkToken(actor, auth.ManageTokens, p); err != nil {
		return nil, err
	}
	var creds *Credentials
	var fresh map[string]*slot
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(name)
		var err error
		if creds, fresh, err = s.generateLocked(ctx, tx, p, slots, expiry); err != nil {
			return err
		}
		return s.record(ctx, tx, actor, "token "+name, "generated "+strings.Join(slots, ", "))
	})
	if err != nil {
		return nil, err
	}
	s.apply(func() { maps.Copy(p.slots, fresh) })
	return creds, nil
}

// DeletePassword deletes one password slot of a token; access tokens issued
// through it stop working at once.
func (s *Service) DeletePassword(ctx context.Context, actor auth.Identity, name, slotName string) (Token, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return Token{}, err
	}
	if _, err := tokenSlots([]string{slotName}); err != nil {
		return Token{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.tokens[name]
	if p == nil {
		return Token{}, errf(ErrNotFound, "token %q not found", name)
	}
	if err := s.checkToken(actor, auth.ManageTokens, p); err != nil {
		return Token{}, err
	}
	if p.slots[slotName] == nil {
		return Token{}, errf(ErrNotFound, "token %q has no %s", name, slotName)
	}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchTokens(name)
		if _, err := tx.ExecContext(ctx, `DELETE FROM passwords WHERE owner_kind = 'token' AND owner = ? AND slot = ?`, name, slotName); err != nil {
			return fmt.Errorf("delete password: %w", err)
		}
		return s.record(ctx, tx, actor, "token "+name, slotName+" deleted")
	})
	if err != nil {
		return Token{}, err
	}
	s.apply(func() { delete(p.slots, slotName) })
	return tokenView(p), nil
}
