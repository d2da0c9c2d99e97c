package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// MaxManifestSize is the largest manifest berth accepts (as Distribution and
// most registries do).
const MaxManifestSize = 4 << 20

// Manifest media types berth stores.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var imageTypes = map[string]bool{ocispec.MediaTypeImageManifest: true, mediaTypeDockerManifest: true}
var indexTypes = map[string]bool{ocispec.MediaTypeImageIndex: true, mediaTypeDockerManifestList: true}

// manifestDoc is the union of the fields of image manifests and indexes that
// berth reads.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func (rg *Registry) manifest(req *request) error {
	switch req.r.Method {
	case http.MethodGet, http.MethodHead:
		return rg.getManifest(req)
	case http.MethodPut:
		return rg.putManifest(req)
	case http.MethodDelete:
		return rg.deleteManifest(req)
	}
	return methodNotAllowed(req, "GET, HEAD, PUT, DELETE")
}

func isDigest(ref string) bool {
	return strings.Contains(ref, ":")
}

func parseDigest(s string) (digest.Digest, *Error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", newError(CodeDigestInvalid, "invalid digest %q: %v", truncate(s, 200), err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return "", newError(CodeDigestInvalid, "unsupported digest algorithm %q: use sha256 or sha512", a)
	}
	return d, nil
}

func checkRef(ref string) *Error {
	if isDigest(ref) {
		if _, e := parseDigest(ref); e != nil {
			return e
		}
		return nil
	}
	if !tagRE.MatchString(ref) {
		return newError(CodeManifestInvalid, "invalid tag %q: a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'", truncate(ref, 200))
	}
	return nil
}

func (rg *Registry) getManifest(req *request) error {
	ref := req.rt.ref
	if e := checkRef(ref); e != nil {
		if e.Code == CodeManifestInvalid {
			return newError(CodeManifestUnknown, "%s", e.Message)
		}
		return e
	}
	ctx := req.r.Context()
	if !isDigest(ref) {
		if check := req.tagCheck(auth.OpPull); check != nil {
			if err := check(ref); err != nil {
				return req.refuse(err)
			}
		}
	}
	m, err := rg.meta.Manifest(ctx, req.rt.name, ref)
	if errors.Is(err, meta.ErrManifestNotFound) {
		return rg.unknownManifest(req)
	}
	if err != nil {
		return err
	}
	if isDigest(ref) {
		if err := rg.readableDigest(ctx, req, digest.Digest(ref)); err != nil {
			return err
		}
	}
	if e := rg.readable(req, &m); e != nil {
		return e
	}
	if err := rg.trusted(req, &m); err != nil {
		return err
	}
	dg := m.Digest
	if isDigest(ref) {
		dg = digest.Digest(ref)
	}
	h := req.w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.Content)))
	h.Set("Docker-Content-Digest", dg.String())
	h.Set("ETag", `"`+dg.String()+`"`)
	if req.r.Method == http.MethodHead {
		req.w.WriteHeader(http.StatusOK)
		return nil
	}
	req.w.WriteHeader(http.StatusOK)
	req.w.Write(m.Content)
	tag := ""
	if !isDigest(ref) {
		tag = ref
	}
	_ = rg.emit(req, "pull", tag, m.Digest) // answered already: a pull's record is not waited for
	return nil
}

// unknownManifest distinguishes an unknown repository from an unknown
// manifest, as clients show the difference to people.
func (rg *Registry) unknownManifest(req *request) error {
	if _, err := rg.meta.Repository(req.r.Context(), req.rt.name); errors.Is(err, meta.ErrRepositoryNotFound) {
		return newError(CodeNameUnknown, "repository %q not found", req.rt.name)
	}
	return newError(CodeManifestUnknown, "manifest %q not found in repository %q", truncate(req.rt.ref, 200), req.rt.name)
}

// readable enforces readEnabled on the repository and the manifest.
func (rg *Registry) readable(req *request, m *meta.Manifest) error {
	repo, err := rg.meta.Repository(req.r.Context(), req.rt.name)
	if err != nil {
		return err
	}
	if !repo.Attributes.ReadEnabled {
		return newError(CodeDenied, "repository %q has readEnabled=false", req.rt.name)
	}
	if m != nil && !m.Attributes.ReadEnabled {
		return newError(CodeDenied, "manifest %s in repository %q has readEnabled=false", m.Digest, req.rt.name)
	}
	return nil
}

func (rg *Registry) putManifest(req *request) error {
	ref := req.rt.ref
	if e := checkRef(ref); e != nil {
		return e
	}
	r := req.r
	if r.ContentLength > MaxManifestSize {
		return newError(CodeManifestTooLarge, "manifest is %d bytes; the limit is %d", r.ContentLength, MaxManifestSize)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxManifestSize+1))
	if err != nil {
		return newError(CodeManifestInvalid, "reading manifest: %v", err)
	}
	if len(body) > MaxManifestSize {
		return newError(CodeManifestTooLarge, "manifest is larger than the limit of %d bytes", MaxManifestSize)
	}

	alg := digest.Canonical
	if isDigest(ref) {
		alg = digest.Digest(ref).Algorithm() // checkRef allowed only sha256 and sha512
	}
	dg := alg.FromBytes(body)
	if isDigest(ref) && dg.String() != ref {
		return newError(CodeDigestInvalid, "manifest digest is %s, not %s", dg, ref)
	}

	m, requires, e := parseManifest(r.Header.Get("Content-Type"), body)
	if e != nil {
		return e
	}
	m.Digest = dg

	var tags []string
	if !isDigest(ref) {
		tags = append(tags, ref)
	}
	for _, t := range r.URL.Query()["tag"] {
		if !tagRE.MatchString(t) {
			return newError(CodeManifestInvalid, "invalid tag %q in ?tag=", truncate(t, 200))
		}
		tags = append(tags, t)
	}

	// Tag rules: every tag must be one the caller may write, and those it
	// may not move (without content/overwrite) are kept where they point.
	var keep []string
	if check := req.tagCheck(auth.OpPush); check != nil {
		for _, t := range tags {
			if err := check(t); err != nil {
				return req.refuse(err)
			}
		}
	}
	overwrite := req.tagCheck(auth.OpOverwriteTag)
	if overwrite != nil {
		for _, t := range tags {
			if overwrite(t) != nil {
				keep = append(keep, t)
			}
		}
	}

	err = rg.meta.PutManifest(r.Context(), meta.PutManifestRequest{Repository: req.rt.name, Manifest: m, Tags: tags, Requires: requires, Keep: keep,
		Platform: rg.imagePlatform(r.Context(), m)})
	var bu *meta.BlobUnknownError
	var le *meta.LockedError
	var tm *meta.TagMoveError
	switch {
	case errors.As(err, &tm):
		return req.refuse(fmt.Errorf("%w; it points at %s", overwrite(tm.Tag), tm.Current))
	case errors.As(err, &bu):
		e := newError(CodeManifestBlobUnknown, "manifest references blob %s, which repository %q does not have: push the blob first", bu.Digest, req.rt.name)
		e.Detail = map[string]string{"digest": bu.Digest.String()}
		return e
	case errors.As(err, &le):
		return newError(CodeDenied, "%s: unlock it before overwriting", le.Error())
	case err != nil:
		return err
	}
	// The push is recorded before it is acknowledged, so that a crash
	// cannot leave an acknowledged push without its audit record.
	for _, t := range tags {
		if err := rg.emit(req, "push", t, dg); err != nil {
			return err
		}
	}
	if len(tags) == 0 {
		if err := rg.emit(req, "push", "", dg); err != nil {
			return err
		}
	}

	h := req.w.Header()
	h.Set("Location", rg.location(fmt.Sprintf("/v2/%s/manifests/%s", req.rt.name, dg)))
	h.Set("Docker-Content-Digest", dg.String())
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject.String())
	}
	if len(tags) > 0 && isDigest(ref) {
		h["OCI-Tag"] = tags
	}
	req.w.WriteHeader(http.StatusCreated)
	return nil
}

// parseManifest validates a manifest and returns what berth indexes from it
// and the blobs the repository must already have.
func parseManifest(contentType string, body []byte) (meta.Manifest, []digest.Digest, *Error) {
	if err := strictKeys(body); err != nil {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "%v", err)
	}
	var doc manifestDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if dec.More() {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "manifest has data after the JSON document")
	}
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	if mt == "" {
		mt = doc.MediaType
	}
	if doc.MediaType != "" && doc.MediaType != mt {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "Content-Type %q does not match the manifest's mediaType %q", mt, doc.MediaType)
	}
	if !imageTypes[mt] && !indexTypes[mt] {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "unsupported manifest media type %q: berth stores %s, %s, %s and %s", mt,
			ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, mediaTypeDockerManifest, mediaTypeDockerManifestList)
	}
	if doc.SchemaVersion != 2 {
		return meta.Manifest{}, nil, newError(CodeManifestInvalid, "schemaVersion must be 2, not %d", doc.SchemaVersion)
	}
	m := meta.Manifest{MediaType: mt, Size: int64(len(body)), Content: body, Annotations: doc.Annotations, ArtifactType: doc.ArtifactType}
	if doc.Subject != nil {
		if err := doc.Subject.Digest.Validate(); err != nil {
			return m, nil, newError(CodeManifestInvalid, "invalid subject digest %q: %v", doc.Subject.Digest, err)
		}
		m.Subject = doc.Subject.Digest
	}
	var requires []digest.Digest
	if imageTypes[mt] {
		if doc.Config == nil {
			return m, nil, newError(CodeManifestInvalid, "image manifest has no config descriptor")
		}
		if len(doc.Manifests) > 0 {
			return m, nil, newError(CodeManifestInvalid, "image manifest must not have a manifests list")
		}
		if m.ArtifactType == "" {
			m.ArtifactType = doc.Config.MediaType
		}
		descs := append([]ocispec.Descriptor{*doc.Config}, doc.Layers...)
		seen := make(map[digest.Digest]bool, len(descs))
		for i, d := range descs {
			if err := d.Digest.Validate(); err != nil {
				return m, nil, newError(CodeManifestInvalid, "descriptor %d has an invalid digest %q: %v", i, d.Digest, err)
			}
			if d.Size < 0 {
				return m, nil, newError(CodeManifestInvalid, "descriptor %d has a negative size", i)
			}
			if nonDistributable(d.MediaType) {
				continue // its content lives elsewhere (urls), by design
			}
			if !seen[d.Digest] {
				seen[d.Digest] = true
				requires = append(requires, d.Digest)
			}
		}
	} else {
		if doc.Config != nil || len(doc.Layers) > 0 {
			return m, nil, newError(CodeManifestInvalid, "an index must not have config or layers")
		}
		// An index's children need not be here: mirrors often keep a subset
		// of platforms.
		for i, d := range doc.Manifests {
			if err := d.Digest.Validate(); err != nil {
				return m, nil, newError(CodeManifestInvalid, "manifests[%d] has an invalid digest %q: %v", i, d.Digest, err)
			}
		}
	}
	return m, requires, nil
}

func nonDistributable(mediaType string) bool {
	return strings.Contains(mediaType, ".nondistributable.") || mediaType == mediaTypeDockerForeignLayer
}

func (rg *Registry) deleteManifest(req *request) error {
	ref := req.rt.ref
	if e := checkRef(ref); e != nil {
		if e.Code == CodeManifestInvalid {
			return newError(CodeManifestUnknown, "%s", e.Message)
		}
		return e
	}
	ctx := req.r.Context()
	var err error
	if isDigest(ref) {
		if err := rg.deletableDigest(ctx, req, digest.Digest(ref)); err != nil {
			return err
		}
		err = rg.meta.DeleteManifest(ctx, req.rt.name, digest.Digest(ref))
	} else {
		if check := req.tagCheck(auth.OpUntag); check != nil {
			if err := check(ref); err != nil {
				return req.refuse(err)
			}
		}
		err = rg.meta.DeleteTag(ctx, req.rt.name, ref)
	}
	var le *meta.LockedError
	switch {
	case errors.Is(err, meta.ErrManifestNotFound), errors.Is(err, meta.ErrTagNotFound):
		return rg.unknownManifest(req)
	case errors.As(err, &le):
		return newError(CodeDenied, "%s: unlock it before deleting", le.Error())
	case err != nil:
		return err
	}
	if isDigest(ref) {
		err = rg.emit(req, "delete", "", digest.Digest(ref))
	} else {
		err = rg.emit(req, "untag", ref, "")
	}
	if err != nil {
		return err
	}
	req.w.WriteHeader(http.StatusAccepted)
	return nil
}

// knownKeys are the manifest and descriptor fields berth reads.
var knownKeys = []string{"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests",
	"subject", "annotations", "digest", "size", "urls", "data", "platform"}

// strictKeys refuses a manifest that would read differently to berth and to
// a client: Go's decoder matches keys without regard to case and keeps the
// last of duplicate keys, so {"layers":[x],"LAYERS":[]} would let berth see
// no layers where clients see a layer that was never pushed. Every object
// may hold a key once, in any case, and the fields berth reads must be
// spelled exactly.
func strictKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("manifest is not valid JSON: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.object && top.key {
			lower := strings.ToLower(s)
			if top.seen[lower] {
				return fmt.Errorf("manifest has the key %q more than once (keys are compared without case)", s)
			}
			top.seen[lower] = true
			for _, k := range knownKeys {
				if s != k && strings.EqualFold(s, k) {
					return fmt.Errorf("manifest key %q must be spelled %q", s, k)
				}
			}
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.object {
				top.key = true
			}
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			if top != nil && top.object {
				top.key = true
			}
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].key = true
			}
			continue
		}
		// a scalar value
		if top != nil && top.object {
			top.key = true
		}
	}
}
