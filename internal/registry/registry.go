// Package registry serves the OCI Distribution API (v1.1): pulling, pushing,
// listing and deleting content, and the referrers API. It decides nothing about
// permissions itself: every request is mapped to the accesses it needs
// (requiredAccess, after auth's operation table) and handed to the
// Authorizer.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

// Blobs is the content store the registry needs.
type Blobs interface {
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	Touch(ctx context.Context, d digest.Digest) error
	// Open returns the content; a store on files returns an *os.File, which
	// net/http sends with sendfile.
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
	PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error)
	Quarantine(ctx context.Context, b storage.BlobInfo, why storage.Damage) (bool, error)
	StartUpload(ctx context.Context, repo, owner string) (storage.UploadInfo, error)
	Upload(ctx context.Context, id string) (storage.UploadInfo, error)
	Append(ctx context.Context, id string, start int64, r io.Reader) (int64, error)
	Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error)
	Cancel(ctx context.Context, id string) error
}

// Metadata is the metadata store the registry needs.
type Metadata interface {
	Repository(ctx context.Context, name string) (meta.Repository, error)
	LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64) error
	Blob(ctx context.Context, repo string, d digest.Digest) (int64, error)
	ReferenceBlob(ctx context.Context, repo string, d digest.Digest) error
	UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error
	RepositoriesWithBlob(ctx context.Context, d digest.Digest) ([]string, error)
	PutManifest(ctx context.Context, req meta.PutManifestRequest) error
	Manifest(ctx context.Context, repo, ref string) (meta.Manifest, error)
	DeleteManifest(ctx context.Context, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, repo, tag string) error
	Tags(ctx context.Context, repo, last string, n int) ([]string, error)
	Repositories(ctx context.Context, last string, n int) ([]string, error)
	Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]meta.Referrer, error)
	// Reachable reports whether manifest d is reachable from a tag that
	// from allows (meta.Store.Reachable).
	Reachable(ctx context.Context, repo string, from func(tag string) bool, d digest.Digest) (bool, error)
	// AnyTag reports whether repo has a tag that f allows.
	AnyTag(ctx context.Context, repo string, f func(tag string) bool) (bool, error)
}

// Action is a data-plane action, named as in access tokens.
type Action string

// The actions of DESIGN.md §2.
const (
	ActionPull          Action = "pull"
	ActionPush          Action = "push"
	ActionDelete        Action = "delete"
	ActionMetadataRead  Action = "metadata_read"
	ActionMetadataWrite Action = "metadata_write"
	// ActionCatalog is the "*" of registry:catalog:*.
	ActionCatalog Action = "*"
)

// Access is one thing a request needs: an action on a repository, or on the
// registry itself (the catalog).
type Access struct {
	Type   string // "repository" or "registry"
	Name   string // repository name, or "catalog"
	Action Action
	// Or, when set, is an action that satisfies the need as well as Action.
	Or Action
	// Op is the operation on the repository, which the authorizer asks
	// auth.Permits about; Action and Or are its actions.
	Op auth.Operation
}

// Caller is the authenticated identity behind a request, asked later about
// access the route did not need up front (catalog filtering, mount sources).
type Caller interface {
	Name() string
	Can(repo string, op auth.Operation) bool
	// CanSee reports whether the caller has any action on repo (catalog).
	CanSee(repo string) bool
	// TagCheck returns nil when the caller may perform op on every tag of
	// repo, or else a function whose error (nil or an *auth.DeniedError)
	// says whether it may on one tag: scope maps may limit rules to tags,
	// which the token grammar cannot say (auth.TagCheck).
	TagCheck(repo string, op auth.Operation) func(tag string) error
	// CatalogTagFilter returns nil when CanSee decides alone, or else a
	// function: the catalog lists repo only if one of its tags passes it
	// (auth.CatalogTagFilter).
	CatalogTagFilter(repo string) func(tag string) bool
}

// Authorizer authenticates a request and checks the accesses it needs. On
// failure it returns an *Error (401 with a challenge, 403 DENIED, 429).
type Authorizer interface {
	Authorize(r *http.Request, need []Access) (Caller, error)
}

// Event is something worth an audit record.
type Event struct {
	Kind       string // "push", "pull", "delete", "untag"
	Repository string
	Tag        string
	Digest     digest.Digest
	Caller     Caller
	Request    *http.Request
	// Reason and Refused describe a signature policy's finding (Kind
	// EventTrust): what was missing, and whether the pull was refused.
	Reason  string
	Refused bool
}

// Options configure a Registry.
type Options struct {
	Blobs      Blobs
	Meta       Metadata
	Authorizer Authorizer
	Logger     *slog.Logger
	// BaseURL, when set, makes Location headers absolute.
	BaseURL string
	// OnEvent, when set, is called after each push and delete, before the
	// answer (an error fails the request: the change must not be
	// acknowledged unrecorded), and after each manifest pull is answered.
	OnEvent func(Event) error
	// UploadRetryAfter is the Retry-After of a refused upload session (when
	// sessions that never received bytes are next expired); default one
	// minute.
	UploadRetryAfter time.Duration
	// Redirect, when set, gives a URL that serves blob d without
	// credentials (a pre-signed URL of the object store): GETs of blobs
	// too large to be hashed before every response are answered 307 to it
	// instead of streaming through berth.
	Redirect func(ctx context.Context, d digest.Digest) (string, error)
	// OnDamage, when set, is told of each damaged blob file a response
	// refused (metrics).
	OnDamage func(storage.Damage)
	// OnUnwritable, when set, is told of each write that failed because
	// the blob store ("storage") or the database ("database") is full or
	// read-only, with the error (readiness).
	OnUnwritable func(part string, err error)
	// Limiter, when set, applies the caller's limits after authorization.
	Limiter Limiter
	// CheckPull, when set, applies the signature policies to manifest
	// pulls (trust.go).
	CheckPull CheckPull
}

// Registry is the OCI Distribution API as an http.Handler for /v2/.
type Registry struct {
	blobs      Blobs
	meta       Metadata
	authz      Authorizer
	log        *slog.Logger
	baseURL    string
	events     func(Event) error
	damage     func(storage.Damage)
	unwritable func(part string, cause error)
	redirect   func(ctx context.Context, d digest.Digest) (string, error)
	limiter    Limiter
	checkPull  CheckPull

	uploadRetryAfter time.Duration
}

// New returns a Registry.
func New(o Options) *Registry {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnEvent == nil {
		o.OnEvent = func(Event) error { return nil }
	}
	if o.OnDamage == nil {
		o.OnDamage = func(storage.Damage) {}
	}
	if o.OnUnwritable == nil {
		o.OnUnwritable = func(string, error) {}
	}
	if o.UploadRetryAfter < time.Second {
		o.UploadRetryAfter = time.Minute
	}
	return &Registry{blobs: o.Blobs, meta: o.Meta, authz: o.Authorizer, log: o.Logger, baseURL: strings.TrimSuffix(o.BaseURL, "/"), events: o.OnEvent, damage: o.OnDamage, redirect: o.Redirect,
		uploadRetryAfter: o.UploadRetryAfter, unwritable: o.OnUnwritable, limiter: o.Limiter, checkPull: o.CheckPull}
}

// route kinds.
const (
	routeBase      = "base"
	routeCatalog   = "catalog"
	routeManifest  = "manifest"
	routeBlob      = "blob"
	routeUploads   = "uploads" // POST .../blobs/uploads/
	routeUpload    = "upload"  // .../blobs/uploads/<id>
	routeTags      = "tags"
	routeReferrers = "referrers"
)

type route struct {
	kind string
	name string // repository
	ref  string // tag, digest or upload id
}

// repoNameRE is the distribution-spec grammar for repository names.
var repoNameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

const maxNameLen = 255

// ValidRepositoryName reports whether name follows the spec's grammar.
func ValidRepositoryName(name string) bool {
	return len(name) <= maxNameLen && repoNameRE.MatchString(name)
}

// parseRoute classifies a /v2/ path. Names contain slashes, so the route is
// found from the end of the path; the name is whatever precedes it.
func parseRoute(path string) (route, *Error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}, newError(CodeNameUnknown, "not a registry path")
	}
	if rest == "" {
		return route{kind: routeBase}, nil
	}
	if rest == "_catalog" {
		return route{kind: routeCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var rt route
	var nameSegs []string
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		rt, nameSegs = route{kind: routeManifest, ref: segs[n-1]}, segs[:n-2]
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		rt, nameSegs = route{kind: routeUpload, ref: segs[n-1]}, segs[:n-3]
		if rt.ref == "" {
			rt.kind = routeUploads
		}
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		rt, nameSegs = route{kind: routeUploads}, segs[:n-2]
	case n >= 3 && segs[n-2] == "blobs":
		rt, nameSegs = route{kind: routeBlob, ref: segs[n-1]}, segs[:n-2]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		rt, nameSegs = route{kind: routeTags}, segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers":
		rt, nameSegs = route{kind: routeReferrers, ref: segs[n-1]}, segs[:n-2]
	default:
		return route{}, newError(CodeNameUnknown, "unknown registry path")
	}
	rt.name = strings.Join(nameSegs, "/")
	if !ValidRepositoryName(rt.name) {
		e := newError(CodeNameInvalid, "invalid repository name %q: names are lower-case path components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/', at most %d characters", truncate(rt.name, 300), maxNameLen)
		e.Detail = map[string]string{"name": truncate(rt.name, 300)}
		return route{}, e
	}
	return rt, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// requiredAccess maps a request to the accesses it needs: the operation
// of auth's one operation table that each route performs. Nothing else
// decides what a route requires.
func requiredAccess(r *http.Request, rt route) []Access {
	repo := func(op auth.Operation) []Access { return []Access{RepositoryAccess(rt.name, op)} }
	switch rt.kind {
	case routeBase:
		return nil // authentication only
	case routeCatalog:
		return []Access{{Type: "registry", Name: "catalog", Action: ActionCatalog}}
	case routeTags:
		return repo(auth.OpReadMetadata)
	case routeReferrers:
		return repo(auth.OpPull)
	case routeManifest, routeBlob:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return repo(auth.OpPull)
		case http.MethodPut:
			return repo(auth.OpPush)
		case http.MethodDelete:
			switch {
			case rt.kind == routeBlob:
				return repo(auth.OpDeleteBlob)
			case isDigest(rt.ref):
				return repo(auth.OpDeleteManifest)
			}
			return repo(auth.OpUntag)
		}
	case routeUpload:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return repo(auth.OpReadUpload)
		case http.MethodDelete:
			return repo(auth.OpCancelUpload)
		}
		return repo(auth.OpPush)
	case routeUploads:
		// The mount source (?from=) is checked later, without failing the
		// request, so that a denied mount falls back to a plain upload.
		return repo(auth.OpPush)
	}
	return repo(auth.OpPush) // unknown methods are refused by the handler anyway
}

// RepositoryAccess is the access that operation op on repository name
// needs, with the actions of the operation table in access-token spelling
// (for the challenge's scope).
func RepositoryAccess(name string, op auth.Operation) Access {
	need, or := op.Needs()
	return Access{Type: "repository", Name: name, Action: tokenAction(need), Or: tokenAction(or), Op: op}
}

func tokenAction(a auth.Actions) Action { return Action(strings.Join(a.TokenNames(), ",")) }

// ServeHTTP implements http.Handler.
func (rg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	info := reqlog.From(r.Context())
	// RawPath is set when the client escaped something ("%2F", "%2e"); the
	// decoded Path is what is validated, so an escaped slash or dot can never
	// sneak past the grammar.
	rt, rerr := parseRoute(r.URL.Path)
	info.Route = "v2." + rt.kind
	if rerr != nil {
		info.Route = "v2.invalid"
		WriteError(w, rerr)
		return
	}
	info.Repository = rt.name
	caller, err := rg.authz.Authorize(r, requiredAccess(r, rt))
	if err != nil {
		rg.writeErr(w, r, err)
		return
	}
	if caller != nil {
		info.Identity = caller.Name()
		if rg.limiter != nil {
			lw, done, err := rg.limiter.Admit(w, r, caller)
			if err != nil {
				rg.writeErr(w, r, err)
				return
			}
			if done != nil {
				defer done()
			}
			w = lw
		}
	}
	req := &request{w: w, r: r, rt: rt, caller: caller}
	switch rt.kind {
	case routeBase:
		err = rg.base(req)
	case routeCatalog:
		err = rg.catalog(req)
	case routeTags:
		err = rg.tags(req)
	case routeManifest:
		err = rg.manifest(req)
	case routeBlob:
		err = rg.blob(req)
	case routeUploads:
		err = rg.startUpload(req)
	case routeUpload:
		err = rg.upload(req)
	case routeReferrers:
		err = rg.referrers(req)
	}
	if err != nil {
		rg.writeErr(w, r, err)
	}
}

type request struct {
	w      http.ResponseWriter
	r      *http.Request
	rt     route
	caller Caller
}

func (rg *Registry) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := err.(*Error); ok {
		WriteError(w, e)
		return
	}
	if e := (*Error)(nil); errors.As(err, &e) && e.Code == CodeTooManyRequests {
		// A limit cut a request body short (see Limiter).
		WriteError(w, e)
		return
	}
	if r.Context().Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		// The client went away or stalled: nobody will read an answer, and
		// returning would let net/http send an implicit 200. Abort the
		// connection instead.
		panic(http.ErrAbortHandler)
	}
	rg.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if e, part := unwritableError(err); e != nil {
		rg.unwritable(part, err)
		WriteError(w, e)
		return
	}
	if errors.Is(err, storage.ErrKeyUnavailable) {
		// Content is encrypted and its key cannot be used: nothing is lost,
		// and the request works again once the key is back.
		w.Header().Set("Retry-After", "30")
		WriteError(w, &Error{Code: CodeUnavailable, Message: "the registry's encryption key is unavailable: content can be neither read nor written until the operator restores it"})
		return
	}
	if sqldb.IsUnavailable(err) {
		// A database (or storage) server restarting or failing over: a retry
		// will likely succeed, which a 500 would not suggest.
		w.Header().Set("Retry-After", "5")
		WriteError(w, &Error{Code: CodeUnavailable, Message: "the registry cannot reach its database or storage: retry shortly"})
		return
	}
	WriteError(w, &Error{Code: CodeInternal})
}

func (rg *Registry) emit(req *request, kind, tag string, d digest.Digest) error {
	if err := rg.events(Event{Kind: kind, Repository: req.rt.name, Tag: tag, Digest: d, Caller: req.caller, Request: req.r}); err != nil {
		return fmt.Errorf("record %s: %w", kind, err)
	}
	return nil
}

func (rg *Registry) location(path string) string { return rg.baseURL + path }

func (rg *Registry) base(req *request) error {
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		return methodNotAllowed(req, "GET, HEAD")
	}
	req.w.Header().Set("Content-Type", "application/json")
	req.w.Header().Set("Content-Length", "2")
	req.w.WriteHeader(http.StatusOK)
	if req.r.Method == http.MethodGet {
		io.WriteString(req.w, "{}")
	}
	return nil
}

func methodNotAllowed(req *request, allow string) error {
	e := newError(CodeUnsupported, "method %s is not allowed here; allowed: %s", req.r.Method, allow)
	e.Header = http.Header{"Allow": {allow}}
	return e
}
