package identity

import (
	"context"
	"fmt"
	"github.com/berth-registry/berth/internal/sqldb"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// ScopeMap is a scope map as the faces show it.
type ScopeMap struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Actions     []string `json:"actions"`
	// Tags limits actions to tag patterns (see auth.ScopeMap.Tags).
	Tags      map[string][]string `json:"tags,omitempty"`
	CreatedAt time.Time           `json:"creationDate"`
	// Tokens lists the tokens that use the scope map.
	Tokens []string `json:"tokens"`
}

func (s *Service) authorize(actor auth.Identity, what auth.Permission) error {
	if !auth.CanManage(actor, what) {
		return errf(ErrForbidden, "%s is not allowed to do this: it needs a role with %s", actor, permissionName(what))
	}
	return nil
}

func permissionName(p auth.Permission) string {
	switch p {
	case auth.ViewManagement:
		return "read access to the registry's settings (reader, token-admin, contributor or owner)"
	case auth.ManageTokens:
		return "the right to manage tokens and scope maps (token-admin, contributor or owner)"
	case auth.ManageUsers:
		return "the right to manage users (owner)"
	case auth.ManageRegistry:
		return "the right to manage the registry (contributor or owner)"
	case auth.ReadAudit:
		return "the right to read the audit log (reader, contributor or owner)"
	case auth.WriteRepositories:
		return "the right to change repositories (contributor or owner)"
	}
	return "more rights"
}

// scopeMapView shows m with the tokens that use it. Call it with s.mu or
// s.writeMu held.
func (s *Service) scopeMapView(m *scopeMap) ScopeMap {
	var names []string
	for _, t := range s.tokens {
		if t.scopeMap == m.def.Name {
			names = append(names, t.name)
		}
	}
	s.tokensScanned.Add(int64(len(s.tokens)))
	return viewOf(m, names)
}

// tokenUse is a token and the scope map it uses.
type tokenUse struct{ scopeMap, token string }

// tokenUses lists which scope map each token uses, in one pass, so that
// listing every map costs time linear in maps plus tokens. Call it with
// s.mu or s.writeMu held.
func (s *Service) tokenUses() []tokenUse {
	uses := make([]tokenUse, 0, len(s.tokens))
	for _, t := range s.tokens {
		uses = append(uses, tokenUse{t.scopeMap, t.name})
	}
	s.tokensScanned.Add(int64(len(s.tokens)))
	return uses
}

// viewOf shows m used by tokens, which it sorts.
func viewOf(m *scopeMap, tokens []string) ScopeMap {
	if tokens == nil {
		tokens = []string{}
	}
	sort.Strings(tokens)
	return ScopeMap{Name: m.def.Name, Description: m.def.Description, Type: string(m.def.Type),
		Actions: slices.Clone(m.def.Actions), Tags: cloneTags(m.def.Tags), CreatedAt: m.createdAt, Tokens: tokens}
}

// ListScopeMaps returns every scope map, built-in ones first.
func (s *Service) ListScopeMaps(actor auth.Identity) ([]ScopeMap, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return nil, err
	}
	s.mu.RLock()
	// A scope map is never changed once in memory, only replaced.
	all := make([]*scopeMap, 0, len(s.scopeMaps))
	for _, m := range s.scopeMaps {
		if _, ok := mapInside(actor, auth.ViewManagement, m); ok {
			all = append(all, m)
		}
	}
	uses := s.tokenUses()
	s.mu.RUnlock()
	// A delegated user sees only the tokens inside their patterns, which
	// are the tokens of the scope maps they see.
	// The views are built without the lock, which a change waits for
	// before it applies, and logins then wait for the change.
	users := make(map[string][]string, len(all))
	for _, u := range uses {
		users[u.scopeMap] = append(users[u.scopeMap], u.token)
	}
	out := make([]ScopeMap, 0, len(all))
	for _, m := range all {
		out = append(out, viewOf(m, users[m.def.Name]))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type == string(auth.SystemDefined)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// GetScopeMap returns one scope map.
func (s *Service) GetScopeMap(actor auth.Identity, name string) (ScopeMap, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return ScopeMap{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.scopeMaps[name]
	if m == nil {
		return ScopeMap{}, errf(ErrNotFound, "scope map %q not found", name)
	}
	if err := checkMap(actor, auth.ViewManagement, m); err != nil {
		return ScopeMap{}, err
	}
	return s.scopeMapView(m), nil
}

// ScopeMapSpec creates a scope map.
type ScopeMapSpec struct {
	Name        string
	Description string
	Actions     []string // stored form: repositories/<pattern>/<action>
	// Tags limits some of Actions to tag patterns; an action without an
	// entry applies to every tag.
	Tags map[string][]string
}

// CreateScopeMap creates a user-defined scope map.
func (s *Service) CreateScopeMap(ctx context.Context, actor auth.Identity, spec ScopeMapSpec) (ScopeMap, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return ScopeMap{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var m *scopeMap
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchScopeMap(spec.Name)
		var err error
		if m, err = s.createScopeMapLocked(ctx, tx, actor, spec); err != nil {
			return err
		}
		return s.record(ctx, tx, actor, "scope map "+spec.Name, "created: "+describeRules(m.def))
	})
	if err != nil {
		return ScopeMap{}, err
	}
	s.apply(func() { s.scopeMaps[spec.Name] = m })
	return s.scopeMapView(m), nil
}

// createScopeMapLocked validates and stores a scope map in tx; the caller
// puts it into memory once tx commits. Call it with s.writeMu held.
func (s *Service) createScopeMapLocked(ctx context.Context, tx *sqldb.Tx, actor auth.Identity, spec ScopeMapSpec) (*scopeMap, error) {
	if strings.HasPrefix(spec.Name, "_") {
		if _, ok := auth.BuiltinScopeMap(spec.Name); ok {
			return nil, errf(ErrConflict, "scope map %q is built in and cannot be created or changed", spec.Name)
		}
	}
	for n := range s.scopeMaps {
		if strings.EqualFold(n, spec.Name) {
			return nil, errf(ErrConflict, "scope map %q already exists (names are case-insensitive): use `scope-map update` to change it", n)
		}
	}
	m, err := s.compileSpec(spec)
	if err != nil {
		return nil, err
	}
	if err := checkRules(actor, auth.ManageTokens, spec.Name, m.def.Actions); err != nil {
		return nil, err
	}
	now := s.now()
	m.createdAt, m.updatedAt = now.UTC(), now.UTC()
	m.raw = encodeActions(m.def)
	s.touchScopeMap(spec.Name)
	const q = `INSERT INTO scope_maps(name, description, actions, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`
	if _, err := tx.ExecContext(ctx, q, spec.Name, spec.Description, m.raw, now.UnixMilli(), now.UnixMilli()); err != nil {
		return nil, fmt.Errorf("store scope map: %w", err)
	}
	return m, nil
}

func (s *Service) compileSpec(spec ScopeMapSpec) (*scopeMap, error) {
	actions, err := auth.NormalizeActions(spec.Actions)
	if err != nil {
		return nil, errf(ErrInvalid, "%v", err)
	}
	tags, err := auth.NormalizeTags(actions, spec.Tags)
	if err != nil {
		return nil, errf(ErrInvalid, "%v", err)
	}
	def := auth.ScopeMap{Name: spec.Name, Description: spec.Description, Type: auth.UserDefined, Actions: actions, Tags: tags}
	if err := def.Validate(); err != nil {
		return nil, errf(ErrInvalid, "%v", err)
	}
	pol, err := auth.Compile(def)
	if err != nil {
		return nil, errf(ErrInvalid, "%v", err)
	}
	return &scopeMap{def: def, policy: pol}, nil
}

// ScopeMapUpdate changes a scope map. Nil fields are left alone.
type ScopeMapUpdate struct {
	Description *string
	Add         []string // stored-form actions to add
	// AddTags limits actions of Add to tag patterns. Grants add up: an
	// action the map already grants on every tag stays so.
	AddTags map[string][]string
	Remove  []string // stored-form actions to remove, with their tag limits
	// Actions, when not nil, replaces the whole list (the portal's
	// editor), and Tags with it the tag limits.
	Actions []string
	Tags    map[string][]string
}

// UpdateScopeMap changes a user-defined scope map. Every token that uses it
// is affected from the next request.
func (s *Service) UpdateScopeMap(ctx context.Context, actor auth.Identity, name string, u ScopeMapUpdate) (ScopeMap, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return ScopeMap{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur := s.scopeMaps[name]
	if cur == nil {
		return ScopeMap{}, errf(ErrNotFound, "scope map %q not found", name)
	}
	if cur.def.Type == auth.SystemDefined {
		return ScopeMap{}, errf(ErrForbidden, "scope map %q is built in and cannot be changed: create your own with `scope-map create`", name)
	}
	if err := checkMap(actor, auth.ManageTokens, cur); err != nil {
		return ScopeMap{}, err
	}
	spec := ScopeMapSpec{Name: name, Description: cur.def.Description, Actions: slices.Clone(cur.def.Actions), Tags: cloneTags(cur.def.Tags)}
	if u.Description != nil {
		spec.Description = *u.Description
	}
	if u.Actions != nil {
		actions, err := auth.NormalizeActions(u.Actions)
		if err != nil {
			return ScopeMap{}, errf(ErrInvalid, "%v", err)
		}
		tags, err := auth.NormalizeTags(actions, u.Tags)
		if err != nil {
			return ScopeMap{}, errf(ErrInvalid, "%v", err)
		}
		spec.Actions, spec.Tags = actions, tags
	} else if u.Tags != nil {
		return ScopeMap{}, errf(ErrInvalid, "tags replace the tag limits only together with the actions they belong to")
	}
	if len(u.Remove) > 0 {
		remove, err := auth.NormalizeActions(u.Remove)
		if err != nil {
			return ScopeMap{}, errf(ErrInvalid, "%v", err)
		}
		// A typo in a removal must not leave the permission in place unnoticed.
		for _, a := range remove {
			if !slices.Contains(spec.Actions, a) {
				return ScopeMap{}, errf(ErrInvalid, "scope map %q does not grant %s, so it cannot be removed; see `scope-map show` for what it grants", name, a)
			}
		}
		spec.Actions = slices.DeleteFunc(spec.Actions, func(a string) bool { return slices.Contains(remove, a) })
		for _, a := range remove {
			delete(spec.Tags, a)
		}
	}
	if len(u.Add) > 0 || len(u.AddTags) > 0 {
		actions, tags, err := mergeTagged(spec.Actions, spec.Tags, u.Add, u.AddTags)
		if err != nil {
			return ScopeMap{}, errf(ErrInvalid, "%v", err)
		}
		spec.Actions, spec.Tags = actions, tags
	}
	m, err := s.compileSpec(spec)
	if err != nil {
		return ScopeMap{}, err
	}
	if err := checkRules(actor, auth.ManageTokens, name, m.def.Actions); err != nil {
		return ScopeMap{}, err
	}
	m.createdAt, m.updatedAt = cur.createdAt, s.now().UTC()
	m.raw = encodeActions(m.def)
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchScopeMap(name)
		if _, err := tx.ExecContext(ctx, `UPDATE scope_maps SET description = ?, actions = ?, updated_at = ? WHERE name = ?`,
			spec.Description, m.raw, m.updatedAt.UnixMilli(), name); err != nil {
			return fmt.Errorf("update scope map: %w", err)
		}
		return s.record(ctx, tx, actor, "scope map "+name, "updated: "+describeRules(m.def))
	})
	if err != nil {
		return ScopeMap{}, err
	}
	s.apply(func() { s.scopeMaps[name] = m })
	return s.scopeMapView(m), nil
}

// DeleteScopeMap deletes a user-defined scope map. If tokens use it, it
// fails unless force is set; with force those tokens are left with no
// permissions (and returned, so the faces can say which).
func (s *Service) DeleteScopeMap(ctx context.Context, actor auth.Identity, name string, force bool) ([]string, error) {
	if err := s.authorizeSome(actor, auth.ManageTokens); err != nil {
		return nil, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur := s.scopeMaps[name]
	if cur == nil {
		return nil, errf(ErrNotFound, "scope map %q not found", name)
	}
	if cur.def.Type == auth.SystemDefined {
		return nil, errf(ErrForbidden, "scope map %q is built in and cannot be deleted", name)
	}
	if err := checkMap(actor, auth.ManageTokens, cur); err != nil {
		return nil, err
	}
	users := s.scopeMapView(cur).Tokens
	if len(users) > 0 && !force {
		return users, errf(ErrInUse, "scope map %q is used by %d token(s): %s; assign them another scope map first, or force the deletion (CLI --force, API ?force=true): they then lose all permissions",
			name, len(users), strings.Join(users, ", "))
	}
	// Tokens that used it are left with no scope map, so that a new map
	// with the same name never silently gives them permissions back.
	// Without force none are detached, and the database refuses to delete
	// a map that tokens use, whatever memory says (another node may have
	// given it a token a moment ago).
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchScopeMap(name)
		if force {
			rows, err := tx.QueryContext(ctx, `UPDATE tokens SET scope_map = '' WHERE scope_map = ? RETURNING name`, name)
			if err != nil {
				return fmt.Errorf("detach tokens: %w", err)
			}
			users = users[:0]
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					rows.Close()
					return fmt.Errorf("detach tokens: %w", err)
				}
				users = append(users, n)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("detach tokens: %w", err)
			}
			slices.Sort(users)
			s.touchTokens(users...)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM scope_maps WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete scope map: %w", err)
		}
		reason := "deleted"
		if len(users) > 0 {
			reason += "; tokens left without permissions: " + strings.Join(users, ", ")
		}
		return s.record(ctx, tx, actor, "scope map "+name, reason)
	})
	if err != nil {
		return nil, err
	}
	s.apply(func() {
		for _, t := range s.tokens {
			if t.scopeMap == name {
				t.scopeMap = ""
			}
		}
		delete(s.scopeMaps, name)
	})
	return users, nil
}

// describeRules lists a scope map's actions for the audit log, each
// tag-limited one followed by its tags, as in
// "repositories/team/app/content/write[tags=dev-*,pr-*]".
func describeRules(def auth.ScopeMap) string {
	parts := make([]string, 0, len(def.Actions))
	for _, a := range def.Actions {
		if tags := def.Tags[a]; len(tags) > 0 {
			a += "[tags=" + strings.Join(tags, ",") + "]"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
