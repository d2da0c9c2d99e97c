package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/repository"
)

// Page sizes.
const (
	reposPerPage = 50
	tagsPerPage  = 50
	// scanLimit bounds how many repository names one search looks at, so
	// that a search in a huge registry answers in bounded time; the page
	// then offers to go on from where it stopped.
	scanLimit = 20000
)

type repoRow struct {
	Name       string
	Hidden     bool
	Created    time.Time
	Tags       int // -1: not allowed to list
	Readonly   bool
	LastPushed time.Time
	Size       int64
	Pulls      int64 // -1: not counted
	Stats      bool  // LastPushed, Size and Pulls are known
}

type reposData struct {
	Query    string
	Rows     []repoRow
	Next     string // "after" for the next page
	After    string
	Host     string
	Scanned  bool // the scan stopped at scanLimit
	ShowsAll bool // hidden repositories are included
	// The detailed list: sorted, paged, counted.
	Detailed  bool
	Sort      string
	PageSize  int
	PageSizes []int
	Page      int
	Pages     int
	Total     int
	Prev      template.URL
	NextPage  template.URL
}

// detailedURL is the repository list's URL for another page or order.
func detailedURL(q, sortBy string, size, page int) template.URL {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if sortBy != repository.SortName {
		v.Set("sort", sortBy)
	}
	if size != 50 {
		v.Set("pageSize", strconv.Itoa(size))
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/repositories"
	}
	return template.URL("/repositories?" + v.Encode())
}

func (h *Handler) repositoriesPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	after := r.URL.Query().Get("after")
	d := reposData{Query: q, After: after, Host: h.registryHost(r), ShowsAll: rq.canAll(auth.ViewManagement), PageSizes: repository.PageSizes}
	if after == "" {
		qs := r.URL.Query()
		sortBy, err := repository.ParseSort(qs.Get("sort"))
		if err != nil {
			h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", capitalize(err.Error())+".")
			return
		}
		size, _ := strconv.Atoi(qs.Get("pageSize"))
		pg, _ := strconv.Atoi(qs.Get("page"))
		dp, err := h.repos.ListDetailed(r.Context(), rq.id, repository.DetailQuery{Sort: sortBy, Page: pg, PageSize: size,
			Contains: q, IncludeHidden: true})
		if err == nil {
			if !slices.Contains(repository.PageSizes, size) {
				size = 50
			}
			d.Detailed, d.Sort, d.PageSize, d.Page, d.Pages, d.Total = true, sortBy, size, dp.Page, dp.Pages, dp.Total
			if dp.Page > 1 {
				d.Prev = detailedURL(q, sortBy, size, dp.Page-1)
			}
			if dp.Page < dp.Pages {
				d.NextPage = detailedURL(q, sortBy, size, dp.Page+1)
			}
			for _, st := range dp.Rows {
				row := repoRow{Name: st.Name, Created: st.CreatedAt, Hidden: !st.Listed, Tags: -1, LastPushed: st.LastPushed,
					Size: st.Size, Pulls: st.Pulls, Stats: true}
				if info, err := h.repos.Repository(r.Context(), rq.id, st.Name); err == nil {
					row.Tags, row.Readonly = info.Tags, !info.Attributes.WriteEnabled
				}
				d.Rows = append(d.Rows, row)
			}
			h.render(w, r, rq, http.StatusOK, "repositories.html", view{Title: "Repositories", Nav: "repositories", Data: d})
			return
		}
		if !errors.Is(err, repository.ErrNoStats) {
			h.fail(w, r, rq, err)
			return
		}
	}
	page, err := h.repos.List(r.Context(), rq.id, repository.ListQuery{After: after, N: reposPerPage,
		Contains: strings.ToLower(q), IncludeHidden: true, ScanLimit: scanLimit})
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	d.Next, d.Scanned = page.Next, page.Stopped
	for _, n := range page.Names {
		row := repoRow{Name: n, Tags: -1}
		if repo, err := h.repos.Get(r.Context(), rq.id, n); err == nil {
			row.Created, row.Hidden = repo.CreatedAt, !repo.Attributes.ListEnabled
			row.Readonly = !repo.Attributes.WriteEnabled
		}
		if info, err := h.repos.Repository(r.Context(), rq.id, n); err == nil {
			row.Tags = info.Tags
		}
		d.Rows = append(d.Rows, row)
	}
	h.render(w, r, rq, http.StatusOK, "repositories.html", view{Title: "Repositories", Nav: "repositories", Data: d})
}

// splitRepoPath splits the path below /repositories/ into the repository
// name and what follows "/-/": "" for the repository itself, "delete",
// "attributes", "manifests/<digest>" or "manifests/<digest>/attributes".
// "-" cannot be a segment of a repository name, which must start with a
// letter or digit.
func splitRepoPath(p string) (name, rest string) {
	name, rest, _ = strings.Cut(p, "/-/")
	return strings.TrimSuffix(name, "/"), rest
}

// repoAccess loads a repository the user may see, or answers 404: a
// repository the user has no access to is not told apart from one that
// does not exist.
func (h *Handler) repoAccess(w http.ResponseWriter, r *http.Request, rq *request, name string) (meta.Repository, bool) {
	repo, err := h.repos.Get(r.Context(), rq.id, name)
	if errors.Is(err, meta.ErrRepositoryNotFound) {
		h.renderError(w, r, rq, http.StatusNotFound, "Repository not found",
			fmt.Sprintf("There is no repository %q, or your role gives you no access to it.", name))
		return repo, false
	}
	if err != nil {
		h.fail(w, r, rq, err)
		return repo, false
	}
	return repo, true
}

func (h *Handler) repositoryRoute(w http.ResponseWriter, r *http.Request, rq *request) {
	name, rest := splitRepoPath(r.PathValue("path"))
	switch {
	case rest == "":
		h.repositoryPage(w, r, rq, name)
	case rest == "delete":
		h.deleteRepositoryPage(w, r, rq, name)
	case strings.HasPrefix(rest, "manifests/") && !strings.Contains(rest[len("manifests/"):], "/"):
		h.manifestPage(w, r, rq, name, rest[len("manifests/"):])
	default:
		h.notFound(w, r)
	}
}

// descriptor is an OCI content descriptor as the pages show it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	Platform     *platform         `json:"platform"`
	Annotations  map[string]string `json:"annotations"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

func (p *platform) String() string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// manifestDoc is the part of an image manifest or index the pages show.
type manifestDoc struct {
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

func parseManifest(m meta.Manifest) manifestDoc {
	var doc manifestDoc
	_ = json.Unmarshal(m.Content, &doc)
	return doc
}

// isAttestation tells buildx's attestation manifests (platform
// unknown/unknown) from real platforms of an index.
func isAttestation(d descriptor) bool {
	var os, arch string
	if d.Platform != nil {
		os, arch = d.Platform.OS, d.Platform.Architecture
	}
	return meta.IsAttestation(d.Annotations, os, arch)
}

// referrerKind names what a referrer is, from its artifact type.
func referrerKind(artifactType string) string {
	t := strings.ToLower(artifactType)
	switch {
	case strings.Contains(t, "sbom") || strings.Contains(t, "spdx") || strings.Contains(t, "cyclonedx"):
		return "SBOM"
	case strings.Contains(t, "signature") || strings.Contains(t, "cosign") || strings.Contains(t, "notary") || strings.Contains(t, "sigstore"):
		return "signature"
	case strings.Contains(t, "attestation") || strings.Contains(t, "in-toto") || strings.Contains(t, "provenance"):
		return "attestation"
	case t == "":
		return "artifact"
	}
	return artifactType
}

// referrerSummary says "2 signatures, 1 SBOM".
func referrerSummary(refs []meta.Referrer) string {
	counts := map[string]int{}
	for _, r := range refs {
		counts[referrerKind(r.ArtifactType)]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		n := counts[k]
		label := k
		if n > 1 && (k == "signature" || k == "attestation" || k == "artifact" || k == "SBOM") {
			label += "s"
		}
		parts = append(parts, fmt.Sprintf("%d %s", n, label))
	}
	return strings.Join(parts, ", ")
}

// childrenShown bounds the children of an index shown on its page: an
// index may name tens of thousands, megabytes of HTML.
const childrenShown = 500

// untaggedPerPage bounds the untagged manifests shown on a repository page.
const untaggedPerPage = 50

type tagRow struct {
	Tag       string
	Digest    digest.Digest
	MediaType string
	Artifact  string
	Size      int64
	Platforms []string
	// MorePlatforms is how many platforms there are beyond Platforms.
	MorePlatforms int
	Created       time.Time
	Referrers     string
	Attributes    meta.Attributes
}

type repoData struct {
	Name       string
	Repo       meta.Repository
	Host       string
	CanList    bool
	CanEdit    bool
	CanUntag   bool
	CanDelete  bool
	Allowed    []string
	Tags       []tagRow
	Untagged   []tagRow
	After      string
	Next       string
	FirstTag   string
	AttrErrors string
}

// manifestRow is what the repository page shows of one manifest: its
// summary, worked out when it was pushed. A list never parses manifests:
// the tags of one page may be indexes of tens of thousands of entries.
func manifestRow(m meta.Manifest) tagRow {
	sum := m.Summary
	return tagRow{Digest: m.Digest, MediaType: m.MediaType, Artifact: m.ArtifactType, Size: sum.Size,
		Platforms: sum.Platforms, MorePlatforms: sum.PlatformCount - len(sum.Platforms), Created: m.CreatedAt, Attributes: m.Attributes}
}

func (h *Handler) repositoryPage(w http.ResponseWriter, r *http.Request, rq *request, name string) {
	repo, ok := h.repoAccess(w, r, rq, name)
	if !ok {
		return
	}
	h.renderRepository(w, r, rq, http.StatusOK, repo, "")
}

func (h *Handler) renderRepository(w http.ResponseWriter, r *http.Request, rq *request, status int, repo meta.Repository, errMsg string) {
	name := repo.Name
	d := repoData{Name: name, Repo: repo, Host: h.registryHost(r),
		CanList: h.repos.Permits(rq.id, name, auth.OpReadMetadata), CanEdit: h.repos.Permits(rq.id, name, auth.OpWriteAttributes),
		CanUntag: h.repos.Permits(rq.id, name, auth.OpUntag), CanDelete: h.repos.Permits(rq.id, name, auth.OpDeleteRepository),
		After: r.URL.Query().Get("after")}
	for _, op := range h.repos.Operations(rq.id, name) {
		d.Allowed = append(d.Allowed, op.String())
	}
	if d.CanList {
		tags, err := h.repos.TagManifests(r.Context(), rq.id, name, d.After, tagsPerPage+1)
		if err != nil && !errors.Is(err, meta.ErrRepositoryNotFound) {
			h.fail(w, r, rq, err)
			return
		}
		if len(tags) > tagsPerPage {
			tags = tags[:tagsPerPage]
			d.Next = tags[len(tags)-1].Tag
		}
		for _, t := range tags {
			row := manifestRow(t.Manifest)
			row.Tag = t.Tag
			if refs, err := h.repos.Referrers(r.Context(), rq.id, name, t.Digest); err == nil {
				row.Referrers = referrerSummary(refs)
			}
			d.Tags = append(d.Tags, row)
		}
		if len(d.Tags) > 0 {
			d.FirstTag = d.Tags[0].Tag
		}
		untagged, err := h.repos.Untagged(r.Context(), rq.id, name, untaggedPerPage)
		if err != nil && !errors.Is(err, meta.ErrRepositoryNotFound) {
			h.fail(w, r, rq, err)
			return
		}
		for _, m := range untagged {
			row := manifestRow(m)
			if m.Subject != "" {
				row.Referrers = "refers to " + shortDigest(m.Subject)
			}
			d.Untagged = append(d.Untagged, row)
		}
	}
	h.render(w, r, rq, status, "repository.html", view{Title: name, Nav: "repositories", Error: errMsg, Data: d})
}

type manifestData struct {
	Repo     string
	Ref      string
	Manifest meta.Manifest
	Size     int64
	Config   *descriptor
	Layers   []descriptor
	Children []childRow
	// MoreChildren is how many children of an index are not shown.
	MoreChildren int
	Referrers    []referrerRow
	Annotations  [][2]string
	CanEdit      bool
	CanDelete    bool // the manifest: OpDeleteManifest
	Host         string
}

type childRow struct {
	descriptor
	Platform    string
	Attestation bool
}

type referrerRow struct {
	meta.Referrer
	Kind    string
	Created string
}

func (h *Handler) manifestPage(w http.ResponseWriter, r *http.Request, rq *request, name, ref string) {
	if _, ok := h.repoAccess(w, r, rq, name); !ok {
		return
	}
	h.renderManifest(w, r, rq, http.StatusOK, name, ref, "")
}

func (h *Handler) renderManifest(w http.ResponseWriter, r *http.Request, rq *request, status int, name, ref, errMsg string) {
	m, err := h.repos.Manifest(r.Context(), rq.id, name, ref)
	if repository.IsNotFound(err) {
		h.renderError(w, r, rq, http.StatusNotFound, "Manifest not found", fmt.Sprintf("Repository %s has no manifest %s.", name, ref))
		return
	}
	if err != nil {
		h.repoFail(w, r, rq, err)
		return
	}
	doc := parseManifest(m)
	d := manifestData{Repo: name, Ref: ref, Manifest: m, Size: m.Summary.Size, Config: doc.Config,
		Layers: doc.Layers, CanEdit: h.repos.Permits(rq.id, name, auth.OpWriteAttributes), Host: h.registryHost(r),
		CanDelete: h.repos.Permits(rq.id, name, auth.OpDeleteManifest)}
	for i, c := range doc.Manifests {
		if i == childrenShown {
			d.MoreChildren = len(doc.Manifests) - i
			break
		}
		d.Children = append(d.Children, childRow{descriptor: c, Platform: c.Platform.String(), Attestation: isAttestation(c)})
	}
	if refs, err := h.repos.Referrers(r.Context(), rq.id, name, m.Digest); err == nil {
		for _, rf := range refs {
			d.Referrers = append(d.Referrers, referrerRow{Referrer: rf, Kind: referrerKind(rf.ArtifactType),
				Created: rf.Annotations["org.opencontainers.image.created"]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Annotations)) {
		d.Annotations = append(d.Annotations, [2]string{k, m.Annotations[k]})
	}
	h.render(w, r, rq, status, "manifest.html", view{Title: name + "@" + shortDigest(m.Digest), Nav: "repositories", Error: errMsg, Data: d})
}

type deleteRepoData struct {
	Name    string
	Tags    int
	Confirm string
}

func (h *Handler) deleteRepositoryPage(w http.ResponseWriter, r *http.Request, rq *request, name string) {
	if _, ok := h.repoAccess(w, r, rq, name); !ok {
		return
	}
	if !h.repos.Permits(rq.id, name, auth.OpDeleteRepository) {
		h.refuse(w, r, rq, auth.OpDeleteRepository, "delete repository "+name)
		return
	}
	h.renderDeleteRepository(w, r, rq, http.StatusOK, name, "", "")
}

func (h *Handler) renderDeleteRepository(w http.ResponseWriter, r *http.Request, rq *request, status int, name, confirm, errMsg string) {
	d := deleteRepoData{Name: name, Tags: -1, Confirm: confirm}
	if info, err := h.repos.Repository(r.Context(), rq.id, name); err == nil {
		d.Tags = info.Tags
	}
	h.render(w, r, rq, status, "repository_delete.html", view{Title: "Delete " + name, Nav: "repositories", Error: errMsg, Data: d})
}

// refuse answers a form that op's actions do not allow, saying which
// actions it needs, from the operation table.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, rq *request, op auth.Operation, what string) {
	need, or := op.Needs()
	needs := need.String()
	if or != auth.NoActions {
		needs += " or " + or.String()
	}
	h.forbidden(w, r, rq, what+" (it needs "+needs+")")
}

// repositoryAction handles the POSTs below /repositories/. The repository
// service checks each operation; the handlers only read the form and show
// the outcome.
func (h *Handler) repositoryAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name, rest := splitRepoPath(r.PathValue("path"))
	if _, ok := h.repoAccess(w, r, rq, name); !ok {
		return
	}
	c := repository.Caller{ID: rq.id, IP: h.clientIP(r), UserAgent: r.UserAgent()}
	switch {
	case rest == "attributes":
		a := formAttributes(r)
		// The form sets all four attributes: what was read is replaced.
		if _, err := h.repos.SetRepositoryAttributes(r.Context(), c, name, func(meta.Attributes) meta.Attributes { return a }); err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/repositories/"+name, "Attributes of "+name+" saved.")
	case rest == "untag":
		tag := r.PostForm.Get("tag")
		if err := h.repos.Untag(r.Context(), c, name, tag); err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/repositories/"+name, "Tag "+tag+" removed from "+name+"; the manifest stays.")
	case rest == "delete":
		if !h.repos.Permits(rq.id, name, auth.OpDeleteRepository) {
			// Before the confirmation is read, so that a form the role
			// cannot use is not asked to be typed again.
			h.refuse(w, r, rq, auth.OpDeleteRepository, "delete repository "+name)
			return
		}
		confirm := strings.TrimSpace(r.PostForm.Get("confirm"))
		if confirm != name {
			h.renderDeleteRepository(w, r, rq, http.StatusUnprocessableEntity, name, confirm,
				fmt.Sprintf("Type the repository's name, %s, to confirm. Nothing was deleted.", name))
			return
		}
		if err := h.repos.DeleteRepository(r.Context(), c, name); err != nil {
			var le *meta.LockedError
			if errors.As(err, &le) {
				h.renderDeleteRepository(w, r, rq, http.StatusConflict, name, confirm,
					fmt.Sprintf("%s cannot be deleted: %s. Enable delete (and write) in its attributes first. Nothing was deleted.", name, le.Error()))
				return
			}
			h.repoFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/repositories", "Repository "+name+" deleted.")
	case strings.HasPrefix(rest, "manifests/") && strings.HasSuffix(rest, "/delete"):
		ref := strings.TrimSuffix(strings.TrimPrefix(rest, "manifests/"), "/delete")
		d, err := h.repos.DeleteManifest(r.Context(), c, name, ref)
		if err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/repositories/"+name, "Manifest "+shortDigest(d)+" deleted from "+name+", with the tags that pointed at it.")
	case strings.HasPrefix(rest, "manifests/") && strings.HasSuffix(rest, "/attributes"):
		ref := strings.TrimSuffix(strings.TrimPrefix(rest, "manifests/"), "/attributes")
		a := formAttributes(r)
		m, err := h.repos.SetManifestAttributes(r.Context(), c, name, ref, func(meta.Attributes) meta.Attributes { return a })
		if err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/repositories/"+name+"/-/manifests/"+url.PathEscape(m.Digest.String()), "Attributes of the manifest saved.")
	default:
		h.notFound(w, r)
	}
}

func formAttributes(r *http.Request) meta.Attributes {
	on := func(k string) bool { return r.PostForm.Get(k) != "" }
	return meta.Attributes{ReadEnabled: on("readEnabled"), WriteEnabled: on("writeEnabled"),
		DeleteEnabled: on("deleteEnabled"), ListEnabled: on("listEnabled")}
}

func (h *Handler) repoFail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	var denied *auth.DeniedError
	switch {
	case errors.As(err, &denied):
		h.renderError(w, r, rq, http.StatusForbidden, "Not allowed",
			fmt.Sprintf("Your role (%s) does not allow this: %s. Ask an owner for a role that does; nothing was changed.", roleSummary(rq.user), denied.Error()))
	case errors.Is(err, meta.ErrRepositoryNotFound), errors.Is(err, meta.ErrManifestNotFound), errors.Is(err, meta.ErrTagNotFound):
		h.renderError(w, r, rq, http.StatusNotFound, "Not found", "It no longer exists: "+err.Error()+".")
	case errors.Is(err, meta.ErrLocked):
		h.renderError(w, r, rq, http.StatusConflict, "Locked", err.Error()+": change that attribute first.")
	default:
		h.fail(w, r, rq, err)
	}
}
