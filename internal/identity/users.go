package identity

import (
	"cmp"
	"context"
	"fmt"
	"github.com/berth-registry/berth/internal/sqldb"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/berth-registry/berth/internal/auth"
)

// User is a user as the faces show it.
type User struct {
	Name string `json:"name"`
	// Role is the registry-wide role, the assignment on "*", or RoleNone.
	Role         string     `json:"role"`
	Status       string     `json:"status"`
	CreationDate time.Time  `json:"creationDate"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
	// Assignments are every role assignment of the user that the caller
	// may see, the one on "*" among them.
	Assignments []RoleAssignment `json:"roleAssignments"`
}

// UserSpec creates a user.
type UserSpec struct {
	Name string
	// Role is the registry-wide role, or RoleNone for a user who is to
	// hold only role assignments on patterns.
	Role     string
	Password string
}

// parseWideRole parses a registry-wide role, RoleNone among them ("").
func parseWideRole(s string) (auth.Role, error) {
	if s == RoleNone {
		return "", nil
	}
	r, err := auth.ParseRole(s)
	if err != nil {
		return "", errf(ErrInvalid, "%v, or none for no registry-wide role", err)
	}
	return r, nil
}

// UserUpdate changes a user. Nil fields are left alone.
type UserUpdate struct {
	Role     *string
	Password *string
	Status   *string
	// Current is the user's present password, required when users change
	// their own password: a stolen session or access token must not be
	// enough to take the account over.
	Current *string
}

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$`)

// MinUserPasswordLength is the shortest password a person may choose.
const MinUserPasswordLength = 12

func validateUserPassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinUserPasswordLength {
		return errf(ErrInvalid, "the password is too short: use at least %d characters", MinUserPasswordLength)
	}
	if len(pw) > 1024 {
		return errf(ErrInvalid, "the password is too long: use at most 1024 bytes")
	}
	return nil
}

// userView shows p to actor, with the assignments actor may see. Call it
// with s.mu or s.writeMu held.
func userView(actor auth.Identity, p *principal) User {
	st := StatusEnabled
	if !p.enabled {
		st = StatusDisabled
	}
	role := string(p.role)
	if role == "" {
		role = RoleNone
	}
	return User{Name: p.name, Role: role, Status: st, CreationDate: p.createdAt, LastUsed: msTime(p.lastUsed.Load()),
		Assignments: visibleAssignments(actor, p)}
}

// visibleUser reports whether actor sees user p: everyone sees themselves;
// a user who sees the registry's settings sees everyone; a delegated user
// sees the users who hold a role inside their patterns.
func visibleUser(actor auth.Identity, p *principal) bool {
	if actor.Kind == auth.KindUser && actor.Name == p.name || auth.CanManage(actor, auth.ViewManagement) {
		return true
	}
	for _, a := range p.allAssignments() {
		if auth.CanManageIn(actor, auth.ViewManagement, a.Pattern) {
			return true
		}
	}
	return false
}

// ListUsers returns the users actor may see, by name.
func (s *Service) ListUsers(actor auth.Identity) ([]User, error) {
	if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]User, 0, len(s.users))
	for _, p := range s.users {
		if visibleUser(actor, p) {
			out = append(out, userView(actor, p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetUser returns one user. Anyone may read their own record.
func (s *Service) GetUser(actor auth.Identity, name string) (User, error) {
	if !(actor.Kind == auth.KindUser && actor.Name == name) {
		if err := s.authorizeSome(actor, auth.ViewManagement); err != nil {
			return User{}, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.users[name]
	if p == nil {
		return User{}, errf(ErrNotFound, "user %q not found", name)
	}
	// An owner of some pattern may open any user's record (with only the
	// assignments inside their patterns), to give them a role there.
	if !visibleUser(actor, p) && !auth.CanManageSome(actor, auth.ManageUsers) {
		return User{}, errf(ErrForbidden, "%s may not see user %q, who holds no role inside %s", actor, name, auth.PatternsString(auth.ManagedPatterns(actor, auth.ViewManagement)))
	}
	return userView(actor, p), nil
}

// UserGeneration returns a user's generation, which changes when their
// password does, so that sessions begun before can be ended; ok is false
// for a user that does not exist.
func (s *Service) UserGeneration(name string) (gen uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p := s.users[name]; p != nil {
		return p.generation, true
	}
	return 0, false
}

// CreateUser creates a user with a role and a password of their choosing.
func (s *Service) CreateUser(ctx context.Context, actor auth.Identity, spec UserSpec) (User, error) {
	if err := s.authorize(actor, auth.ManageUsers); err != nil {
		return User{}, err
	}
	if !userNameRE.MatchString(spec.Name) {
		return User{}, errf(ErrInvalid, "invalid user name %q: use 3 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", spec.Name)
	}
	role, err := parseWideRole(spec.Role)
	if err != nil {
		return User{}, err
	}
	if err := validateUserPassword(spec.Password); err != nil {
		return User{}, err
	}
	hash := auth.HashUserPassword(spec.Password)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.nameTakenLocked(spec.Name) && !strings.EqualFold(spec.Name, s.opts.RegistryName) {
		return User{}, errf(ErrConflict, "user %q already exists (names are case-insensitive)", spec.Name)
	}
	if s.tokenNamedLocked(spec.Name) != "" || strings.EqualFold(spec.Name, s.opts.RegistryName) {
		return User{}, errf(ErrConflict, "%q is already the name of a token or the admin user: usernames must be unique", spec.Name)
	}
	now := s.now().UTC()
	var gen uint64
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchUser(spec.Name)
		// A registry-wide serial, so that tokens issued to a deleted user
		// never match a new user of the same name.
		var err error
		if gen, err = nextSerial(ctx, tx); err != nil {
			return err
		}
		stored, err := s.sealSecret(ctx, passwordHashPurpose, hash)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users(name, role, password_hash, enabled, generation, created_at) VALUES (?, ?, ?, TRUE, ?, ?)`,
			spec.Name, string(role), stored, gen, now.UnixMilli()); err != nil {
			return fmt.Errorf("store user: %w", err)
		}
		// A new user starts with no assignments, whatever a user of the
		// same name once held.
		if _, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE lower(user_name) = lower(?)`, spec.Name); err != nil {
			return fmt.Errorf("store user: %w", err)
		}
		return s.record(ctx, tx, actor, "user "+spec.Name, "created with role "+cmp.Or(string(role), RoleNone))
	})
	if err != nil {
		return User{}, err
	}
	p := &principal{kind: auth.KindUser, name: spec.Name, role: role, userHash: hash, enabled: true, generation: gen, createdAt: now}
	s.apply(func() { s.users[p.name] = p })
	return userView(actor, p), nil
}

// UpdateUser changes a user's role, password or status. Users may change
// their own password; everything else needs ManageUsers. The last enabled
// owner cannot be demoted or disabled.
func (s *Service) UpdateUser(ctx context.Context, actor auth.Identity, name string, u UserUpdate) (User, error) {
	isSelf := actor.Kind == auth.KindUser && actor.Name == name
	if !(isSelf && u.Role == nil && u.Status == nil) {
		if err := s.authorize(actor, auth.ManageUsers); err != nil {
			return User{}, err
		}
	}
	if isSelf && u.Password != nil {
		if u.Current == nil {
			return User{}, errf(ErrInvalid, "to change your own password, also give your current password")
		}
		if _, err := s.Authenticate(name, *u.Current); err != nil {
			return User{}, errf(ErrForbidden, "the current password is not right")
		}
	}
	var hash string
	if u.Password != nil {
		if err := validateUserPassword(*u.Password); err != nil {
			return User{}, err
		}
		hash = auth.HashUserPassword(*u.Password)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.users[name]
	if p == nil {
		return User{}, errf(ErrNotFound, "user %q not found", name)
	}
	role, enabled, gen, newHash := p.role, p.enabled, p.generation, p.userHash
	var changes []string
	if u.Role != nil {
		r, err := parseWideRole(*u.Role)
		if err != nil {
			return User{}, err
		}
		role = r
		changes = append(changes, "role "+*u.Role)
	}
	if u.Status != nil {
		switch *u.Status {
		case StatusEnabled, StatusDisabled:
			enabled = *u.Status == StatusEnabled
			changes = append(changes, "status "+*u.Status)
		default:
			return User{}, errf(ErrInvalid, "invalid status %q: use enabled or disabled", *u.Status)
		}
	}
	if hash != "" {
		newHash = hash
		changes = append(changes, "password changed")
	}
	if p.role == auth.RoleOwner && p.enabled && (role != auth.RoleOwner || !enabled) && s.enabledOwnersLocked() == 1 {
		return User{}, errf(ErrForbidden, "user %q is the last enabled owner: make another user owner first", name)
	}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchUser(name)
		// A new password or a disable revokes the access and refresh tokens
		// and sessions issued before. The new generation comes from the
		// registry-wide serial, never gen+1, which a later user of the same
		// name could be given.
		if newHash != p.userHash || (p.enabled && !enabled) {
			var err error
			if gen, err = nextSerial(ctx, tx); err != nil {
				return err
			}
		}
		stored, err := s.sealSecret(ctx, passwordHashPurpose, newHash)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET role = ?, enabled = ?, password_hash = ?, generation = ? WHERE name = ?`,
			string(role), enabled, stored, gen, name); err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		return s.record(ctx, tx, actor, "user "+name, "updated: "+joinOr(changes, "nothing"))
	})
	if err != nil {
		return User{}, err
	}
	s.apply(func() { p.role, p.enabled, p.userHash, p.generation = role, enabled, newHash, gen })
	return userView(actor, p), nil
}

func joinOr(list []string, empty string) string {
	if len(list) == 0 {
		return empty
	}
	out := list[0]
	for _, s := range list[1:] {
		out += ", " + s
	}
	return out
}

// enabledOwnersLocked counts enabled owners. Call it with s.writeMu held.
func (s *Service) enabledOwnersLocked() int {
	n := 0
	for _, p := range s.users {
		if p.role == auth.RoleOwner && p.enabled {
			n++
		}
	}
	return n
}

// DeleteUser deletes a user; the last enabled owner cannot be deleted.
func (s *Service) DeleteUser(ctx context.Context, actor auth.Identity, name string) error {
	if err := s.authorize(actor, auth.ManageUsers); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := s.users[name]
	if p == nil {
		return errf(ErrNotFound, "user %q not found", name)
	}
	if p.role == auth.RoleOwner && p.enabled && s.enabledOwnersLocked() == 1 {
		return errf(ErrForbidden, "user %q is the last enabled owner and cannot be deleted", name)
	}
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchUser(name)
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE user_name = ?`, name); err != nil {
			return fmt.Errorf("delete user's role assignments: %w", err)
		}
		return s.record(ctx, tx, actor, "user "+name, "deleted")
	})
	if err != nil {
		return err
	}
	s.apply(func() { delete(s.users, name) })
	return nil
}

// Admin is the admin user as the faces show it.
type Admin struct {
	Enabled   bool       `json:"adminUserEnabled"`
	Username  string     `json:"username"`
	Passwords []Password `json:"passwords"`
}

// adminView needs s.mu or s.writeMu held.
func (s *Service) adminView() Admin {
	return Admin{Enabled: s.admin.enabled, Username: s.admin.name, Passwords: s.admin.passwordViews(SlotAdminPassword, SlotAdminPassword2)}
}

// GetAdmin returns the admin user's state (never its password values).
func (s *Service) GetAdmin(actor auth.Identity) (Admin, error) {
	if err := s.authorize(actor, auth.ViewManagement); err != nil {
		return Admin{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.adminView(), nil
}

// SetAdminEnabled enables or disables the admin user. Enabling it for the
// first time generates both passwords and returns them, once.
func (s *Service) SetAdminEnabled(ctx context.Context, actor auth.Identity, enabled bool) (Admin, *Credentials, error) {
	if err := s.authorize(actor, auth.ManageRegistry); err != nil {
		return Admin{}, nil, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	a := s.admin
	// Disabling needs no new generation: every request checks the status.
	gen := a.generation
	state := "disabled"
	if enabled {
		state = "enabled"
	}
	var creds *Credentials
	var fresh map[string]*slot
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchAdmin()
		for k, v := range map[string]string{"admin_enabled": strconv.FormatBool(enabled), "admin_generation": strconv.FormatUint(gen, 10)} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return fmt.Errorf("store admin setting: %w", err)
			}
		}
		if enabled && len(a.slots) == 0 {
			var err error
			if creds, fresh, err = s.generateLocked(ctx, tx, a, []string{SlotAdminPassword, SlotAdminPassword2}, time.Time{}); err != nil {
				return err
			}
		}
		return s.record(ctx, tx, actor, "admin user", state)
	})
	if err != nil {
		return Admin{}, nil, err
	}
	s.apply(func() {
		maps.Copy(a.slots, fresh)
		a.enabled, a.generation = enabled, gen
	})
	return s.adminView(), creds, nil
}

// RenewAdminPassword regenerates one of the admin user's passwords
// ("password" or "password2") and returns it, once.
func (s *Service) RenewAdminPassword(ctx context.Context, actor auth.Identity, slotName string) (*Credentials, error) {
	if err := s.authorize(actor, auth.ManageRegistry); err != nil {
		return nil, err
	}
	if slotName != SlotAdminPassword && slotName != SlotAdminPassword2 {
		return nil, errf(ErrInvalid, "invalid password name %q: use password or password2", slotName)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var creds *Credentials
	var fresh map[string]*slot
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchAdmin()
		var err error
		if creds, fresh, err = s.generateLocked(ctx, tx, s.admin, []string{slotName}, time.Time{}); err != nil {
			return err
		}
		return s.record(ctx, tx, actor, "admin user", "renewed "+slotName)
	})
	if err != nil {
		return nil, err
	}
	s.apply(func() { maps.Copy(s.admin.slots, fresh) })
	return creds, nil
}
