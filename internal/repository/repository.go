// Package repository is the service layer over repositories, their tags and
// manifests that the REST API and the portal share. Every method first asks
// auth about the operation it performs (auth.CheckOperation, with the one
// operation table), so that neither face decides a permission itself; then
// it reads or changes the metadata store, and records each change in the
// audit log. The faces only translate requests and answers.
package repository

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// Metadata is what the service needs of the metadata store (*meta.Store
// has it).
type Metadata interface {
	ListRepositories(ctx context.Context, last string, n int, includeHidden bool) ([]string, error)
	Repository(ctx context.Context, name string) (meta.Repository, error)
	Tags(ctx context.Context, repo, last string, n int) ([]string, error)
	TagManifests(ctx context.Context, repo, last string, n int) ([]meta.TaggedManifest, error)
	Manifest(ctx context.Context, repo, ref string) (meta.Manifest, error)
	UntaggedManifests(ctx context.Context, repo string, n int) ([]meta.Manifest, error)
	Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]meta.Referrer, error)
	UpdateRepositoryAttributes(ctx context.Context, repo string, fn func(meta.Attributes) meta.Attributes) (meta.Attributes, error)
	UpdateManifestAttributes(ctx context.Context, repo string, d digest.Digest, fn func(meta.Attributes) meta.Attributes) (meta.Attributes, error)
	DeleteRepository(ctx context.Context, repo string) error
	DeleteManifest(ctx context.Context, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, repo, tag string) error
	Reachable(ctx context.Context, repo string, from func(tag string) bool, d digest.Digest) (bool, error)
	AnyTag(ctx context.Context, repo string, f func(tag string) bool) (bool, error)
}

// AuditLog is what the service needs of the audit log.
type AuditLog interface {
	// Write returns once e is committed: a change is acknowledged only
	// with its record.
	Write(ctx context.Context, e audit.Event) error
}

// Service is the repository service.
type Service struct {
	meta  Metadata
	audit AuditLog
}

// New returns the service over the metadata store m. a, when not nil,
// receives an event for every change.
func New(m Metadata, a AuditLog) *Service {
	return &Service{meta: m, audit: a}
}

// Caller is who asks for a change, with what the audit log records of the
// request.
type Caller struct {
	ID        auth.Identity
	IP        string
	UserAgent string
}

// Permits reports whether id may perform op on repository name: what pages
// ask to decide which forms to show. The methods below ask it themselves.
func (s *Service) Permits(id auth.Identity, name string, op auth.Operation) bool {
	return auth.Permits(id, name, op)
}

// Operations lists what id may do on repository name, in the order of the
// operation table, leaving out the steps of an upload, which nobody does
// by hand.
func (s *Service) Operations(id auth.Identity, name string) []auth.Operation {
	var out []auth.Operation
	for _, op := range auth.PermittedOperations(id, name) {
		if op != auth.OpReadUpload && op != auth.OpCancelUpload {
			out = append(out, op)
		}
	}
	return out
}

// OperationsAllowedBy lists the operations that the actions granted allow,
// as Operations does.
func OperationsAllowedBy(granted auth.Actions) []auth.Operation {
	var out []auth.Operation
	for _, op := range auth.Operations() {
		if op.AllowedBy(granted) && op != auth.OpReadUpload && op != auth.OpCancelUpload {
			out = append(out, op)
		}
	}
	return out
}

// ListQuery selects repositories for List.
type ListQuery struct {
	After string // names after this one
	N     int    // at most this many
	// Contains keeps only names containing it.
	Contains string
	// IncludeHidden asks for repositories with listEnabled off too; only
	// callers who may view management get them, so that a hidden
	// repository stays reachable from management views.
	IncludeHidden bool
	// ScanLimit, when positive, bounds how many names one call looks at,
	// so that a search in a huge registry answers in bounded time.
	ScanLimit int
}

// ListPage is a page of repository names.
type ListPage struct {
	Names []string
	// Next, when set, is the After of the next page.
	Next string
	// Stopped says the scan stopped at ScanLimit before the page was full.
	Stopped bool
}

const listBatch = 1000

// List lists the repositories id may see, as the registry's catalog does:
// those it may do anything with (auth.VisibleInCatalog). A caller with an
// access token needs the catalog in it.
func (s *Service) List(ctx context.Context, id auth.Identity, q ListQuery) (ListPage, error) {
	if !auth.CanListCatalog(id) {
		return ListPage{}, &CatalogDeniedError{Identity: id}
	}
	hidden := q.IncludeHidden && auth.CanManage(id, auth.ViewManagement)
	var page ListPage
	last, scanned := q.After, 0
	for len(page.Names) <= q.N && (q.ScanLimit <= 0 || scanned < q.ScanLimit) {
		names, err := s.meta.ListRepositories(ctx, last, listBatch, hidden)
		if err != nil {
			return ListPage{}, err
		}
		for _, n := range names {
			scanned++
			if len(page.Names) > q.N || !strings.Contains(n, q.Contains) {
				continue
			}
			ok, err := s.visibleInList(ctx, id, n)
			if err != nil {
				return ListPage{}, err
			}
			if ok {
				page.Names = append(page.Names, n)
			}
		}
		if len(names) < listBatch {
			break
		}
		last = names[len(names)-1]
	}
	switch {
	case len(page.Names) > q.N:
		page.Names = page.Names[:q.N]
		page.Next = page.Names[q.N-1]
	case q.ScanLimit > 0 && scanned >= q.ScanLimit:
		page.Next, page.Stopped = last, true
	}
	return page, nil
}

// CatalogDeniedError refuses a listing to an access token issued without
// the catalog in its scope.
type CatalogDeniedError struct{ Identity auth.Identity }

func (e *CatalogDeniedError) Error() string {
	return fmt.Sprintf("%s may not list repositories: request an access token with scope registry:catalog:*", e.Identity)
}

// Get returns the record of a repository id may see at all. A repository
// id has no access to is answered as one that does not exist
// (meta.ErrRepositoryNotFound), so that its existence does not leak.
func (s *Service) Get(ctx context.Context, id auth.Identity, name string) (meta.Repository, error) {
	if auth.ValidateRepository(name) != nil || !auth.VisibleInCatalog(id, name) {
		return meta.Repository{}, fmt.Errorf("repository %q: %w", name, meta.ErrRepositoryNotFound)
	}
	return s.meta.Repository(ctx, name)
}

// Info is a repository's record with its number of tags.
type Info struct {
	meta.Repository
	Tags int
}

// Repository returns a repository's record and its number of tags.
func (s *Service) Repository(ctx context.Context, id auth.Identity, name string) (Info, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return Info{}, err
	}
	return s.info(ctx, id, name)
}

// info counts the tags id may see.
func (s *Service) info(ctx context.Context, id auth.Identity, name string) (Info, error) {
	r, err := s.meta.Repository(ctx, name)
	if err != nil {
		return Info{}, err
	}
	tags, err := s.meta.Tags(ctx, name, "", -1)
	if err != nil {
		return Info{}, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		tags = visibleTags(check, tags)
	}
	return Info{Repository: r, Tags: len(tags)}, nil
}

// Tags lists up to n tag names of a repository after last (n < 0: all).
func (s *Service) Tags(ctx context.Context, id auth.Identity, name, last string, n int) ([]string, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return nil, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		return s.filledTags(ctx, name, check, last, n)
	}
	return s.meta.Tags(ctx, name, last, n)
}

// TagManifests lists up to n tags of a repository after last, each with
// the manifest it points at, without the manifests' content: lists show
// each manifest's Summary and must not parse manifests.
func (s *Service) TagManifests(ctx context.Context, id auth.Identity, name, last string, n int) ([]meta.TaggedManifest, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return nil, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		return s.filledTagManifests(ctx, name, check, last, n)
	}
	return s.meta.TagManifests(ctx, name, last, n)
}

// Manifest returns the manifest that ref (a tag or a digest) names.
func (s *Service) Manifest(ctx context.Context, id auth.Identity, name, ref string) (meta.Manifest, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return meta.Manifest{}, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		if _, err := digest.Parse(ref); err != nil {
			if err := check(ref); err != nil {
				return meta.Manifest{}, err
			}
		}
	}
	m, err := s.meta.Manifest(ctx, name, ref)
	if err != nil {
		return m, err
	}
	if err := s.readableManifest(ctx, id, name, ref, m.Digest); err != nil {
		return meta.Manifest{}, err
	}
	return m, nil
}

// Untagged lists up to n manifests no tag points at, newest first, without
// their content.
func (s *Service) Untagged(ctx context.Context, id auth.Identity, name string, n int) ([]meta.Manifest, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return nil, err
	}
	ms, err := s.meta.UntaggedManifests(ctx, name, n)
	if err != nil {
		return nil, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		out := ms[:0]
		for _, m := range ms {
			ok, err := s.reachableBy(ctx, name, check, m.Digest)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, m)
			}
		}
		ms = out
	}
	return ms, nil
}

// Referrers lists the manifests whose subject is d.
func (s *Service) Referrers(ctx context.Context, id auth.Identity, name string, d digest.Digest) ([]meta.Referrer, error) {
	if err := auth.CheckOperation(id, name, auth.OpReadMetadata); err != nil {
		return nil, err
	}
	if check := auth.TagCheck(id, name, auth.OpReadMetadata); check != nil {
		ok, err := s.reachableBy(ctx, name, check, d)
		if err != nil || !ok {
			return []meta.Referrer{}, err
		}
	}
	return s.meta.Referrers(ctx, name, d, "")
}

// SetRepositoryAttributes changes a repository's attributes with fn and
// returns the repository as it is then. Changing attributes does not need
// metadata/read: the answer is the outcome of the change.
func (s *Service) SetRepositoryAttributes(ctx context.Context, c Caller, name string, fn func(meta.Attributes) meta.Attributes) (Info, error) {
	if err := auth.CheckOperation(c.ID, name, auth.OpWriteAttributes); err != nil {
		return Info{}, err
	}
	a, err := s.meta.UpdateRepositoryAttributes(ctx, name, fn)
	if err != nil {
		return Info{}, err
	}
	if err := s.record(ctx, c, audit.Event{Kind: audit.KindPermission, Repository: name, Target: "repository " + name,
		Reason: "attributes: " + DescribeAttributes(a)}); err != nil {
		return Info{}, err
	}
	return s.info(ctx, c.ID, name)
}

// SetManifestAttributes changes the attributes of the manifest that ref
// names with fn, and returns the manifest as it is then.
func (s *Service) SetManifestAttributes(ctx context.Context, c Caller, name, ref string, fn func(meta.Attributes) meta.Attributes) (meta.Manifest, error) {
	if err := auth.CheckOperation(c.ID, name, auth.OpWriteAttributes); err != nil {
		return meta.Manifest{}, err
	}
	m, err := s.meta.Manifest(ctx, name, ref)
	if err != nil {
		return meta.Manifest{}, err
	}
	a, err := s.meta.UpdateManifestAttributes(ctx, name, m.Digest, fn)
	if err != nil {
		return meta.Manifest{}, err
	}
	if err := s.record(ctx, c, audit.Event{Kind: audit.KindPermission, Repository: name, Digest: m.Digest.String(),
		Target: "manifest " + name + "@" + m.Digest.String(), Reason: "attributes: " + DescribeAttributes(a)}); err != nil {
		return meta.Manifest{}, err
	}
	return s.meta.Manifest(ctx, name, m.Digest.String())
}

// DeleteRepository deletes a repository with everything in it.
func (s *Service) DeleteRepository(ctx context.Context, c Caller, name string) error {
	if err := auth.CheckOperation(c.ID, name, auth.OpDeleteRepository); err != nil {
		return err
	}
	if err := s.meta.DeleteRepository(ctx, name); err != nil {
		return err
	}
	return s.record(ctx, c, audit.Event{Kind: audit.KindDelete, Repository: name, Target: "repository " + name})
}

// Untag removes a tag; the manifest stays.
func (s *Service) Untag(ctx context.Context, c Caller, name, tag string) error {
	if err := auth.CheckOperation(c.ID, name, auth.OpUntag); err != nil {
		return err
	}
	if err := auth.CheckTag(c.ID, name, auth.OpUntag, tag); err != nil {
		return err
	}
	if err := s.meta.DeleteTag(ctx, name, tag); err != nil {
		return err
	}
	return s.record(ctx, c, audit.Event{Kind: audit.KindUntag, Repository: name, Tag: tag})
}

// DeleteManifest deletes the manifest that ref (a tag or a digest) names,
// with every tag pointing at it, and returns its digest.
func (s *Service) DeleteManifest(ctx context.Context, c Caller, name, ref string) (digest.Digest, error) {
	if err := auth.CheckOperation(c.ID, name, auth.OpDeleteManifest); err != nil {
		return "", err
	}
	m, err := s.meta.Manifest(ctx, name, ref)
	if err != nil {
		return "", err
	}
	if err := s.deletableManifest(ctx, c.ID, name, m.Digest); err != nil {
		return "", err
	}
	if err := s.meta.DeleteManifest(ctx, name, m.Digest); err != nil {
		return "", err
	}
	e := audit.Event{Kind: audit.KindDelete, Repository: name, Digest: m.Digest.String()}
	if ref != m.Digest.String() {
		e.Tag = ref
	}
	if err := s.record(ctx, c, e); err != nil {
		return "", err
	}
	return m.Digest, nil
}

// DescribeAttributes is how attributes read in messages and audit records.
func DescribeAttributes(a meta.Attributes) string {
	return fmt.Sprintf("deleteEnabled=%t writeEnabled=%t readEnabled=%t listEnabled=%t", a.DeleteEnabled, a.WriteEnabled, a.ReadEnabled, a.ListEnabled)
}

// IsNotFound reports whether err says that the repository, manifest or tag
// asked for does not exist (or is not visible to the caller).
func IsNotFound(err error) bool {
	return errors.Is(err, meta.ErrRepositoryNotFound) || errors.Is(err, meta.ErrManifestNotFound) || errors.Is(err, meta.ErrTagNotFound)
}

// record writes e before the change is acknowledged. The change itself is
// already committed: an error here fails the request, and a retry finds
// the change made and records it.
func (s *Service) record(ctx context.Context, c Caller, e audit.Event) error {
	if s.audit == nil {
		return nil
	}
	e.Result = audit.ResultSuccess
	e.Identity, e.IdentityKind = c.ID.Name, c.ID.Kind.String()
	e.CallerIP, e.UserAgent = c.IP, c.UserAgent
	if c.ID.Bearer != nil {
		e.Slot, e.JwtID = c.ID.Bearer.Slot, c.ID.Bearer.ID
	}
	return s.audit.Write(ctx, e)
}
