// Package identity is berth's service layer for who may do what: scope maps,
// tokens and their passwords, the admin user and users with roles. The REST
// API, the CLI (through the API), the portal, the token endpoint and the
// registry's authorizer all go through it.
//
// Every identity and scope map is held in memory, compiled, so that
// authenticating and authorising a request costs no database query.
//
// Memory follows the database: a change is validated and written in a
// transaction with no lock held that requests wait for, and only once it
// has committed is it applied to memory, under a write lock held for no
// longer than that. Changes run one at a time (writeMu), so memory applies
// them in the order the database committed them. The change is in memory
// before its call returns, so the next request sees it: disabling a token,
// deleting a password or shrinking a scope map takes effect at once.
package identity

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// Errors the faces map to status codes.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("already exists")
	ErrInvalid   = errors.New("invalid")
	ErrForbidden = errors.New("forbidden")
	ErrInUse     = errors.New("in use")
)

// Error carries a message for people and a sentinel for errors.Is.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Password slot names.
const (
	SlotPassword1 = "password1"
	SlotPassword2 = "password2"
	// The admin user's slots are named as ACR names them.
	SlotAdminPassword  = "password"
	SlotAdminPassword2 = "password2"
)

// Options configure a Service.
type Options struct {
	// RegistryName is the admin user's name and the tokens' issuer and audience.
	RegistryName string
	// OwnerUsername and OwnerPassword create the first owner when the store
	// has no users. An empty password means: generate one and log it once.
	OwnerUsername string
	OwnerPassword string
	// AccessTTL and RefreshTTL are the lifetimes of issued tokens.
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	Audit      *audit.Log
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Console receives the one-time message with a generated owner
	// password; nil means os.Stderr.
	Console io.Writer

	// Feed says whether to follow the changes other nodes make: FeedAuto
	// (the default) follows them on PostgreSQL, where several nodes share
	// the database; on SQLite this process makes every change.
	Feed Feed
	// Node names this process among the nodes sharing a PostgreSQL
	// database; empty means the host name and process id.
	Node string
	// Extensions are state kept beside the identities and changed as they
	// are (ChangeExtension); their tables must exist before Open.
	Extensions []Extension
	// Secrets, when set, wraps the secrets the service stores (the signing
	// keys' private parts) with the registry's encryption key; keys stored
	// before are wrapped in place at Open.
	Secrets SecretWrapper
	// FederationAllowHTTPLoopback lets federated credentials trust http
	// issuers on loopback addresses (tests); otherwise issuers are https.
	FederationAllowHTTPLoopback bool

	// inTx, when set (tests), runs inside every transaction before it
	// commits.
	inTx func()
}

// Feed chooses whether a Service follows other nodes' changes.
type Feed int

const (
	// FeedAuto follows other nodes' changes on PostgreSQL.
	FeedAuto Feed = iota
	// FeedOff follows none: memory changes only through this Service and
	// Sync (tests of a node that has not yet seen a change).
	FeedOff
)

// Service is the identity service.
type Service struct {
	db    *sqldb.DB
	opts  Options
	log   *slog.Logger
	audit *audit.Log
	now   func() time.Time

	// writeMu serialises changes, from validation through the transaction
	// to applying them. Only its holder changes the state below, so it may
	// read that state without mu.
	writeMu sync.Mutex
	// mu guards the state below. Its write side is held only to apply a
	// committed change, never across I/O, so requests never wait for the
	// database.
	mu        sync.RWMutex
	scopeMaps map[string]*scopeMap // user-defined and built-in
	tokens    map[string]*principal
	users     map[string]*principal
	admin     *principal
	// version is the identity version memory is at (see state).
	version int64
	// keys are the signing keys by activation, verifier checks tokens
	// signed with any of them.
	keys     []*signingKey
	verifier *auth.Verifier
	// committed is the version the last change of this node committed,
	// for apply; touched is what the change in progress touches. Both are
	// writeMu's.
	committed int64
	touched   touchSet
	// pendingExt installs the extensions' state as the change being
	// committed leaves it (writeMu's).
	pendingExt []func()

	// feed follows other nodes' changes; nil where there is no need.
	feed *feed

	// userLogins caches verified user passwords: [32]byte → cachedLogin.
	userLogins sync.Map
	// argon bounds concurrent user-password checks.
	argon chan struct{}
	// flushMu serialises writes of last-used times.
	flushMu sync.Mutex
	// tokensScanned counts the tokens looked at to find the users of scope
	// maps, so that tests can check that listings do linear work.
	tokensScanned atomic.Int64
	// fullLoads counts loads of the whole state (tests check that
	// following other nodes' changes loads only what they touched).
	fullLoads atomic.Int64
	// verifyUser, if set, replaces auth.VerifyUserPassword (tests count
	// the slow hashes each kind of login pays).
	verifyUser func(hash, password string) bool

	stop chan struct{}
	done chan struct{}
}

type scopeMap struct {
	def    auth.ScopeMap
	policy *auth.Policy
	// raw is the actions as stored (JSON), to tell an unchanged map when
	// loading again.
	raw       string
	createdAt time.Time
	updatedAt time.Time
}

// principal is a token, a user or the admin user, as held in memory.
type principal struct {
	kind       auth.Kind
	name       string
	enabled    bool
	generation uint64
	createdAt  time.Time
	scopeMap   string    // tokens
	role       auth.Role // users: the role on "*", or "" for none
	// assignments are a user's roles on other patterns, sorted; the slice
	// is replaced, never changed, so identities may share it.
	assignments []auth.Assignment
	userHash    string // users: argon2id
	slots       map[string]*slot
	lastUsed    atomic.Int64 // unix ms; 0 = never
	flushed     atomic.Int64 // lastUsed as last written to the database

	// federated holds a token's federated credentials by name.
	federated map[string]*fedCred
}

type slot struct {
	name      string
	hash      string
	serial    uint64
	createdAt time.Time
	expiresAt time.Time // zero = never
	lastUsed  atomic.Int64
	flushed   atomic.Int64
}

func (s *slot) expired(now time.Time) bool {
	return !s.expiresAt.IsZero() && !now.Before(s.expiresAt)
}

// Open brings the identity tables in db up to date (on SQLite, open the
// metadata store first: its early migrations created them) and loads them,
// creating the signing key and the first owner user if needed.
func Open(ctx context.Context, db *sqldb.DB, opts Options) (*Service, error) {
	if opts.RegistryName == "" {
		opts.RegistryName = "berth"
	}
	if opts.OwnerUsername == "" {
		opts.OwnerUsername = "owner"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Console == nil {
		opts.Console = os.Stderr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	s := &Service{db: db, opts: opts, log: opts.Logger, audit: opts.Audit, now: opts.Now,
		argon: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		stop:  make(chan struct{}), done: make(chan struct{})}
	if _, err := auth.NewVerifier(s.tokenConfig(), auth.GenerateSigningKey().Public().(ed25519.PublicKey)); err != nil {
		return nil, err // the token lifetimes are wrong
	}
	if err := s.ensureSigningKey(ctx); err != nil {
		return nil, err
	}
	if err := s.wrapStoredSecrets(ctx); err != nil {
		return nil, err
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	if db.Engine() == sqldb.Postgres && opts.Feed == FeedAuto {
		f, err := s.startFeed(ctx)
		if err != nil {
			return nil, err
		}
		s.feed = f
	}
	if err := s.bootstrapOwner(ctx); err != nil {
		s.stopFeed()
		return nil, err
	}
	go s.flushLoop()
	return s, nil
}

// Close writes pending last-used times and stops background work.
func (s *Service) Close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.done
	s.stopFeed()
}

// RegistryName is the registry's name (the admin username, the token service).
func (s *Service) RegistryName() string { return s.opts.RegistryName }

func (s *Service) signingKey(ctx context.Context) (ed25519.PrivateKey, error) {
	var enc string
	err := s.db.W().QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'signing_key'`).Scan(&enc)
	if err == nil {
		return auth.DecodeSigningKey(enc)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key := auth.GenerateSigningKey()
	if enc, err = auth.EncodeSigningKey(key); err != nil {
		return nil, err
	}
	// Two nodes starting at once must agree on one key: insert only if
	// absent, then read back whichever won.
	if _, err := s.db.W().ExecContext(ctx, `INSERT INTO settings(key, value) VALUES ('signing_key', ?) ON CONFLICT(key) DO NOTHING`, enc); err != nil {
		return nil, fmt.Errorf("store signing key: %w", err)
	}
	if err := s.db.W().QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'signing_key'`).Scan(&enc); err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	return auth.DecodeSigningKey(enc)
}

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMs(v sql.NullInt64) time.Time {
	if !v.Valid || v.Int64 == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// apply puts a committed change into memory. Call it with s.writeMu held,
// after s.tx. If another node committed a change that memory has not
// applied yet, so that this change's version is not the next, memory is
// loaded anew instead: applying this change alone would leave out the
// other.
func (s *Service) apply(change func()) {
	s.mu.Lock()
	next := s.committed == s.version+1
	if next {
		change()
		for _, f := range s.pendingExt {
			f()
		}
		s.version = s.committed
	}
	s.pendingExt = nil
	s.mu.Unlock()
	if !next {
		if err := s.load(context.Background()); err != nil {
			// Memory stays behind: the feed (or the next change) loads it
			// again, and until then credential checks fail closed.
			s.log.Warn("load identities after a change", "err", err)
			s.feed.stale()
		}
	}
	s.feed.applied()
}

// Sync brings memory up to date with the database, if another node has
// changed it since (the feed does this by itself; tests call it).
func (s *Service) Sync(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.syncLocked(ctx)
}

// syncLocked loads memory anew if the database's identity version is not
// memory's. Call it with s.writeMu held.
func (s *Service) syncLocked(ctx context.Context) error {
	var v int64
	if err := s.db.R().QueryRowContext(ctx, `SELECT version FROM identity_state WHERE id = 1`).Scan(&v); err != nil {
		return fmt.Errorf("read identity version: %w", err)
	}
	if v == s.version {
		return nil
	}
	if ok, err := s.loadChanges(ctx); err != nil || ok {
		return err
	}
	return s.load(ctx)
}

// tx runs fn in a database transaction, as one identity change: the
// identity version goes up by one, and on PostgreSQL the other nodes are
// notified when it commits. Call it with s.writeMu held and s.mu not held,
// and s.apply after it.
func (s *Service) tx(ctx context.Context, fn func(*sqldb.Tx) error) error {
	s.touched = touchSet{}
	defer func() { s.touched = touchSet{} }()
	tx, err := s.db.W().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return dbRule(err)
	}
	var v int64
	if err := tx.QueryRowContext(ctx, `UPDATE identity_state SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v); err != nil {
		tx.Rollback()
		return fmt.Errorf("bump identity version: %w", err)
	}
	if err := s.recordChange(ctx, tx, v); err != nil {
		tx.Rollback()
		return err
	}
	if s.db.Engine() == sqldb.Postgres {
		// Delivered to every listening node when (and only if) tx commits.
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('`+notifyChannel+`', ?)`, strconv.FormatInt(v, 10)); err != nil {
			tx.Rollback()
			return fmt.Errorf("notify identity change: %w", err)
		}
	}
	if err := sqldb.AppendChange(ctx, tx, sqldb.Change{Time: s.now(), Kind: ChangeKind, Detail: `{"version":` + strconv.FormatInt(v, 10) + `}`}); err != nil {
		tx.Rollback()
		return err
	}
	s.pendingExt = nil
	if s.extensionsTouched() {
		// Read in the change's transaction: what it wrote, and nothing
		// committed after it.
		if s.pendingExt, err = s.loadExtensions(ctx, tx); err != nil {
			tx.Rollback()
			return err
		}
	}
	if s.opts.inTx != nil {
		s.opts.inTx()
	}
	if err := tx.Commit(); err != nil {
		return dbRule(fmt.Errorf("commit: %w", err))
	}
	s.committed = v
	return nil
}

// ChangeKind is the kind of the change-log entries of identity changes.
const ChangeKind = "identity"

// record writes a permission-change audit event in tx, the change's own
// transaction: no change is committed without its record.
func (s *Service) record(ctx context.Context, tx *sqldb.Tx, actor auth.Identity, target, reason string) error {
	if s.audit == nil {
		return nil
	}
	return s.audit.InsertTx(ctx, tx, audit.Event{Kind: audit.KindPermission, Result: audit.ResultSuccess, Identity: actor.Name,
		IdentityKind: actor.Kind.String(), Target: target, Reason: reason})
}

// flushLoop writes last-used times every few seconds, so that a request
// never waits for that write.
func (s *Service) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flushLastUsed()
			return
		case <-t.C:
			s.flushLastUsed()
		}
	}
}

func (s *Service) flushLastUsed() {
	// One flush at a time, so that an older time never overwrites a newer.
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	type upd struct {
		q       string
		args    []any
		written func()
	}
	var work []upd
	// stale adds the write of last to work if the database has another
	// value; once written, it is what flushed holds.
	stale := func(last, flushed *atomic.Int64, q string, args ...any) {
		v := last.Load()
		if v != flushed.Load() {
			work = append(work, upd{q, append([]any{v}, args...), func() { flushed.Store(v) }})
		}
	}
	s.mu.RLock()
	add := func(p *principal, table string) {
		stale(&p.lastUsed, &p.flushed, `UPDATE `+table+` SET last_used = ? WHERE name = ?`, p.name)
		for _, sl := range p.slots {
			stale(&sl.lastUsed, &sl.flushed, `UPDATE passwords SET last_used = ? WHERE owner_kind = ? AND owner = ? AND slot = ?`, p.kind.String(), p.name, sl.name)
		}
	}
	for _, p := range s.tokens {
		add(p, "tokens")
	}
	for _, p := range s.users {
		add(p, "users")
	}
	if s.admin != nil {
		for _, sl := range s.admin.slots {
			stale(&sl.lastUsed, &sl.flushed, `UPDATE passwords SET last_used = ? WHERE owner_kind = 'admin' AND slot = ?`, sl.name)
		}
	}
	s.mu.RUnlock()
	if len(work) == 0 {
		return
	}
	// Not an identity change (s.tx): no other node needs to hear of it.
	err := s.db.InTx(context.Background(), func(tx *sqldb.Tx) error {
		for _, u := range work {
			if _, err := tx.ExecContext(context.Background(), u.q, u.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Nothing is marked written: the next flush tries again.
		s.log.Warn("write last-used times", "err", err)
		return
	}
	for _, u := range work {
		u.written()
	}
}

// FlushLastUsed writes last-used times now (tests, shutdown).
func (s *Service) FlushLastUsed() { s.flushLastUsed() }
