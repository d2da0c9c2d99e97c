package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

var timeZero time.Time

// maxPage caps one page of a listing; clients follow the Link header for more.
const maxPage = 10000

// pageParams reads ?n= and ?last=. A missing n means "as many as allowed".
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	last = q.Get("last")
	n = maxPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, "", newError(CodePaginationInvalid, "invalid n=%q: want a non-negative integer", truncate(s, 50))
		}
		n = min(v, maxPage)
	}
	return n, last, nil
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func (rg *Registry) tags(req *request) error {
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		return methodNotAllowed(req, "GET")
	}
	n, last, err := pageParams(req.r)
	if err != nil {
		return err
	}
	var tags []string
	if check := req.tagCheck(auth.OpReadMetadata); check != nil && n > 0 {
		// Only the tags the scope map lets the caller see, paging on
		// until a page is full so that filtering never ends a list early.
		tags, err = rg.visibleTags(req, check, last, n+1)
	} else if n > 0 {
		tags, err = rg.meta.Tags(req.r.Context(), req.rt.name, last, n+1)
	} else {
		_, err = rg.meta.Repository(req.r.Context(), req.rt.name)
	}
	if errors.Is(err, meta.ErrRepositoryNotFound) {
		return newError(CodeNameUnknown, "repository %q not found", req.rt.name)
	}
	if err != nil {
		return err
	}
	if tags == nil {
		tags = []string{}
	}
	if len(tags) > n {
		tags = tags[:n]
		req.w.Header().Set("Link", nextLink(fmt.Sprintf("/v2/%s/tags/list", req.rt.name), n, tags[n-1]))
	}
	writeJSON(req.w, http.StatusOK, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{req.rt.name, tags})
	return nil
}

// visibleTags lists up to n tags after last that check allows.
func (rg *Registry) visibleTags(req *request, check func(string) error, last string, n int) ([]string, error) {
	out := []string{}
	batch := max(n, 1000)
	for len(out) < n {
		tags, err := rg.meta.Tags(req.r.Context(), req.rt.name, last, batch)
		if err != nil {
			return nil, err
		}
		for _, t := range filterTags(slices.Clone(tags), check) {
			if len(out) < n {
				out = append(out, t)
			}
		}
		if len(tags) < batch {
			break
		}
		last = tags[len(tags)-1]
	}
	return out, nil
}

func nextLink(path string, n int, last string) string {
	return fmt.Sprintf(`<%s?%s>; rel="next"`, path, url.Values{"n": {strconv.Itoa(n)}, "last": {last}}.Encode())
}

// catalog lists the repositories the caller may see, paging through the
// store until a page is full so that filtering never shortens a page early.
func (rg *Registry) catalog(req *request) error {
	if req.r.Method != http.MethodGet {
		return methodNotAllowed(req, "GET")
	}
	n, last, err := pageParams(req.r)
	if err != nil {
		return err
	}
	repos := []string{}
	more := false
	cursor := last
	for n > 0 && !more {
		batch, err := rg.meta.Repositories(req.r.Context(), cursor, max(n+1, 100))
		if err != nil {
			return err
		}
		for _, name := range batch {
			if req.caller != nil && !req.caller.CanSee(name) {
				continue
			}
			if req.caller != nil {
				if f := req.caller.CatalogTagFilter(name); f != nil {
					ok, err := rg.meta.AnyTag(req.r.Context(), name, f)
					if err != nil {
						return err
					}
					if !ok {
						continue
					}
				}
			}
			if len(repos) == n {
				more = true
				break
			}
			repos = append(repos, name)
		}
		if len(batch) < max(n+1, 100) {
			break
		}
		cursor = batch[len(batch)-1]
	}
	if more {
		req.w.Header().Set("Link", nextLink("/v2/_catalog", n, repos[len(repos)-1]))
	}
	writeJSON(req.w, http.StatusOK, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
	return nil
}

func (rg *Registry) referrers(req *request) error {
	if req.r.Method != http.MethodGet {
		return methodNotAllowed(req, "GET")
	}
	d, e := parseDigest(req.rt.ref)
	if e != nil {
		return e
	}
	if _, err := rg.meta.Repository(req.r.Context(), req.rt.name); err == nil {
		if e := rg.readable(req, nil); e != nil {
			return e
		}
	}
	at := req.r.URL.Query().Get("artifactType")
	refs, err := rg.meta.Referrers(req.r.Context(), req.rt.name, d, at)
	if err != nil {
		return err
	}
	// A token limited to some tags sees the referrers of what it may pull
	// (which are then reachable too), and of nothing else.
	if check := req.tagCheck(auth.OpPull); check != nil && len(refs) > 0 {
		ok, err := rg.meta.Reachable(req.r.Context(), req.rt.name, allowedFrom(check), d)
		if err != nil && !errors.Is(err, meta.ErrReachLimit) {
			return err
		}
		if !ok {
			refs = []meta.Referrer{}
		}
	}
	if at != "" {
		req.w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	type index struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     []meta.Referrer `json:"manifests"`
	}
	writeJSON(req.w, http.StatusOK, ocispec.MediaTypeImageIndex, index{2, ocispec.MediaTypeImageIndex, refs})
	return nil
}
