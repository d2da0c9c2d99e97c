package trust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
)

// ErrForbidden means the caller may not read or change signature policies.
var ErrForbidden = errors.New("forbidden")

// AuditLog records policy changes in the transaction that makes them.
type AuditLog interface {
	InsertTx(ctx context.Context, tx *sqldb.Tx, e audit.Event) error
}

// Options configure a Service.
type Options struct {
	DB      *sqldb.DB // required; Migrate must have run
	Content Content   // required
	Blobs   Blobs     // required
	Audit   AuditLog
	Logger  *slog.Logger
	// CacheSize bounds the verdicts held; default 10,000.
	CacheSize int
}

// Service holds the signature policies and answers whether a manifest may
// be pulled under them.
type Service struct {
	store   store
	content Content
	check   checker
	audit   AuditLog
	log     *slog.Logger

	mu       sync.Mutex
	version  int64 // trust_state.version the policies were compiled at
	loaded   bool
	policies []*compiled

	// changer, once attached, carries policy changes as identity changes
	// (the identity feed brings them to every node), and policies are
	// read from memory instead of the database on every pull.
	changer Changer

	cache verdictCache
	// verifications counts the verdicts computed (cache misses).
	verifications atomic.Int64
	// parents remembers which signed index covered a child manifest, so
	// that the next pull of the child looks there first.
	parents parentHints
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Content == nil || o.Blobs == nil {
		return nil, errors.New("trust: DB, Content and Blobs are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	return &Service{store: store{db: o.DB, now: time.Now}, content: o.Content, check: checker{blobs: o.Blobs}, audit: o.Audit, log: o.Logger,
		cache: verdictCache{max: o.CacheSize}, parents: parentHints{max: o.CacheSize}}, nil
}

// Changer is the identity service, as the trust service uses it: policy
// changes are identity changes (identity.Service.ChangeExtension), which
// reach every node through its feed before the call returns, and Current
// says whether this node is confirmed to have every change.
type Changer interface {
	ChangeExtension(ctx context.Context, actor auth.Identity, perm auth.Permission, target, reason string, fn func(*sqldb.Tx) error) error
	Current() error
}

// Attach makes c carry policy changes; the service must also be one of
// c's extensions (LoadExtension), which keeps the policies in memory.
// Without it every pull reads the policies' version from the database.
func (s *Service) Attach(c Changer) { s.changer = c }

// LoadExtension implements identity.Extension: it reads and compiles
// every policy in tx.
func (s *Service) LoadExtension(ctx context.Context, tx *sqldb.Tx) (func(), error) {
	ps, v, err := s.store.loadTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	cs, err := compileAll(ps)
	if err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		s.policies, s.version, s.loaded = cs, v, true
		s.mu.Unlock()
	}, nil
}

func compileAll(ps []Policy) ([]*compiled, error) {
	var cs []*compiled
	for _, p := range ps {
		c, err := compile(p)
		if err != nil {
			// Stored policies were checked when written; one that no
			// longer compiles must not fail open.
			return nil, fmt.Errorf("signature policy %q: %w", p.Name, err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// current returns the compiled policies as the database has them now.
// Attached to the identity service, they are in memory, kept current by
// its feed (and refused, as credentials are, when this node cannot
// confirm it has every change); otherwise it reads the state version on
// each call and reloads when it moved (a change made on any node).
func (s *Service) current(ctx context.Context) ([]*compiled, error) {
	if s.changer != nil {
		if err := s.changer.Current(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		ps, loaded := s.policies, s.loaded
		s.mu.Unlock()
		if loaded {
			return ps, nil
		}
	}
	v, err := s.store.version(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && v == s.version {
		return s.policies, nil
	}
	ps, v, err := s.store.load(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := compileAll(ps)
	if err != nil {
		return nil, err
	}
	s.policies, s.version, s.loaded = cs, v, true
	return cs, nil
}

// Decision is the answer for one pull.
type Decision struct {
	// Refusal, when set, is the message of the 403 DENIED: an enforcing
	// policy's signature is missing.
	Refusal string
	// Findings are audit-mode policies whose signature is missing; the
	// pull is served and they are recorded.
	Findings []string
}

// CheckPull decides whether manifest m of repo may be served under the
// policies that match repo. Signature artifacts themselves are always
// served.
func (s *Service) CheckPull(ctx context.Context, repo string, m meta.Manifest) (Decision, error) {
	ps, err := s.current(ctx)
	if err != nil {
		return Decision{}, err
	}
	var match []*compiled
	for _, p := range ps {
		if p.pattern.Matches(repo) {
			match = append(match, p)
		}
	}
	if len(match) == 0 || IsSignatureArtifact(m) {
		return Decision{}, nil
	}
	ev := evaluation{s: s, repo: repo, sigs: map[digest.Digest]signatures{}}
	var d Decision
	for _, p := range match {
		ok, reason, err := ev.satisfied(ctx, p, m, true)
		if err != nil {
			return Decision{}, err
		}
		if ok {
			continue
		}
		msg := fmt.Sprintf("signature policy %q requires a valid %s of %s in repository %q: %s", p.Name, requirement(p.Require), m.Digest, repo, reason)
		if p.Mode == ModeEnforce {
			if d.Refusal == "" {
				d.Refusal = msg
			}
			continue
		}
		d.Findings = append(d.Findings, msg)
	}
	return d, nil
}

func requirement(r Require) string {
	switch r {
	case RequireCosign:
		return "cosign signature"
	case RequireNotation:
		return "Notation signature"
	}
	return "cosign or Notation signature"
}

// evaluation is one CheckPull: the signatures found are looked up once
// per manifest, whatever the number of policies.
type evaluation struct {
	s    *Service
	repo string
	sigs map[digest.Digest]signatures
}

func (e *evaluation) signatures(ctx context.Context, d digest.Digest) (signatures, error) {
	if sg, ok := e.sigs[d]; ok {
		return sg, nil
	}
	sg, err := find(ctx, e.s.content, e.repo, d)
	if err != nil {
		return sg, err
	}
	e.sigs[d] = sg
	return sg, nil
}

// satisfied reports whether m carries a signature policy p accepts, or,
// for an image manifest when viaIndex is set, whether an index of the
// repository that lists m does (a signed index covers the children it
// names by digest: that is what `cosign sign` and `notation sign` sign for
// a multi-platform tag, and a client pulls the index first).
func (e *evaluation) satisfied(ctx context.Context, p *compiled, m meta.Manifest, viaIndex bool) (bool, string, error) {
	ok, reason, err := e.signed(ctx, p, m)
	if err != nil || ok || !viaIndex || indexTypes[m.MediaType] {
		return ok, reason, err
	}
	for _, idx := range e.candidates(ctx, m.Digest) {
		if !lists(idx, m.Digest) {
			continue
		}
		ok, _, err := e.signed(ctx, p, idx)
		if err != nil {
			return false, "", err
		}
		if ok {
			e.s.parents.put(e.repo, m.Digest, idx.Digest)
			return true, "", nil
		}
	}
	return false, reason, nil
}

// signed checks m's own signatures, through the verdict cache: a verdict
// is kept under the manifest, the policy's version and the signature
// manifests found, so a pushed or deleted signature or a changed policy
// is a miss.
func (e *evaluation) signed(ctx context.Context, p *compiled, m meta.Manifest) (bool, string, error) {
	sg, err := e.signatures(ctx, m.Digest)
	if err != nil {
		return false, "", err
	}
	k := verdictKey{repo: e.repo, digest: m.Digest, policy: p.Name, version: p.Version, sigs: sg.key}
	if v, ok := e.s.cache.get(k, e.s.store.now()); ok {
		return v.ok, v.reason, nil
	}
	target := ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Content))}
	e.s.verifications.Add(1)
	ok, reason := e.s.check.verify(ctx, p, e.repo, target, sg)
	if ctx.Err() != nil {
		return false, "", ctx.Err() // a verdict cut short is not cached
	}
	e.s.cache.put(k, verdict{ok: ok, reason: reason, at: e.s.store.now()})
	return ok, reason, nil
}

// maxIndexScan bounds the tags looked at for an index that lists a child.
const maxIndexScan = 1000

// candidates are the indexes that may list child: the one that did last
// time, then the indexes tags point at.
func (e *evaluation) candidates(ctx context.Context, child digest.Digest) []meta.Manifest {
	var out []meta.Manifest
	seen := map[digest.Digest]bool{}
	if d, ok := e.s.parents.get(e.repo, child); ok {
		if m, err := e.s.content.Manifest(ctx, e.repo, d.String()); err == nil {
			out = append(out, m)
			seen[d] = true
			if lists(m, child) {
				return out
			}
		}
	}
	tms, err := e.s.content.TagManifests(ctx, e.repo, "", maxIndexScan)
	if err != nil {
		e.s.log.Warn("trust: list tags for the index of a child manifest", "repository", e.repo, "err", err)
		return out
	}
	for _, tm := range tms {
		if !indexTypes[tm.MediaType] || seen[tm.Digest] {
			continue
		}
		seen[tm.Digest] = true
		m, err := e.s.content.Manifest(ctx, e.repo, tm.Digest.String())
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

var indexTypes = map[string]bool{ocispec.MediaTypeImageIndex: true, "application/vnd.docker.distribution.manifest.list.v2+json": true}

// lists reports whether index idx names child among its manifests.
func lists(idx meta.Manifest, child digest.Digest) bool {
	if !indexTypes[idx.MediaType] {
		return false
	}
	var doc struct {
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(idx.Content, &doc) != nil {
		return false
	}
	return slices.ContainsFunc(doc.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == child })
}

// IsSignatureArtifact reports whether m is a signature (or attestation)
// that cosign or Notation wrote: those are never held back by a policy,
// since verifying clients must read them.
func IsSignatureArtifact(m meta.Manifest) bool {
	switch m.ArtifactType {
	case CosignArtifactType, NotationArtifactType, "application/vnd.dev.cosign.artifact.att.v1+json", "application/vnd.dev.sigstore.bundle.v0.3+json":
		return true
	}
	if indexTypes[m.MediaType] {
		return false
	}
	layers, err := parseLayers(m)
	if err != nil || len(layers) == 0 {
		return false
	}
	for _, l := range layers {
		if l.MediaType != CosignSimpleSigning && l.MediaType != "application/vnd.dsse.envelope.v1+json" {
			return false
		}
	}
	return true
}

// verdictKey names everything a verdict was computed from.
type verdictKey struct {
	repo    string
	digest  digest.Digest
	policy  string
	version int64
	sigs    string
}

type verdict struct {
	ok     bool
	reason string
	at     time.Time
}

// verdictTTL bounds how long a verdict is reused: signatures and policies
// are in its key, but time is not, and a certificate may expire or be
// revoked meanwhile.
const verdictTTL = 5 * time.Minute

// verdictCache is a bounded map of verdicts; when full it starts over,
// which costs only re-verification.
type verdictCache struct {
	mu  sync.Mutex
	m   map[verdictKey]verdict
	max int
}

func (c *verdictCache) get(k verdictKey, now time.Time) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if ok && now.Sub(v.at) >= verdictTTL {
		delete(c.m, k)
		return verdict{}, false
	}
	return v, ok
}

func (c *verdictCache) put(k verdictKey, v verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = map[verdictKey]verdict{}
	}
	c.m[k] = v
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

type parentKey struct {
	repo  string
	child digest.Digest
}

// parentHints is a bounded map from a child manifest to the index that
// covered it; only a hint: the index is verified again each time.
type parentHints struct {
	mu  sync.Mutex
	m   map[parentKey]digest.Digest
	max int
}

func (h *parentHints) get(repo string, child digest.Digest) (digest.Digest, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.m[parentKey{repo, child}]
	return d, ok
}

func (h *parentHints) put(repo string, child, idx digest.Digest) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= h.max {
		h.m = map[parentKey]digest.Digest{}
	}
	h.m[parentKey{repo, child}] = idx
}

// Management: reading policies takes ViewManagement, changing them
// ManageRegistry (they are registry settings).

// List returns every policy.
func (s *Service) List(ctx context.Context, actor auth.Identity) ([]Policy, error) {
	if !auth.CanManage(actor, auth.ViewManagement) {
		return nil, fmt.Errorf("%w: %s may not read signature policies", ErrForbidden, actor)
	}
	ps, _, err := s.store.load(ctx)
	if ps == nil {
		ps = []Policy{}
	}
	return ps, err
}

// Get returns the policy named name.
func (s *Service) Get(ctx context.Context, actor auth.Identity, name string) (Policy, error) {
	ps, err := s.List(ctx, actor)
	if err != nil {
		return Policy{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return Policy{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Create stores a new policy; it applies to the next pull on every node.
func (s *Service) Create(ctx context.Context, actor auth.Identity, p Policy) (Policy, error) {
	if !auth.CanManage(actor, auth.ManageRegistry) {
		return Policy{}, fmt.Errorf("%w: %s may not change signature policies", ErrForbidden, actor)
	}
	if err := p.Normalize(); err != nil {
		return Policy{}, err
	}
	if s.changer != nil {
		err := s.changer.ChangeExtension(ctx, actor, auth.ManageRegistry, "signature policy "+p.Name, "created", func(tx *sqldb.Tx) error {
			var err error
			p, err = s.store.createTx(ctx, tx, p)
			return err
		})
		if err != nil {
			return Policy{}, err
		}
		return p, nil
	}
	return s.store.create(ctx, p, s.recorder(actor, "signature policy "+p.Name, "created"))
}

// Update replaces the settings of the policy named p.Name.
func (s *Service) Update(ctx context.Context, actor auth.Identity, p Policy) (Policy, error) {
	if !auth.CanManage(actor, auth.ManageRegistry) {
		return Policy{}, fmt.Errorf("%w: %s may not change signature policies", ErrForbidden, actor)
	}
	if err := p.Normalize(); err != nil {
		return Policy{}, err
	}
	if s.changer != nil {
		err := s.changer.ChangeExtension(ctx, actor, auth.ManageRegistry, "signature policy "+p.Name, "updated", func(tx *sqldb.Tx) error {
			var err error
			p, err = s.store.updateTx(ctx, tx, p)
			return err
		})
		if err != nil {
			return Policy{}, err
		}
		return p, nil
	}
	return s.store.update(ctx, p, s.recorder(actor, "signature policy "+p.Name, "updated"))
}

// Delete removes the policy named name.
func (s *Service) Delete(ctx context.Context, actor auth.Identity, name string) error {
	if !auth.CanManage(actor, auth.ManageRegistry) {
		return fmt.Errorf("%w: %s may not change signature policies", ErrForbidden, actor)
	}
	if s.changer != nil {
		return s.changer.ChangeExtension(ctx, actor, auth.ManageRegistry, "signature policy "+name, "deleted", func(tx *sqldb.Tx) error {
			return s.store.deleteTx(ctx, tx, name)
		})
	}
	return s.store.delete(ctx, name, s.recorder(actor, "signature policy "+name, "deleted"))
}

// recorder writes the audit record of a change in its transaction.
func (s *Service) recorder(actor auth.Identity, target, reason string) func(context.Context, *sqldb.Tx) error {
	return func(ctx context.Context, tx *sqldb.Tx) error {
		if s.audit == nil {
			return nil
		}
		return s.audit.InsertTx(ctx, tx, audit.Event{Kind: audit.KindPermission, Result: audit.ResultSuccess, Identity: actor.Name,
			IdentityKind: actor.Kind.String(), Target: target, Reason: reason})
	}
}
