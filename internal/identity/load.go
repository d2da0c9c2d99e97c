package identity

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

func (s *Service) load(ctx context.Context) error {
	s.scopeMaps = make(map[string]*scopeMap)
	for _, b := range auth.BuiltinScopeMaps() {
		s.scopeMaps[b.Name] = &scopeMap{def: b, policy: auth.MustCompile(b)}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, description, actions, created_at, updated_at FROM scope_maps`)
	if err != nil {
		return fmt.Errorf("load scope maps: %w", err)
	}
	for rows.Next() {
		var name, desc, actions string
		var created, updated int64
		if err := rows.Scan(&name, &desc, &actions, &created, &updated); err != nil {
			rows.Close()
			return fmt.Errorf("load scope maps: %w", err)
		}
		def := auth.ScopeMap{Name: name, Description: desc, Type: auth.UserDefined}
		if err := json.Unmarshal([]byte(actions), &def.Actions); err != nil {
			rows.Close()
			return fmt.Errorf("load scope map %q: %w", name, err)
		}
		pol, err := auth.Compile(def)
		if err != nil {
			rows.Close()
			return fmt.Errorf("load scope map %q: %w", name, err)
		}
		s.scopeMaps[name] = &scopeMap{def: def, policy: pol, createdAt: time.UnixMilli(created).UTC(), updatedAt: time.UnixMilli(updated).UTC()}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load scope maps: %w", err)
	}

	s.tokens = make(map[string]*principal)
	rows, err = s.db.QueryContext(ctx, `SELECT name, scope_map, enabled, generation, created_at, last_used FROM tokens`)
	if err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}
	for rows.Next() {
		p := &principal{kind: auth.KindToken, slots: map[string]*slot{}}
		var created int64
		var last sql.NullInt64
		if err := rows.Scan(&p.name, &p.scopeMap, &p.enabled, &p.generation, &created, &last); err != nil {
			rows.Close()
			return fmt.Errorf("load tokens: %w", err)
		}
		p.createdAt = time.UnixMilli(created).UTC()
		p.lastUsed.Store(last.Int64)
		p.flushed.Store(last.Int64)
		s.tokens[p.name] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}

	s.users = make(map[string]*principal)
	rows, err = s.db.QueryContext(ctx, `SELECT name, role, password_hash, enabled, generation, created_at, last_used FROM users`)
	if err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	for rows.Next() {
		p := &principal{kind: auth.KindUser}
		var created int64
		var last sql.NullInt64
		var role string
		if err := rows.Scan(&p.name, &role, &p.userHash, &p.enabled, &p.generation, &created, &last); err != nil {
			rows.Close()
			return fmt.Errorf("load users: %w", err)
		}
		p.role = auth.Role(role)
		p.createdAt = time.UnixMilli(created).UTC()
		p.lastUsed.Store(last.Int64)
		p.flushed.Store(last.Int64)
		s.users[p.name] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load users: %w", err)
	}

	s.admin = &principal{kind: auth.KindAdmin, name: s.opts.RegistryName, slots: map[string]*slot{}}
	settings := map[string]string{}
	rows, err = s.db.QueryContext(ctx, `SELECT key, value FROM settings WHERE key IN ('admin_enabled', 'admin_generation')`)
	if err != nil {
		return fmt.Errorf("load settings: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return fmt.Errorf("load settings: %w", err)
		}
		settings[k] = v
	}
	rows.Close()
	s.admin.enabled = settings["admin_enabled"] == "true"
	s.admin.generation, _ = strconv.ParseUint(settings["admin_generation"], 10, 64)
	if s.admin.generation == 0 {
		s.admin.generation = 1
	}

	rows, err = s.db.QueryContext(ctx, `SELECT owner_kind, owner, slot, hash, serial, created_at, expires_at, last_used FROM passwords`)
	if err != nil {
		return fmt.Errorf("load passwords: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, owner string
		sl := &slot{}
		var created int64
		var exp, last sql.NullInt64
		if err := rows.Scan(&kind, &owner, &sl.name, &sl.hash, &sl.serial, &created, &exp, &last); err != nil {
			return fmt.Errorf("load passwords: %w", err)
		}
		sl.createdAt = time.UnixMilli(created).UTC()
		sl.expiresAt = fromMs(exp)
		sl.lastUsed.Store(last.Int64)
		sl.flushed.Store(last.Int64)
		switch kind {
		case "token":
			if p := s.tokens[owner]; p != nil {
				p.slots[sl.name] = sl
			}
		case "admin":
			s.admin.slots[sl.name] = sl
		}
	}
	return rows.Err()
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
