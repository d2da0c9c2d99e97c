package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/sqldb"
)

// touchSet names what one identity change touched, so that the other
// nodes reload only that (identity_changes.detail). A change that names
// nothing makes them reload everything.
type touchSet struct {
	All       bool     `json:"all,omitempty"`
	Tokens    []string `json:"tokens,omitempty"`
	ScopeMaps []string `json:"scopeMaps,omitempty"`
	Users     []string `json:"users,omitempty"`
	Admin     bool     `json:"admin,omitempty"`
	Keys      bool     `json:"keys,omitempty"`
	// Ext: the extensions' state (ChangeExtension).
	Ext bool `json:"ext,omitempty"`
}

func (t *touchSet) empty() bool {
	return !t.All && !t.Admin && !t.Keys && !t.Ext && len(t.Tokens)+len(t.ScopeMaps)+len(t.Users) == 0
}

func (t *touchSet) add(o touchSet) {
	t.All, t.Admin, t.Keys = t.All || o.All, t.Admin || o.Admin, t.Keys || o.Keys
	t.Ext = t.Ext || o.Ext
	t.Tokens = append(t.Tokens, o.Tokens...)
	t.ScopeMaps = append(t.ScopeMaps, o.ScopeMaps...)
	t.Users = append(t.Users, o.Users...)
}

// Nil-safe accessors for read: a nil set means everything.
func (t *touchSet) tokens() []string {
	if t == nil {
		return nil
	}
	return t.Tokens
}

func (t *touchSet) scopeMaps() []string {
	if t == nil {
		return nil
	}
	return t.ScopeMaps
}

func (t *touchSet) users() []string {
	if t == nil {
		return nil
	}
	return t.Users
}

// names is the WHERE clause that selects list's rows by col: nothing for
// a nil set (everything), and no row for an empty list.
func (t *touchSet) names(col string, list []string) (string, []any) {
	if t == nil {
		return "", nil
	}
	if len(list) == 0 {
		return " WHERE 1 = 0", nil
	}
	args := make([]any, len(list))
	for i, n := range list {
		args[i] = n
	}
	return " WHERE " + col + " IN (?" + strings.Repeat(", ?", len(list)-1) + ")", args
}

// The change being made names what it touches; call these with writeMu
// held, inside the change's transaction function.
func (s *Service) touchTokens(names ...string) { s.touched.Tokens = append(s.touched.Tokens, names...) }
func (s *Service) touchScopeMap(name string)   { s.touched.ScopeMaps = append(s.touched.ScopeMaps, name) }
func (s *Service) touchUser(name string)       { s.touched.Users = append(s.touched.Users, name) }
func (s *Service) touchAdmin()                 { s.touched.Admin = true }
func (s *Service) touchKeys()                  { s.touched.Keys = true }

// recordChange stores what version v touched, in its transaction, and
// forgets the records too old for a node to need (one that far behind
// loads everything).
func (s *Service) recordChange(ctx context.Context, tx *sqldb.Tx, v int64) error {
	t := s.touched
	if t.empty() {
		t = touchSet{All: true}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO identity_changes(version, detail) VALUES (?, ?)`, v, string(b)); err != nil {
		return fmt.Errorf("record identity change: %w", err)
	}
	if v%100 == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM identity_changes WHERE version <= ?`, v-maxIncremental); err != nil {
			return fmt.Errorf("forget identity changes: %w", err)
		}
	}
	return nil
}

// maxIncremental is how many versions behind a node may be and still load
// only what changed.
const maxIncremental = 1000

// loadChanges brings memory from its version to the database's by loading
// only what the changes in between touched; it reports false (having
// changed nothing) if it cannot tell what they touched, and the caller
// loads everything instead. Call it with writeMu held.
func (s *Service) loadChanges(ctx context.Context) (bool, error) {
	tx, err := s.db.R().BeginTx(ctx, s.db.Dialect().SnapshotTx())
	if err != nil {
		return false, fmt.Errorf("load identity changes: %w", err)
	}
	defer tx.Rollback()
	var v int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM identity_state WHERE id = 1`).Scan(&v); err != nil {
		return false, fmt.Errorf("load identity version: %w", err)
	}
	if v <= s.version || v-s.version > maxIncremental {
		return false, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT version, detail FROM identity_changes WHERE version > ? AND version <= ? ORDER BY version`, s.version, v)
	if err != nil {
		return false, fmt.Errorf("load identity changes: %w", err)
	}
	var set touchSet
	next := s.version + 1
	for rows.Next() {
		var cv int64
		var detail string
		if err := rows.Scan(&cv, &detail); err != nil {
			rows.Close()
			return false, fmt.Errorf("load identity changes: %w", err)
		}
		var t touchSet
		if cv != next || json.Unmarshal([]byte(detail), &t) != nil || t.All || t.empty() {
			rows.Close()
			return false, nil
		}
		set.add(t)
		next++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("load identity changes: %w", err)
	}
	if next != v+1 {
		return false, nil
	}
	for _, l := range []*[]string{&set.Tokens, &set.ScopeMaps, &set.Users} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	st, err := s.read(ctx, tx, &set)
	if err != nil {
		return false, err
	}
	// Extensions may hold state by token (deleted with it): reload them
	// when tokens changed too.
	if set.Ext || len(set.Tokens) > 0 {
		if st.ext, err = s.loadExtensions(ctx, tx); err != nil {
			return false, err
		}
	}
	s.installPart(st, &set)
	return true, nil
}

// installPart puts into memory what set names, as st has it (absent from
// st: deleted).
func (s *Service) installPart(st *state, set *touchSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range set.ScopeMaps {
		if m := st.scopeMaps[n]; m != nil {
			s.scopeMaps[n] = m
		} else {
			delete(s.scopeMaps, n)
		}
	}
	for _, n := range set.Tokens {
		if p := st.tokens[n]; p != nil {
			keepUse(s.tokens[n], p)
			s.tokens[n] = p
		} else {
			delete(s.tokens, n)
		}
	}
	for _, n := range set.Users {
		if p := st.users[n]; p != nil {
			keepUse(s.users[n], p)
			s.users[n] = p
		} else {
			delete(s.users, n)
		}
	}
	if set.Admin && st.admin != nil {
		keepUse(s.admin, st.admin)
		s.admin = st.admin
	}
	if set.Keys && st.keys != nil {
		s.keys, s.verifier = st.keys, st.verifier
	}
	for _, f := range st.ext {
		f()
	}
	s.version = st.version
}
