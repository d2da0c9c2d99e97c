package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/repository"
	"github.com/berth-registry/berth/internal/reqlog"
)

// Paging limits of the repository and tag lists.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// repoRoute is a route below /api/v1/repositories/. Repository names
// contain '/', so the sub-resource is marked by a segment that no
// repository name can contain, because name segments start with a letter or
// digit: "_tags" or "_manifests", as in ACR's /acr/v1/{name}/_tags.
type repoRoute struct {
	method string
	// shape is the path after /api/v1/repositories/, as in the OpenAPI document.
	shape  string
	handle func(h *Handler, c *call, name, ref string) error
}

// Path shapes below /api/v1/repositories/.
const (
	shapeRepository = "{name}"
	shapeTags       = "{name}/_tags"
	shapeTag        = "{name}/_tags/{tag}"
	shapeManifest   = "{name}/_manifests/{reference}"
)

// repositoryRoutes is the table of routes below /api/v1/repositories/. The
// repository service (package repository) checks each operation's
// permission before it looks anything up, with the registry's operation
// table.
var repositoryRoutes = []repoRoute{
	{http.MethodGet, shapeRepository, (*Handler).getRepository},
	{http.MethodPatch, shapeRepository, (*Handler).updateRepository},
	{http.MethodDelete, shapeRepository, (*Handler).deleteRepository},
	{http.MethodGet, shapeTags, (*Handler).listTags},
	{http.MethodGet, shapeTag, (*Handler).getTag},
	{http.MethodDelete, shapeTag, (*Handler).untag},
	{http.MethodGet, shapeManifest, (*Handler).getManifest},
	{http.MethodPatch, shapeManifest, (*Handler).updateManifest},
	{http.MethodDelete, shapeManifest, (*Handler).deleteManifest},
}

// splitRepositoryPath splits the path after /api/v1/repositories/ into the
// repository name, the shape of the route and the tag or reference.
func splitRepositoryPath(p string) (name, shape, ref string, err error) {
	segs := strings.Split(p, "/")
	i := 0
	for i < len(segs) && !strings.HasPrefix(segs[i], "_") {
		i++
	}
	name, rest := strings.Join(segs[:i], "/"), segs[i:]
	switch {
	case len(rest) == 0:
		shape = shapeRepository
	case rest[0] == "_tags" && len(rest) == 1:
		shape = shapeTags
	case rest[0] == "_tags" && len(rest) == 2 && rest[1] != "":
		shape, ref = shapeTag, rest[1]
	case rest[0] == "_manifests" && len(rest) == 2 && rest[1] != "":
		shape, ref = shapeManifest, rest[1]
	default:
		return "", "", "", notFound("no such route below %srepositories/: after the repository name use /_tags, /_tags/TAG or /_manifests/REFERENCE", Prefix)
	}
	if err := auth.ValidateRepository(name); err != nil {
		return "", "", "", badRequest("%v", err)
	}
	return name, shape, ref, nil
}

// repository dispatches the routes below /api/v1/repositories/.
func (h *Handler) repository(c *call) error {
	name, shape, ref, err := splitRepositoryPath(c.r.PathValue("path"))
	if err != nil {
		return err
	}
	var allow []string
	for _, rt := range repositoryRoutes {
		if rt.shape != shape {
			continue
		}
		if rt.method != c.r.Method {
			allow = append(allow, rt.method)
			continue
		}
		reqlog.From(c.ctx()).Repository = name
		return rt.handle(h, c, name, ref)
	}
	c.w.Header().Set("Allow", strings.Join(allow, ", "))
	return &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
		Message: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", c.r.Method, c.r.URL.Path, strings.Join(allow, ", "))}
}

// pageParams reads ?last= and ?n=.
func pageParams(r *http.Request) (last string, n int, err error) {
	q := r.URL.Query()
	n = defaultPageSize
	if v := q.Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return "", 0, badRequest("invalid n=%q: use a number from 1 to %d", v, maxPageSize)
		}
	}
	return q.Get("last"), n, nil
}

// listRepositories lists the repositories the caller may do anything with,
// exactly as the registry's catalog does (see repository.Service.List).
func (h *Handler) listRepositories(c *call) error {
	if q := c.r.URL.Query(); q.Has("sort") || q.Has("page") || q.Has("pageSize") {
		return h.listRepositoriesDetailed(c)
	}
	last, n, err := pageParams(c.r)
	if err != nil {
		return err
	}
	page, err := h.repos.List(c.ctx(), c.id, repository.ListQuery{After: last, N: n})
	if err != nil {
		return err
	}
	out := RepositoryList{Repositories: page.Names, Next: page.Next}
	if out.Repositories == nil {
		out.Repositories = []string{}
	}
	return c.ok(out)
}

func (h *Handler) repositoryJSON(r repository.Info) Repository {
	return Repository{Registry: h.ids.RegistryName(), ImageName: r.Name, CreatedTime: r.CreatedAt.UTC(),
		TagCount: r.Tags, ChangeableAttributes: attributesJSON(r.Attributes)}
}

// notFoundAs turns meta's not-found errors into a 404 with a message naming
// what was looked for; other errors pass through.
func notFoundAs(err error, format string, args ...any) error {
	if repository.IsNotFound(err) {
		return notFound(format, args...)
	}
	return err
}

func (h *Handler) getRepository(c *call, name, _ string) error {
	r, err := h.repos.Repository(c.ctx(), c.id, name)
	if err != nil {
		return notFoundAs(err, "repository %q not found", name)
	}
	return c.ok(h.repositoryJSON(r))
}

func (h *Handler) decodeAttributes(c *call) (AttributesPatch, error) {
	var p AttributesPatch
	if err := c.decode(&p); err != nil {
		return p, err
	}
	if p.empty() {
		return p, badRequest("nothing to change: send one or more of deleteEnabled, writeEnabled, readEnabled, listEnabled")
	}
	return p, nil
}

func (h *Handler) updateRepository(c *call, name, _ string) error {
	p, err := h.decodeAttributes(c)
	if err != nil {
		return err
	}
	r, err := h.repos.SetRepositoryAttributes(c.ctx(), h.caller(c), name, p.apply)
	if err != nil {
		return notFoundAs(err, "repository %q not found", name)
	}
	return c.ok(h.repositoryJSON(r))
}

func (h *Handler) deleteRepository(c *call, name, _ string) error {
	if err := h.repos.DeleteRepository(c.ctx(), h.caller(c), name); err != nil {
		return notFoundAs(err, "repository %q not found", name)
	}
	return c.noContent()
}

func (h *Handler) listTags(c *call, name, _ string) error {
	last, n, err := pageParams(c.r)
	if err != nil {
		return err
	}
	tags, err := h.repos.TagManifests(c.ctx(), c.id, name, last, n+1)
	if err != nil {
		return notFoundAs(err, "repository %q not found", name)
	}
	out := TagList{Registry: h.ids.RegistryName(), ImageName: name, Tags: []Tag{}}
	if len(tags) > n {
		tags = tags[:n]
		out.Next = tags[n-1].Tag
	}
	for _, t := range tags {
		out.Tags = append(out.Tags, Tag{Name: t.Tag, Digest: t.Digest, CreatedTime: t.CreatedAt.UTC(), ChangeableAttributes: attributesJSON(t.Attributes)})
	}
	return c.ok(out)
}

func (h *Handler) getTag(c *call, name, tag string) error {
	if _, err := digest.Parse(tag); err == nil {
		return badRequest("%q is a digest, not a tag: use %srepositories/%s/_manifests/%s", tag, Prefix, name, tag)
	}
	m, err := h.repos.Manifest(c.ctx(), c.id, name, tag)
	if err != nil {
		return notFoundAs(err, "tag %s:%s not found", name, tag)
	}
	return c.ok(Tag{Name: tag, Digest: m.Digest, CreatedTime: m.CreatedAt.UTC(), ChangeableAttributes: attributesJSON(m.Attributes)})
}

func (h *Handler) untag(c *call, name, tag string) error {
	if err := h.repos.Untag(c.ctx(), h.caller(c), name, tag); err != nil {
		return notFoundAs(err, "tag %s:%s not found", name, tag)
	}
	return c.noContent()
}

func (h *Handler) manifestInfo(c *call, name, ref string) (ManifestInfo, error) {
	m, err := h.repos.Manifest(c.ctx(), c.id, name, ref)
	if err != nil {
		return ManifestInfo{}, notFoundAs(err, "manifest %s not found in repository %q", ref, name)
	}
	return ManifestInfo{Registry: h.ids.RegistryName(), ImageName: name, Manifest: manifestJSON(m)}, nil
}

func (h *Handler) getManifest(c *call, name, ref string) error {
	info, err := h.manifestInfo(c, name, ref)
	if err != nil {
		return err
	}
	return c.ok(info)
}

func (h *Handler) updateManifest(c *call, name, ref string) error {
	p, err := h.decodeAttributes(c)
	if err != nil {
		return err
	}
	m, err := h.repos.SetManifestAttributes(c.ctx(), h.caller(c), name, ref, p.apply)
	if err != nil {
		return notFoundAs(err, "manifest %s not found in repository %q", ref, name)
	}
	return c.ok(ManifestInfo{Registry: h.ids.RegistryName(), ImageName: name, Manifest: manifestJSON(m)})
}

func (h *Handler) deleteManifest(c *call, name, ref string) error {
	if _, err := h.repos.DeleteManifest(c.ctx(), h.caller(c), name, ref); err != nil {
		return notFoundAs(err, "manifest %s not found in repository %q", ref, name)
	}
	return c.noContent()
}

// caller is the request's caller as the repository service records it.
func (h *Handler) caller(c *call) repository.Caller {
	return repository.Caller{ID: c.id, IP: h.clientIP(c.r), UserAgent: c.r.UserAgent()}
}

// listRepositoriesDetailed is the repository list sorted (name,
// lastPushed, created), paged by number with a total count, each with
// its size, last push and pulls: the portal's list.
func (h *Handler) listRepositoriesDetailed(c *call) error {
	q := c.r.URL.Query()
	sortBy, err := repository.ParseSort(q.Get("sort"))
	if err != nil {
		return badRequest("%s", err.Error())
	}
	dq := repository.DetailQuery{Sort: sortBy, Page: 1, PageSize: 50}
	if v := q.Get("page"); v != "" {
		if dq.Page, err = strconv.Atoi(v); err != nil || dq.Page < 1 {
			return badRequest("invalid page=%q: use a page number from 1", v)
		}
	}
	if v := q.Get("pageSize"); v != "" {
		if dq.PageSize, err = strconv.Atoi(v); err != nil || !slices.Contains(repository.PageSizes, dq.PageSize) {
			return badRequest("invalid pageSize=%q: use one of %v", v, repository.PageSizes)
		}
	}
	p, err := h.repos.ListDetailed(c.ctx(), c.id, dq)
	if err != nil {
		return err
	}
	out := RepositoryList{Repositories: []string{}, Items: []RepositoryItem{}, Total: &p.Total, Page: p.Page, Pages: p.Pages}
	for _, r := range p.Rows {
		it := RepositoryItem{Name: r.Name, CreatedTime: r.CreatedAt, SizeBytes: r.Size, Manifests: r.Manifests}
		if !r.LastPushed.IsZero() {
			lp := r.LastPushed
			it.LastPushed = &lp
		}
		if r.Pulls >= 0 {
			n := r.Pulls
			it.Pulls = &n
		}
		out.Repositories = append(out.Repositories, r.Name)
		out.Items = append(out.Items, it)
	}
	return c.ok(out)
}
