package netrule

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/sqldb"
)

// Action is what the registry does with a client address no rule names.
type Action string

// The default actions, spelled as ACR spells them.
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
)

// ParseAction accepts Allow or Deny in any case.
func ParseAction(s string) (Action, error) {
	switch {
	case strings.EqualFold(s, string(Allow)):
		return Allow, nil
	case strings.EqualFold(s, string(Deny)):
		return Deny, nil
	}
	return "", &identity.Error{Kind: identity.ErrInvalid, Msg: fmt.Sprintf("invalid default action %q: use Allow or Deny", s)}
}

// Bounds on what is stored: far beyond ACR's 100 registry rules, and cheap
// to look up at any size (a binary search).
const (
	MaxRules      = 65536
	MaxTokenRules = 1024
)

// Rule is one registry-wide rule: client addresses in the range may reach
// the registry when the default action is Deny.
type Rule struct {
	IPAddressOrRange string    `json:"ipAddressOrRange"`
	Action           Action    `json:"action"` // always Allow, as in ACR
	CreatedAt        time.Time `json:"createdAt"`
}

// Settings are the registry-wide network settings.
type Settings struct {
	DefaultAction Action `json:"defaultAction"`
	IPRules       []Rule `json:"ipRules"`
}

// policy is the rules in force, immutable once installed.
type policy struct {
	defaultAction Action
	rules         []Rule
	set           *Set
	// tokens holds the allowed addresses of the tokens that have any, by
	// token name.
	tokens map[string]tokenRules
}

type tokenRules struct {
	list []string
	set  *Set
}

func (p *policy) restricts() bool { return p.defaultAction == Deny || len(p.tokens) > 0 }

// Denied is a request refused by the network rules: 403 DENIED.
type Denied struct {
	Addr  string
	Token string // set when the token's allowed addresses refused it
}

func (d *Denied) Error() string {
	if d.Token != "" {
		return fmt.Sprintf("client address %s is not allowed for token %s", d.Addr, d.Token)
	}
	return fmt.Sprintf("client address %s is not allowed by the registry's network rules", d.Addr)
}

// Options configure a Service.
type Options struct {
	// OnDenied is told of every refusal (audit, metrics).
	OnDenied func(r *http.Request, d *Denied)
	// Current reports whether the rules in memory are confirmed current
	// (identity.Service.Current); a node that cannot tell refuses
	// restricted requests rather than apply rules a change has replaced.
	Current func() error
	Now     func() time.Time
}

// Service holds the network rules in memory and changes them through the
// identity service, whose feed carries every change to every node.
type Service struct {
	db   *sqldb.DB
	opts Options
	cur  atomic.Pointer[policy]
	id   *identity.Service
}

// Open brings the network rule tables up to date and loads them. Call it
// after the identity tables exist (a trigger keeps tokens' rules) and
// before identity.Open, which it is an Extension of; then Attach.
func Open(ctx context.Context, db *sqldb.DB, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnDenied == nil {
		opts.OnDenied = func(*http.Request, *Denied) {}
	}
	if opts.Current == nil {
		opts.Current = func() error { return nil }
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	s := &Service{db: db, opts: opts}
	s.cur.Store(&policy{defaultAction: Allow, set: NewSet(nil)})
	return s, nil
}

// Attach gives the service the identity service it changes rules through
// (and whose Current it asks, unless Options.Current was set).
func (s *Service) Attach(id *identity.Service) { s.id = id }

// LoadExtension implements identity.Extension: it reads every rule in tx.
func (s *Service) LoadExtension(ctx context.Context, tx *sqldb.Tx) (func(), error) {
	p := &policy{defaultAction: Allow, tokens: map[string]tokenRules{}}
	var act string
	err := tx.QueryRowContext(ctx, `SELECT default_action FROM network_settings WHERE id = 1`).Scan(&act)
	switch {
	case err == nil:
		if p.defaultAction, err = ParseAction(act); err != nil {
			return nil, fmt.Errorf("load network settings: %w", err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("load network settings: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT prefix, created_at FROM network_rules ORDER BY prefix`)
	if err != nil {
		return nil, fmt.Errorf("load network rules: %w", err)
	}
	var prefixes []netip.Prefix
	for rows.Next() {
		var v string
		var created int64
		if err := rows.Scan(&v, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load network rules: %w", err)
		}
		pf, err := ParsePrefix(v)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("load network rules: %w", err)
		}
		prefixes = append(prefixes, pf)
		p.rules = append(p.rules, Rule{IPAddressOrRange: v, Action: Allow, CreatedAt: time.UnixMilli(created).UTC()})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load network rules: %w", err)
	}
	p.set = NewSet(prefixes)
	rows, err = tx.QueryContext(ctx, `SELECT token, prefix FROM token_network_rules ORDER BY token, prefix`)
	if err != nil {
		return nil, fmt.Errorf("load token network rules: %w", err)
	}
	byToken := map[string][]netip.Prefix{}
	for rows.Next() {
		var tok, v string
		if err := rows.Scan(&tok, &v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load token network rules: %w", err)
		}
		pf, err := ParsePrefix(v)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("load token network rules: %w", err)
		}
		byToken[tok] = append(byToken[tok], pf)
		tr := p.tokens[tok]
		tr.list = append(tr.list, v)
		p.tokens[tok] = tr
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load token network rules: %w", err)
	}
	for tok, ps := range byToken {
		tr := p.tokens[tok]
		tr.set = NewSet(ps)
		p.tokens[tok] = tr
	}
	return func() { s.cur.Store(p) }, nil
}

func (s *Service) current() error {
	if err := s.opts.Current(); err != nil {
		return err
	}
	if s.id != nil {
		return s.id.Current()
	}
	return nil
}

func parseAddr(ip string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, false
	}
	return Normalize(a), true
}

// CheckRegistry answers whether a client at ip (the caller's address
// behind trusted proxies) may use the registry: nil, a *Denied (which
// OnDenied was told of), or identity.ErrUnavailable when this node cannot
// confirm its rules are current.
func (s *Service) CheckRegistry(r *http.Request, ip string) error {
	p := s.cur.Load()
	if p.defaultAction != Deny {
		return nil
	}
	if err := s.current(); err != nil {
		return err
	}
	if a, ok := parseAddr(ip); ok && p.set.Contains(a) {
		return nil
	}
	d := &Denied{Addr: ip}
	s.opts.OnDenied(r, d)
	return d
}

// CheckToken answers whether token may be used from ip: nil, or a *Denied
// (which OnDenied was told of). A token without allowed addresses may be
// used from anywhere the registry's rules allow.
func (s *Service) CheckToken(r *http.Request, token, ip string) error {
	p := s.cur.Load()
	tr, ok := p.tokens[token]
	if !ok {
		return nil
	}
	if a, ok := parseAddr(ip); ok && tr.set.Contains(a) {
		return nil
	}
	d := &Denied{Addr: ip, Token: token}
	s.opts.OnDenied(r, d)
	return d
}

// Restricts reports whether any rule is in force (a default action of
// Deny, or a token with allowed addresses).
func (s *Service) Restricts() bool { return s.cur.Load().restricts() }

func (s *Service) settings(p *policy) Settings {
	return Settings{DefaultAction: p.defaultAction, IPRules: slices.Clone(p.rules)}
}

func forbidden(actor auth.Identity, what string) error {
	return &identity.Error{Kind: identity.ErrForbidden, Msg: fmt.Sprintf("%s is not allowed to %s", actor, what)}
}

func invalid(format string, args ...any) error {
	return &identity.Error{Kind: identity.ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

// Settings returns the registry-wide settings (who may read the registry's
// settings may read them).
func (s *Service) Settings(actor auth.Identity) (Settings, error) {
	if !auth.CanManage(actor, auth.ViewManagement) {
		return Settings{}, forbidden(actor, "read the network rules: it needs read access to the registry's settings (reader, contributor or owner)")
	}
	return s.settings(s.cur.Load()), nil
}

// parseAll parses rules, refusing the first bad one and dropping repeats.
func parseAll(values []string) ([]string, error) {
	var out []string
	seen := map[netip.Prefix]bool{}
	for _, v := range values {
		p, err := ParsePrefix(v)
		if err != nil {
			return nil, invalid("%s", err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	return out, nil
}

func (s *Service) change(ctx context.Context, actor auth.Identity, perm auth.Permission, target, reason string, fn func(*sqldb.Tx) error) error {
	if s.id == nil {
		return errors.New("network rules: no identity service attached")
	}
	return s.id.ChangeExtension(ctx, actor, perm, target, reason, fn)
}

// AddRules adds registry-wide rules (CIDRs or addresses); rules already
// there are left as they are.
func (s *Service) AddRules(ctx context.Context, actor auth.Identity, values []string) (Settings, error) {
	rules, err := parseAll(values)
	if err != nil {
		return Settings{}, err
	}
	if len(rules) == 0 {
		return Settings{}, invalid("name at least one IP address or CIDR range")
	}
	now := s.opts.Now().UnixMilli()
	err = s.change(ctx, actor, auth.ManageRegistry, "network rules", "added: "+summary(rules), func(tx *sqldb.Tx) error {
		for _, r := range rules {
			if _, err := tx.ExecContext(ctx, `INSERT INTO network_rules(prefix, created_at) VALUES (?, ?) ON CONFLICT(prefix) DO NOTHING`, r, now); err != nil {
				return fmt.Errorf("add network rule: %w", err)
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM network_rules`).Scan(&n); err != nil {
			return fmt.Errorf("count network rules: %w", err)
		}
		if n > MaxRules {
			return invalid("a registry holds at most %d network rules; this would make %d: merge ranges into wider CIDRs", MaxRules, n)
		}
		return nil
	})
	if err != nil {
		return Settings{}, err
	}
	return s.settings(s.cur.Load()), nil
}

// RemoveRules removes registry-wide rules; every one must exist.
func (s *Service) RemoveRules(ctx context.Context, actor auth.Identity, values []string) (Settings, error) {
	rules, err := parseAll(values)
	if err != nil {
		return Settings{}, err
	}
	if len(rules) == 0 {
		return Settings{}, invalid("name at least one IP address or CIDR range")
	}
	err = s.change(ctx, actor, auth.ManageRegistry, "network rules", "removed: "+summary(rules), func(tx *sqldb.Tx) error {
		for _, r := range rules {
			res, err := tx.ExecContext(ctx, `DELETE FROM network_rules WHERE prefix = ?`, r)
			if err != nil {
				return fmt.Errorf("remove network rule: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return &identity.Error{Kind: identity.ErrNotFound, Msg: fmt.Sprintf("no network rule %s (list them with berth network-rule list)", r)}
			}
		}
		return nil
	})
	if err != nil {
		return Settings{}, err
	}
	return s.settings(s.cur.Load()), nil
}

// SetDefaultAction sets what happens to addresses no rule names.
func (s *Service) SetDefaultAction(ctx context.Context, actor auth.Identity, a Action) (Settings, error) {
	a, err := ParseAction(string(a))
	if err != nil {
		return Settings{}, err
	}
	err = s.change(ctx, actor, auth.ManageRegistry, "network rules", "default action "+string(a), func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO network_settings(id, default_action) VALUES (1, ?)
			ON CONFLICT(id) DO UPDATE SET default_action = excluded.default_action`, string(a))
		if err != nil {
			return fmt.Errorf("set default action: %w", err)
		}
		return nil
	})
	if err != nil {
		return Settings{}, err
	}
	return s.settings(s.cur.Load()), nil
}

// TokenAddresses returns the addresses token may be used from (none: any
// the registry allows). Whoever may see the token may see them.
func (s *Service) TokenAddresses(actor auth.Identity, token string) ([]string, error) {
	t, err := s.id.GetToken(actor, token)
	if err != nil {
		return nil, err
	}
	return s.Token(t.Name), nil
}

// Token returns the addresses token may be used from, for faces that have
// already checked that the caller may see it.
func (s *Service) Token(token string) []string {
	return slices.Clone(s.cur.Load().tokens[token].list)
}

// SetTokenAddresses replaces the addresses token may be used from; none
// lifts the restriction.
func (s *Service) SetTokenAddresses(ctx context.Context, actor auth.Identity, token string, values []string) ([]string, error) {
	rules, err := parseAll(values)
	if err != nil {
		return nil, err
	}
	if len(rules) > MaxTokenRules {
		return nil, invalid("a token has at most %d allowed addresses, not %d: merge ranges into wider CIDRs", MaxTokenRules, len(rules))
	}
	t, err := s.id.GetToken(actor, token)
	if err != nil {
		return nil, err
	}
	reason := "allowed addresses: " + summary(rules)
	if len(rules) == 0 {
		reason = "allowed addresses: any"
	}
	now := s.opts.Now().UnixMilli()
	err = s.change(ctx, actor, auth.ManageTokens, "token "+t.Name, reason, func(tx *sqldb.Tx) error {
		// The token may have been deleted through another node meanwhile:
		// rules of no token would wait for the next of its name.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE name = ?`, t.Name).Scan(&n); err != nil {
			return fmt.Errorf("find token: %w", err)
		}
		if n == 0 {
			return &identity.Error{Kind: identity.ErrNotFound, Msg: fmt.Sprintf("token %q not found", t.Name)}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM token_network_rules WHERE token = ?`, t.Name); err != nil {
			return fmt.Errorf("set token addresses: %w", err)
		}
		for _, r := range rules {
			if _, err := tx.ExecContext(ctx, `INSERT INTO token_network_rules(token, prefix, created_at) VALUES (?, ?, ?)`, t.Name, r, now); err != nil {
				return fmt.Errorf("set token addresses: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.Token(t.Name), nil
}

// summary names rules for an audit record, shortened when there are many.
func summary(rules []string) string {
	const show = 10
	if len(rules) <= show {
		return strings.Join(rules, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(rules[:show], ", "), len(rules)-show)
}
