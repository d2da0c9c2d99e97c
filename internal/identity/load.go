package identity

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// state is everything identity holds in memory.
type state struct {
	scopeMaps map[string]*scopeMap
	tokens    map[string]*principal
	users     map[string]*principal
	admin     *principal
	keys      []*signingKey
	verifier  *auth.Verifier
	// version is the identity version the state is at: every change
	// increments it in its transaction.
	version int64
	// ext installs the extensions' state read with it.
	ext []func()
}

// load reads the whole state from the database, in one snapshot, and
// puts it into memory. Call it with s.writeMu held (or before the service
// is shared).
func (s *Service) load(ctx context.Context) error {
	s.fullLoads.Add(1)
	tx, err := s.db.R().BeginTx(ctx, s.db.Dialect().SnapshotTx())
	if err != nil {
		return fmt.Errorf("load identities: %w", err)
	}
	defer tx.Rollback()
	st, err := s.read(ctx, tx, nil)
	if err != nil {
		return err
	}
	if st.ext, err = s.loadExtensions(ctx, tx); err != nil {
		return err
	}
	s.install(st)
	return nil
}

// install replaces memory with st, keeping the last-used times not yet
// written of the credentials that st still holds.
func (s *Service) install(st *state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, p := range st.tokens {
		keepUse(s.tokens[n], p)
	}
	for n, p := range st.users {
		keepUse(s.users[n], p)
	}
	keepUse(s.admin, st.admin)
	s.scopeMaps, s.tokens, s.users, s.admin = st.scopeMaps, st.tokens, st.users, st.admin
	s.keys, s.verifier = st.keys, st.verifier
	for _, f := range st.ext {
		f()
	}
	s.version = st.version
}

// read reads the state from tx: all of it, or with only set just the
// entities only names (an entity named but absent is deleted).
// keepUse carries over to p, loaded anew, the last-used times not yet
// written of old, the same credential as held before.
func keepUse(old, p *principal) {
	if old == nil || old.generation != p.generation {
		return
	}
	if v := old.lastUsed.Load(); v > p.lastUsed.Load() {
		p.lastUsed.Store(v)
	}
	for n, sl := range p.slots {
		if o := old.slots[n]; o != nil && o.serial == sl.serial {
			if v := o.lastUsed.Load(); v > sl.lastUsed.Load() {
				sl.lastUsed.Store(v)
			}
		}
	}
}

func (s *Service) read(ctx context.Context, tx *sqldb.Tx, only *touchSet) (*state, error) {
	st := &state{scopeMaps: make(map[string]*scopeMap), tokens: make(map[string]*principal), users: make(map[string]*principal)}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM identity_state WHERE id = 1`).Scan(&st.version); err != nil {
		return nil, fmt.Errorf("load identity version: %w", err)
	}
	if only == nil || only.Keys {
		if err := s.readKeys(ctx, tx, st); err != nil {
			return nil, err
		}
	}
	if only == nil {
		for _, b := range auth.BuiltinScopeMaps() {
			st.scopeMaps[b.Name] = &scopeMap{def: b, policy: auth.MustCompile(b)}
		}
	}
	where, args := only.names("name", only.scopeMaps())
	rows, err := tx.QueryContext(ctx, `SELECT name, description, actions, created_at, updated_at FROM scope_maps`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load scope maps: %w", err)
	}
	for rows.Next() {
		var name, desc, actions string
		var created, updated int64
		if err := rows.Scan(&name, &desc, &actions, &created, &updated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load scope maps: %w", err)
		}
		// A map that has not changed keeps its compiled policy: another
		// node's change reloads everything, and compiling every map again
		// would cost the most. (s.scopeMaps is only changed under writeMu,
		// which the caller holds.)
		if old := s.scopeMaps[name]; old != nil && old.raw == actions && old.def.Description == desc {
			st.scopeMaps[name] = old
			continue
		}
		def := auth.ScopeMap{Name: name, Description: desc, Type: auth.UserDefined}
		if err := decodeActions(actions, &def); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load scope map %q: %w", name, err)
		}
		pol, err := auth.Compile(def)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("load scope map %q: %w", name, err)
		}
		st.scopeMaps[name] = &scopeMap{def: def, policy: pol, raw: actions, createdAt: time.UnixMilli(created).UTC(), updatedAt: time.UnixMilli(updated).UTC()}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load scope maps: %w", err)
	}

	where, args = only.names("name", only.tokens())
	rows, err = tx.QueryContext(ctx, `SELECT name, scope_map, enabled, generation, created_at, last_used FROM tokens`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	for rows.Next() {
		p := &principal{kind: auth.KindToken, slots: map[string]*slot{}}
		var created int64
		var last sql.NullInt64
		if err := rows.Scan(&p.name, &p.scopeMap, &p.enabled, &p.generation, &created, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load tokens: %w", err)
		}
		p.createdAt = time.UnixMilli(created).UTC()
		p.lastUsed.Store(last.Int64)
		p.flushed.Store(last.Int64)
		st.tokens[p.name] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}

	where, args = only.names("name", only.users())
	rows, err = tx.QueryContext(ctx, `SELECT name, role, password_hash, enabled, generation, created_at, last_used FROM users`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	for rows.Next() {
		p := &principal{kind: auth.KindUser}
		var created int64
		var last sql.NullInt64
		var role string
		if err := rows.Scan(&p.name, &role, &p.userHash, &p.enabled, &p.generation, &created, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load users: %w", err)
		}
		if p.userHash, err = s.openSecret(ctx, passwordHashPurpose, p.userHash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load user %s: %w", p.name, err)
		}
		p.role = auth.Role(role)
		p.createdAt = time.UnixMilli(created).UTC()
		p.lastUsed.Store(last.Int64)
		p.flushed.Store(last.Int64)
		st.users[p.name] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	if only == nil || len(only.users()) > 0 {
		if err := readAssignments(ctx, tx, st, only); err != nil {
			return nil, err
		}
	}

	if only != nil && !only.Admin {
		return s.readTokenCredentials(ctx, tx, st, only)
	}
	st.admin = &principal{kind: auth.KindAdmin, name: s.opts.RegistryName, slots: map[string]*slot{}}
	settings := map[string]string{}
	rows, err = tx.QueryContext(ctx, `SELECT key, value FROM settings WHERE key IN ('admin_enabled', 'admin_generation')`)
	if err != nil {
		return nil, fmt.Errorf("load settings: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load settings: %w", err)
		}
		settings[k] = v
	}
	rows.Close()
	st.admin.enabled = settings["admin_enabled"] == "true"
	st.admin.generation, _ = strconv.ParseUint(settings["admin_generation"], 10, 64)
	if st.admin.generation == 0 {
		st.admin.generation = 1
	}

	return s.readTokenCredentials(ctx, tx, st, only)
}

// readTokenCredentials reads the password slots and the federated
// credentials of st's tokens (and the admin user's slots).
func (s *Service) readTokenCredentials(ctx context.Context, tx *sqldb.Tx, st *state, only *touchSet) (*state, error) {
	st, err := s.readPasswords(ctx, tx, st, only)
	if err != nil {
		return nil, err
	}
	return s.readFederated(ctx, tx, st, only)
}

// readPasswords reads the password slots of st's tokens and admin user.
func (s *Service) readPasswords(ctx context.Context, tx *sqldb.Tx, st *state, only *touchSet) (*state, error) {
	q := `SELECT owner_kind, owner, slot, hash, serial, created_at, expires_at, last_used FROM passwords`
	var args []any
	if only != nil {
		var conds []string
		if len(only.tokens()) > 0 {
			where, a := only.names("owner", only.tokens())
			conds = append(conds, "(owner_kind = 'token' AND "+strings.TrimPrefix(where, " WHERE ")+")")
			args = a
		}
		if only.Admin {
			conds = append(conds, "owner_kind = 'admin'")
		}
		if len(conds) == 0 {
			return st, nil
		}
		q += " WHERE " + strings.Join(conds, " OR ")
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("load passwords: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, owner string
		sl := &slot{}
		var created int64
		var exp, last sql.NullInt64
		if err := rows.Scan(&kind, &owner, &sl.name, &sl.hash, &sl.serial, &created, &exp, &last); err != nil {
			return nil, fmt.Errorf("load passwords: %w", err)
		}
		if sl.hash, err = s.openSecret(ctx, passwordHashPurpose, sl.hash); err != nil {
			return nil, fmt.Errorf("load password %s of %s: %w", sl.name, owner, err)
		}
		sl.createdAt = time.UnixMilli(created).UTC()
		sl.expiresAt = fromMs(exp)
		sl.lastUsed.Store(last.Int64)
		sl.flushed.Store(last.Int64)
		switch kind {
		case "token":
			if p := st.tokens[owner]; p != nil {
				p.slots[sl.name] = sl
			}
		case "admin":
			if st.admin != nil {
				st.admin.slots[sl.name] = sl
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load passwords: %w", err)
	}
	return st, nil
}

// bootstrapOwner creates the first owner user when there are no users.
func (s *Service) bootstrapOwner(ctx context.Context) error {
	s.mu.RLock()
	n := len(s.users)
	s.mu.RUnlock()
	if n > 0 {
		return nil
	}
	pw, generated := s.opts.OwnerPassword, false
	if pw == "" {
		pw, generated = auth.GeneratePassword(), true
	}
	system := auth.Identity{Kind: auth.KindUser, Name: "system", Role: auth.RoleOwner}
	if _, err := s.CreateUser(ctx, system, UserSpec{Name: s.opts.OwnerUsername, Role: string(auth.RoleOwner), Password: pw}); err != nil {
		return fmt.Errorf("create the first owner: %w", err)
	}
	if generated {
		// Printed once, on purpose: it exists nowhere else.
		fmt.Fprintf(s.opts.Console, "\nberth: created owner user %q with password:\n\n    %s\n\nSave it now; it is not shown again. Set BERTH_OWNER_PASSWORD to choose it instead.\n\n", s.opts.OwnerUsername, pw)
	}
	s.log.Info("created the first owner user", "username", s.opts.OwnerUsername)
	return nil
}
