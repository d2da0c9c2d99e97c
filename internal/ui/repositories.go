package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
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
	Name     string
	Hidden   bool
	Created  time.Time
	Tags     int // -1: not allowed to list
	Readonly bool
}

type reposData struct {
	Query    string
	Rows     []repoRow
	Next     string // "after" for the next page
	After    string
	Host     string
	Scanned  bool // the scan stopped at scanLimit
	ShowsAll bool // hidden repositories are included
}

// visible reports whether the user may see repo at all: the catalog's
// rule (any action on it).
func visible(rq *request, repo string) bool {
	return auth.VisibleInCatalog(rq.id, repo)
}

func (h *Handler) repositoriesPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	after := r.URL.Query().Get("after")
	d := reposData{Query: q, After: after, Host: h.registryHost(r), ShowsAll: rq.can(auth.ViewManagement)}
	needle := strings.ToLower(q)
	var names []string
	last, scanned := after, 0
	for len(names) <= reposPerPage && scanned < scanLimit {
		page, err := h.meta.ListRepositories(r.Context(), last, 1000, d.ShowsAll)
		if err != nil {
			h.fail(w, r, rq, err)
			return
		}
		for _, n := range page {
			scanned++
			if len(names) <= reposPerPage && visible(rq, n) && strings.Contains(n, needle) {
				names = append(names, n)
			}
		}
		if len(page) < 1000 {
			break
		}
		last = page[len(page)-1]
	}
	if len(names) > reposPerPage {
		names = names[:reposPerPage]
		d.Next = names[len(names)-1]
	} else if scanned >= scanLimit {
		d.Next, d.Scanned = last, true
	}
	for _, n := range names {
		row := repoRow{Name: n, Tags: -1}
		if repo, err := h.meta.Repository(r.Context(), n); err == nil {
			row.Created, row.Hidden = repo.CreatedAt, !repo.Attributes.ListEnabled
			row.Readonly = !repo.Attributes.WriteEnabled
		}
		if auth.Permits(rq.id, n, auth.OpReadMetadata) {
			if tags, err := h.meta.Tags(r.Context(), n, "", -1); err == nil {
				row.Tags = len(tags)
			}
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
	notFound := func() {
		h.renderError(w, r, rq, http.StatusNotFound, "Repository not found",
			fmt.Sprintf("There is no repository %q, or your role gives you no access to it.", name))
	}
	if auth.ValidateRepository(name) != nil || !visible(rq, name) {
		notFound()
		return meta.Repository{}, false
	}
	repo, err := h.meta.Repository(r.Context(), name)
	if errors.Is(err, meta.ErrRepositoryNotFound) {
		notFound()
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
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
		(d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown")
}

// platforms lists the platforms of an index's children.
func (doc manifestDoc) platforms() []string {
	var out []string
	for _, c := range doc.Manifests {
		if c.Platform != nil && !isAttestation(c) {
			out = append(out, c.Platform.String())
		}
	}
	return out
}

// totalSize is what pulling the manifest downloads: the manifest, its
// config and layers; for an index, each child's too (looked up, at most 32).
func (h *Handler) totalSize(ctx context.Context, repo string, m meta.Manifest, doc manifestDoc) int64 {
	n := m.Size
	if doc.Config != nil {
		n += doc.Config.Size
	}
	for _, l := range doc.Layers {
		n += l.Size
	}
	for i, c := range doc.Manifests {
		if i >= 32 {
			break
		}
		child, err := h.meta.Manifest(ctx, repo, c.Digest.String())
		if err != nil {
			n += c.Size
			continue
		}
		cd := parseManifest(child)
		n += child.Size
		if cd.Config != nil {
			n += cd.Config.Size
		}
		for _, l := range cd.Layers {
			n += l.Size
		}
	}
	return n
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

// untaggedPerPage bounds the untagged manifests shown on a repository page.
const untaggedPerPage = 50

type tagRow struct {
	Tag        string
	Digest     digest.Digest
	MediaType  string
	Artifact   string
	Size       int64
	Platforms  []string
	Created    time.Time
	Referrers  string
	Attributes meta.Attributes
}

type repoData struct {
	Name       string
	Repo       meta.Repository
	Host       string
	CanList    bool
	CanEdit    bool
	CanDelete  bool
	Allowed    []string
	Tags       []tagRow
	Untagged   []tagRow
	After      string
	Next       string
	FirstTag   string
	AttrErrors string
}

// manifestRow is what the repository page shows of one manifest.
func (h *Handler) manifestRow(ctx context.Context, repo string, m meta.Manifest) tagRow {
	doc := parseManifest(m)
	return tagRow{Digest: m.Digest, MediaType: m.MediaType, Artifact: m.ArtifactType,
		Size: h.totalSize(ctx, repo, m, doc), Platforms: doc.platforms(), Created: m.CreatedAt, Attributes: m.Attributes}
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
	allowed := auth.Allowed(rq.id, name)
	d := repoData{Name: name, Repo: repo, Host: h.registryHost(r), Allowed: allowed.ScopeMapNames(),
		CanList: auth.Permits(rq.id, name, auth.OpReadMetadata), CanEdit: auth.Permits(rq.id, name, auth.OpWriteAttributes),
		CanDelete: auth.Permits(rq.id, name, auth.OpDeleteRepository),
		After:     r.URL.Query().Get("after")}
	if d.CanList {
		tags, err := h.meta.Tags(r.Context(), name, d.After, tagsPerPage+1)
		if err != nil && !errors.Is(err, meta.ErrRepositoryNotFound) {
			h.fail(w, r, rq, err)
			return
		}
		if len(tags) > tagsPerPage {
			tags = tags[:tagsPerPage]
			d.Next = tags[len(tags)-1]
		}
		for _, t := range tags {
			m, err := h.meta.Manifest(r.Context(), name, t)
			if err != nil {
				continue // untagged meanwhile
			}
			row := h.manifestRow(r.Context(), name, m)
			row.Tag = t
			if refs, err := h.meta.Referrers(r.Context(), name, m.Digest, ""); err == nil {
				row.Referrers = referrerSummary(refs)
			}
			d.Tags = append(d.Tags, row)
		}
		if len(d.Tags) > 0 {
			d.FirstTag = d.Tags[0].Tag
		}
		untagged, err := h.meta.UntaggedManifests(r.Context(), name, untaggedPerPage)
		if err != nil && !errors.Is(err, meta.ErrRepositoryNotFound) {
			h.fail(w, r, rq, err)
			return
		}
		for _, m := range untagged {
			row := h.manifestRow(r.Context(), name, m)
			if m.Subject != "" {
				row.Referrers = "refers to " + shortDigest(m.Subject)
			}
			d.Untagged = append(d.Untagged, row)
		}
	}
	h.render(w, r, rq, status, "repository.html", view{Title: name, Nav: "repositories", Error: errMsg, Data: d})
}

type manifestData struct {
	Repo        string
	Ref         string
	Manifest    meta.Manifest
	Size        int64
	Config      *descriptor
	Layers      []descriptor
	Children    []childRow
	Referrers   []referrerRow
	Annotations [][2]string
	CanEdit     bool
	Host        string
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
	if !auth.Permits(rq.id, name, auth.OpReadMetadata) {
		h.renderError(w, r, rq, http.StatusForbidden, "Not allowed",
			fmt.Sprintf("Your role (%s) cannot read the metadata of %s: it needs metadata/read.", rq.user.Role, name))
		return
	}
	m, err := h.meta.Manifest(r.Context(), name, ref)
	if errors.Is(err, meta.ErrManifestNotFound) || errors.Is(err, meta.ErrRepositoryNotFound) {
		h.renderError(w, r, rq, http.StatusNotFound, "Manifest not found", fmt.Sprintf("Repository %s has no manifest %s.", name, ref))
		return
	}
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	doc := parseManifest(m)
	canEdit := auth.Permits(rq.id, name, auth.OpWriteAttributes)
	d := manifestData{Repo: name, Ref: ref, Manifest: m, Size: h.totalSize(r.Context(), name, m, doc), Config: doc.Config,
		Layers: doc.Layers, CanEdit: canEdit, Host: h.registryHost(r)}
	for _, c := range doc.Manifests {
		d.Children = append(d.Children, childRow{descriptor: c, Platform: c.Platform.String(), Attestation: isAttestation(c)})
	}
	if refs, err := h.meta.Referrers(r.Context(), name, m.Digest, ""); err == nil {
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
	if !auth.Permits(rq.id, name, auth.OpDeleteRepository) {
		h.forbidden(w, r, rq, "delete repository "+name+" (it needs content/delete)")
		return
	}
	h.renderDeleteRepository(w, r, rq, http.StatusOK, name, "", "")
}

func (h *Handler) renderDeleteRepository(w http.ResponseWriter, r *http.Request, rq *request, status int, name, confirm, errMsg string) {
	d := deleteRepoData{Name: name, Tags: -1, Confirm: confirm}
	if tags, err := h.meta.Tags(r.Context(), name, "", -1); err == nil {
		d.Tags = len(tags)
	}
	h.render(w, r, rq, status, "repository_delete.html", view{Title: "Delete " + name, Nav: "repositories", Error: errMsg, Data: d})
}

// repositoryAction handles the POSTs below /repositories/.
func (h *Handler) repositoryAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name, rest := splitRepoPath(r.PathValue("path"))
	repo, ok := h.repoAccess(w, r, rq, name)
	if !ok {
		return
	}
	switch {
	case rest == "attributes":
		if !auth.Permits(rq.id, name, auth.OpWriteAttributes) {
			h.forbidden(w, r, rq, "change the attributes of "+name+" (it needs metadata/write)")
			return
		}
		a := formAttributes(r)
		// The form sets all four attributes: what was read is replaced.
		if _, err := h.meta.UpdateRepositoryAttributes(r.Context(), name, func(meta.Attributes) meta.Attributes { return a }); err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.recordRepo(rq, r, audit.Event{Kind: audit.KindPermission, Repository: name, Target: "repository " + name,
			Reason: "attributes: " + describeAttributes(a)})
		h.redirect(w, r, rq, "/repositories/"+name, "Attributes of "+name+" saved.")
	case rest == "delete":
		if !auth.Permits(rq.id, name, auth.OpDeleteRepository) {
			h.forbidden(w, r, rq, "delete repository "+name+" (it needs content/delete)")
			return
		}
		confirm := strings.TrimSpace(r.PostForm.Get("confirm"))
		if confirm != name {
			h.renderDeleteRepository(w, r, rq, http.StatusUnprocessableEntity, name, confirm,
				fmt.Sprintf("Type the repository's name, %s, to confirm. Nothing was deleted.", name))
			return
		}
		if err := h.meta.DeleteRepository(r.Context(), name); err != nil {
			var le *meta.LockedError
			if errors.As(err, &le) {
				h.renderDeleteRepository(w, r, rq, http.StatusConflict, name, confirm,
					fmt.Sprintf("%s cannot be deleted: %s. Enable delete (and write) in its attributes first. Nothing was deleted.", name, le.Error()))
				return
			}
			h.repoFail(w, r, rq, err)
			return
		}
		h.recordRepo(rq, r, audit.Event{Kind: audit.KindDelete, Repository: name, Target: "repository " + name})
		h.redirect(w, r, rq, "/repositories", "Repository "+name+" deleted.")
	case strings.HasPrefix(rest, "manifests/") && strings.HasSuffix(rest, "/attributes"):
		ref := strings.TrimSuffix(strings.TrimPrefix(rest, "manifests/"), "/attributes")
		if !auth.Permits(rq.id, name, auth.OpWriteAttributes) {
			h.forbidden(w, r, rq, "change the attributes of "+name+" (it needs metadata/write)")
			return
		}
		m, err := h.meta.Manifest(r.Context(), name, ref)
		if err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		a := formAttributes(r)
		if _, err := h.meta.UpdateManifestAttributes(r.Context(), name, m.Digest, func(meta.Attributes) meta.Attributes { return a }); err != nil {
			h.repoFail(w, r, rq, err)
			return
		}
		h.recordRepo(rq, r, audit.Event{Kind: audit.KindPermission, Repository: name, Digest: m.Digest.String(),
			Target: "manifest " + name + "@" + m.Digest.String(), Reason: "attributes: " + describeAttributes(a)})
		h.redirect(w, r, rq, "/repositories/"+name+"/-/manifests/"+url.PathEscape(m.Digest.String()), "Attributes of the manifest saved.")
	default:
		_ = repo
		h.notFound(w, r)
	}
}

func formAttributes(r *http.Request) meta.Attributes {
	on := func(k string) bool { return r.PostForm.Get(k) != "" }
	return meta.Attributes{ReadEnabled: on("readEnabled"), WriteEnabled: on("writeEnabled"),
		DeleteEnabled: on("deleteEnabled"), ListEnabled: on("listEnabled")}
}

func describeAttributes(a meta.Attributes) string {
	return fmt.Sprintf("deleteEnabled=%t writeEnabled=%t readEnabled=%t listEnabled=%t", a.DeleteEnabled, a.WriteEnabled, a.ReadEnabled, a.ListEnabled)
}

func (h *Handler) repoFail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	switch {
	case errors.Is(err, meta.ErrRepositoryNotFound), errors.Is(err, meta.ErrManifestNotFound), errors.Is(err, meta.ErrTagNotFound):
		h.renderError(w, r, rq, http.StatusNotFound, "Not found", "It no longer exists: "+err.Error()+".")
	case errors.Is(err, meta.ErrLocked):
		h.renderError(w, r, rq, http.StatusConflict, "Locked", err.Error()+": change that attribute first.")
	default:
		h.fail(w, r, rq, err)
	}
}

// recordRepo writes a repository change made in the portal to the audit log.
func (h *Handler) recordRepo(rq *request, r *http.Request, e audit.Event) {
	if h.audit == nil {
		return
	}
	e.Result = audit.ResultSuccess
	e.Identity, e.IdentityKind = rq.user.Name, "user"
	e.CallerIP, e.UserAgent = h.clientIP(r), r.UserAgent()
	h.audit.Record(e)
}
