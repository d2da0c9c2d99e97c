// Package metatest is the conformance suite of the metadata store: every
// engine meta.Store runs on must pass it, as the embedded SQLite database
// and PostgreSQL do in package meta's tests.
package metatest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

// Open returns a fresh, empty store for one test, closed when the test
// ends, and a function that opens another store on the same database, as a
// second node of a cluster would (an engine that one process owns returns
// the same store).
type Open func(t *testing.T) (s *meta.Store, node func() *meta.Store)

// Run runs the suite.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"NotFound", testNotFound},
		{"BlobLinks", testBlobLinks},
		{"PutManifestRequiresBlobs", testRequiresBlobs},
		{"ManifestRoundTrip", testManifestRoundTrip},
		{"TagMove", testTagMove},
		{"TagListing", testTagListing},
		{"TagManifests", testTagManifests},
		{"CatalogPaging", testCatalogPaging},
		{"Referrers", testReferrers},
		{"RepositoryLocks", testRepositoryLocks},
		{"ManifestLocks", testManifestLocks},
		{"ListEnabled", testListEnabled},
		{"DeleteCascades", testDeleteCascades},
		{"UnlinkBlob", testUnlinkBlob},
		{"GCCandidates", testGCCandidates},
		{"Walks", testWalks},
		{"Uploads", testUploads},
		{"UploadCaps", testUploadCaps},
		{"UploadCapsRacing", testUploadCapsRacing},
		{"UploadCASRacing", testUploadCASRacing},
		{"UploadCreateRacing", testUploadCreateRacing},
		{"UploadClaims", testUploadClaims},
		{"UploadClaimsRacing", testUploadClaimsRacing},
		{"ContentRefs", testContentRefs},
		{"LeasesRacing", testLeasesRacing},
		{"LeaseExpiry", testLeaseExpiry},
		{"ChangeLog", testChangeLog},
		{"ChangeLogFailedWrites", testChangeLogFailedWrites},
		{"ChangeLogAtomic", testChangeLogAtomic},
		{"ConcurrentTagPushes", testConcurrentTagPushes},
		{"ConcurrentRepositoryCreation", testConcurrentRepositoryCreation},
		{"OtherNodeSeesWrites", testOtherNodeSeesWrites},
		{"NamesAreCaseSensitive", testCaseSensitive},
		{"Platforms", testPlatforms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, node := open(t)
			e := &env{ctx: context.Background(), s: s, node: node}
			e.clock.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
			s.SetClock(e.now)
			tc.fn(t, e)
		})
	}
}

type env struct {
	ctx   context.Context
	s     *meta.Store
	node  func() *meta.Store
	clock atomic.Int64
}

func (e *env) now() time.Time          { return time.Unix(0, e.clock.Load()) }
func (e *env) advance(d time.Duration) { e.clock.Add(int64(d)) }
func (e *env) second() *meta.Store     { n := e.node(); n.SetClock(e.now); return n }
func must(t *testing.T, err error)     { t.Helper(); mustNot(t, err) }
func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
func blob(s string) digest.Digest { return digest.FromString(s) }

const (
	imageType  = "application/vnd.oci.image.manifest.v1+json"
	configType = "application/vnd.oci.image.config.v1+json"
)

// image is a manifest document with config cfg and layers.
func image(cfg digest.Digest, subject *meta.Manifest, artifactType string, layers ...digest.Digest) meta.Manifest {
	doc := `{"schemaVersion":2,"mediaType":"` + imageType + `","config":{"mediaType":"` + configType + `","digest":"` + cfg.String() + `","size":1},"layers":[`
	for i, l := range layers {
		if i > 0 {
			doc += ","
		}
		doc += `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + l.String() + `","size":1}`
	}
	doc += `]`
	m := meta.Manifest{MediaType: imageType, ArtifactType: configType}
	if artifactType != "" {
		doc += `,"artifactType":"` + artifactType + `"`
		m.ArtifactType = artifactType
	}
	if subject != nil {
		doc += `,"subject":{"mediaType":"` + imageType + `","digest":"` + subject.Digest.String() + `","size":1}`
		m.Subject = subject.Digest
	}
	doc += `}`
	m.Content = []byte(doc)
	m.Digest = digest.FromBytes(m.Content)
	m.Size = int64(len(m.Content))
	return m
}

// push links cfg and layers and pushes an image of them with tags.
func (e *env) push(t *testing.T, s *meta.Store, repo string, m meta.Manifest, tags ...string) {
	t.Helper()
	req := meta.PutManifestRequest{Repository: repo, Manifest: m, Tags: tags}
	for d := range blobsOf(m) {
		must(t, s.LinkBlob(e.ctx, repo, d, 1))
		req.Requires = append(req.Requires, d)
	}
	must(t, s.PutManifest(e.ctx, req))
}

func blobsOf(m meta.Manifest) map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	// The suite's images name their blobs in a fixed shape; parse the
	// digests out without a JSON dependency on the store's parser.
	for _, d := range digestsIn(string(m.Content)) {
		if d != m.Subject {
			out[d] = true
		}
	}
	return out
}

func digestsIn(s string) []digest.Digest {
	var out []digest.Digest
	for i := 0; i+7+64 <= len(s); i++ {
		if s[i:i+7] == "sha256:" {
			if d, err := digest.Parse(s[i : i+7+64]); err == nil {
				out = append(out, d)
				i += 70
			}
		}
	}
	return out
}

func testNotFound(t *testing.T, e *env) {
	s := e.s
	if _, err := s.Repository(e.ctx, "none"); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("Repository: %v, want ErrRepositoryNotFound", err)
	}
	if _, err := s.Manifest(e.ctx, "none", "latest"); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("Manifest: %v, want ErrManifestNotFound", err)
	}
	if _, err := s.Tags(e.ctx, "none", "", -1); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("Tags: %v, want ErrRepositoryNotFound", err)
	}
	if _, err := s.Blob(e.ctx, "none", blob("x")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("Blob: %v, want ErrBlobNotFound", err)
	}
	if err := s.DeleteTag(e.ctx, "none", "latest"); !errors.Is(err, meta.ErrTagNotFound) {
		t.Errorf("DeleteTag: %v, want ErrTagNotFound", err)
	}
	if err := s.DeleteManifest(e.ctx, "none", blob("m")); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("DeleteManifest: %v, want ErrManifestNotFound", err)
	}
	if err := s.DeleteRepository(e.ctx, "none"); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("DeleteRepository: %v, want ErrRepositoryNotFound", err)
	}
	if err := s.UnlinkBlob(e.ctx, "none", blob("x")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("UnlinkBlob: %v, want ErrBlobNotFound", err)
	}
	keep := func(a meta.Attributes) meta.Attributes { return a }
	if _, err := s.UpdateRepositoryAttributes(e.ctx, "none", keep); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("UpdateRepositoryAttributes: %v, want ErrRepositoryNotFound", err)
	}
	e.push(t, s, "app", image(blob("cfg"), nil, ""), "v1")
	if _, err := s.UpdateManifestAttributes(e.ctx, "app", blob("m"), keep); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("UpdateManifestAttributes: %v, want ErrManifestNotFound", err)
	}
	if _, err := s.Manifest(e.ctx, "app", "v2"); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("Manifest of an unknown tag: %v, want ErrManifestNotFound", err)
	}
	if err := s.DeleteTag(e.ctx, "app", "v2"); !errors.Is(err, meta.ErrTagNotFound) {
		t.Errorf("DeleteTag of an unknown tag: %v, want ErrTagNotFound", err)
	}
	if err := s.ReferenceBlob(e.ctx, "app", blob("x")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("ReferenceBlob: %v, want ErrBlobNotFound", err)
	}
}

func testBlobLinks(t *testing.T, e *env) {
	s := e.s
	d := blob("layer")
	must(t, s.LinkBlob(e.ctx, "b/app", d, 42))
	must(t, s.LinkBlob(e.ctx, "a/app", d, 42))
	must(t, s.LinkBlob(e.ctx, "a/app", d, 42)) // again: no error
	if n, err := s.Blob(e.ctx, "a/app", d); err != nil || n != 42 {
		t.Errorf("Blob = %d, %v; want 42", n, err)
	}
	if _, err := s.Repository(e.ctx, "a/app"); err != nil {
		t.Errorf("LinkBlob did not create the repository: %v", err)
	}
	if _, err := s.Blob(e.ctx, "c/app", d); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("Blob in another repository: %v, want ErrBlobNotFound", err)
	}
	got, err := s.RepositoriesWithBlob(e.ctx, d)
	mustNot(t, err)
	if !slices.Equal(got, []string{"a/app", "b/app"}) {
		t.Errorf("RepositoriesWithBlob = %v", got)
	}
	if ok, err := s.BlobReferenced(e.ctx, d); err != nil || !ok {
		t.Errorf("BlobReferenced = %v, %v", ok, err)
	}
	if ok, err := s.BlobReferenced(e.ctx, blob("other")); err != nil || ok {
		t.Errorf("BlobReferenced(unlinked) = %v, %v", ok, err)
	}
}

func testRequiresBlobs(t *testing.T, e *env) {
	s := e.s
	m := image(blob("cfg"), nil, "", blob("l1"))
	must(t, s.LinkBlob(e.ctx, "app", blob("cfg"), 1))
	err := s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: m, Tags: []string{"v1"}, Requires: []digest.Digest{blob("cfg"), blob("l1")}})
	var bu *meta.BlobUnknownError
	if !errors.As(err, &bu) || bu.Digest != blob("l1") {
		t.Fatalf("PutManifest = %v, want BlobUnknownError for l1", err)
	}
	if _, err := s.Manifest(e.ctx, "app", m.Digest.String()); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("refused manifest stored: %v", err)
	}
	if _, err := s.Manifest(e.ctx, "app", "v1"); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("refused manifest tagged: %v", err)
	}
}

func testManifestRoundTrip(t *testing.T, e *env) {
	s := e.s
	m := image(blob("cfg"), nil, "", blob("l1"), blob("l2"))
	m.Annotations = map[string]string{"org.opencontainers.image.title": "t", "x": "ü"}
	e.push(t, s, "team/app", m, "v1", "latest")
	for _, ref := range []string{"v1", "latest", m.Digest.String()} {
		got, err := s.Manifest(e.ctx, "team/app", ref)
		mustNot(t, err)
		if got.Digest != m.Digest || got.MediaType != m.MediaType || got.ArtifactType != m.ArtifactType || got.Size != m.Size ||
			string(got.Content) != string(m.Content) || got.Annotations["x"] != "ü" || got.Attributes != meta.DefaultAttributes || got.CreatedAt.IsZero() {
			t.Errorf("Manifest(%s) = %+v", ref, got)
		}
	}
	r, err := s.Repository(e.ctx, "team/app")
	mustNot(t, err)
	if r.Name != "team/app" || r.Attributes != meta.DefaultAttributes {
		t.Errorf("Repository = %+v", r)
	}
	// A second push of the same manifest is no error and keeps it.
	e.push(t, s, "team/app", m, "v2")
	if got, err := s.Manifest(e.ctx, "team/app", "v2"); err != nil || got.Digest != m.Digest {
		t.Errorf("re-push: %v %v", got.Digest, err)
	}
}

func testTagMove(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "latest")
	e.advance(time.Second)
	e.push(t, s, "app", m2, "latest")
	if got, err := s.Manifest(e.ctx, "app", "latest"); err != nil || got.Digest != m2.Digest {
		t.Fatalf("latest = %v, %v; want %s", got.Digest, err, m2.Digest)
	}
	if _, err := s.Manifest(e.ctx, "app", m1.Digest.String()); err != nil {
		t.Errorf("old manifest gone after its tag moved: %v", err)
	}
	un, err := s.UntaggedManifests(e.ctx, "app", 10)
	mustNot(t, err)
	if len(un) != 1 || un[0].Digest != m1.Digest {
		t.Errorf("UntaggedManifests = %v, want [%s]", un, m1.Digest)
	}
	if un, err := s.UntaggedManifests(e.ctx, "app", -1); err != nil || len(un) != 1 {
		t.Errorf("UntaggedManifests(n=-1) = %d, %v", len(un), err)
	}
}

func testTagListing(t *testing.T, e *env) {
	s := e.s
	m := image(blob("cfg"), nil, "")
	all := []string{"v1", "a", "B", "_x", "v10", "Z9"}
	e.push(t, s, "app", m, all...)
	want := slices.Clone(all)
	slices.Sort(want) // bytewise: B Z9 _x a v1 v10
	for _, tc := range []struct {
		last string
		n    int
		want []string
	}{
		{"", -1, want},
		{"", 2, want[:2]},
		{want[1], 2, want[2:4]},
		{want[3], 100, want[4:]},
		{"v10", 5, []string{}},
		{"", 0, []string{}},
	} {
		got, err := s.Tags(e.ctx, "app", tc.last, tc.n)
		mustNot(t, err)
		if !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("Tags(last=%q, n=%d) = %#v, want %#v", tc.last, tc.n, got, tc.want)
		}
	}
}

func testCatalogPaging(t *testing.T, e *env) {
	s := e.s
	names := []string{"b/app", "a", "a/b/c", "a-b", "z", "a_b"}
	for _, n := range names {
		must(t, s.LinkBlob(e.ctx, n, blob("x"), 1))
	}
	want := slices.Clone(names)
	slices.Sort(want)
	var got []string
	last := ""
	for {
		page, err := s.Repositories(e.ctx, last, 4)
		mustNot(t, err)
		got = append(got, page...)
		if len(page) < 4 {
			break
		}
		last = page[len(page)-1]
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged catalog = %v, want %v", got, want)
	}
	_, err := s.UpdateRepositoryAttributes(e.ctx, "a-b", func(a meta.Attributes) meta.Attributes { a.ListEnabled = false; return a })
	mustNot(t, err)
	visible, err := s.Repositories(e.ctx, "", -1)
	mustNot(t, err)
	if slices.Contains(visible, "a-b") || len(visible) != len(names)-1 {
		t.Errorf("catalog with a hidden repository = %v", visible)
	}
	withHidden, err := s.ListRepositories(e.ctx, "", -1, true)
	mustNot(t, err)
	if !slices.Equal(withHidden, want) {
		t.Errorf("ListRepositories(includeHidden) = %v", withHidden)
	}
}

func testReferrers(t *testing.T, e *env) {
	s := e.s
	subject := image(blob("cfg"), nil, "")
	e.push(t, s, "app", subject, "v1")
	sig := image(blob("sigcfg"), &subject, "application/vnd.dev.cosign.signature")
	sig.Annotations = map[string]string{"k": "v"}
	sbom := image(blob("sbomcfg"), &subject, "application/spdx+json")
	e.push(t, s, "app", sig)
	e.advance(time.Second)
	e.push(t, s, "app", sbom)
	// Elsewhere: a referrer of the same digest in another repository.
	e.push(t, s, "other", image(blob("x"), &subject, "application/spdx+json"))

	all, err := s.Referrers(e.ctx, "app", subject.Digest, "")
	mustNot(t, err)
	if len(all) != 2 {
		t.Fatalf("Referrers = %+v, want 2", all)
	}
	byDigest := map[digest.Digest]meta.Referrer{}
	for _, r := range all {
		byDigest[r.Digest] = r
	}
	if r := byDigest[sig.Digest]; r.ArtifactType != sig.ArtifactType || r.Size != sig.Size || r.MediaType != imageType || r.Annotations["k"] != "v" {
		t.Errorf("signature referrer = %+v", r)
	}
	only, err := s.Referrers(e.ctx, "app", subject.Digest, "application/spdx+json")
	mustNot(t, err)
	if len(only) != 1 || only[0].Digest != sbom.Digest {
		t.Errorf("Referrers(artifactType) = %+v, want only the SBOM", only)
	}
	none, err := s.Referrers(e.ctx, "app", blob("nothing"), "")
	mustNot(t, err)
	if none == nil || len(none) != 0 {
		t.Errorf("Referrers of an unreferenced digest = %#v, want empty", none)
	}
}

func setRepo(t *testing.T, e *env, repo string, fn func(*meta.Attributes)) {
	t.Helper()
	_, err := e.s.UpdateRepositoryAttributes(e.ctx, repo, func(a meta.Attributes) meta.Attributes { fn(&a); return a })
	mustNot(t, err)
}

func setManifest(t *testing.T, e *env, repo string, d digest.Digest, fn func(*meta.Attributes)) {
	t.Helper()
	_, err := e.s.UpdateManifestAttributes(e.ctx, repo, d, func(a meta.Attributes) meta.Attributes { fn(&a); return a })
	mustNot(t, err)
}

func wantLocked(t *testing.T, what string, err error) {
	t.Helper()
	var le *meta.LockedError
	if !errors.Is(err, meta.ErrLocked) || !errors.As(err, &le) {
		t.Errorf("%s = %v, want a *LockedError", what, err)
	}
}

func testRepositoryLocks(t *testing.T, e *env) {
	s := e.s
	m := image(blob("cfg"), nil, "", blob("l"))
	e.push(t, s, "app", m, "v1")
	setRepo(t, e, "app", func(a *meta.Attributes) { a.WriteEnabled = false })
	if r, _ := s.Repository(e.ctx, "app"); r.Attributes.WriteEnabled {
		t.Error("writeEnabled=false did not read back")
	}
	wantLocked(t, "LinkBlob", s.LinkBlob(e.ctx, "app", blob("new"), 1))
	wantLocked(t, "PutManifest", s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: image(blob("cfg"), nil, "", blob("l"), blob("l")), Requires: []digest.Digest{blob("cfg")}}))
	setRepo(t, e, "app", func(a *meta.Attributes) { a.WriteEnabled, a.DeleteEnabled = true, false })
	wantLocked(t, "DeleteTag", s.DeleteTag(e.ctx, "app", "v1"))
	wantLocked(t, "DeleteManifest", s.DeleteManifest(e.ctx, "app", m.Digest))
	wantLocked(t, "UnlinkBlob", s.UnlinkBlob(e.ctx, "app", blob("l")))
	wantLocked(t, "DeleteRepository", s.DeleteRepository(e.ctx, "app"))
	// Concurrent attribute changes of different attributes both stay.
	var wg sync.WaitGroup
	node := e.second()
	for i, st := range []*meta.Store{s, node} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.UpdateRepositoryAttributes(e.ctx, "app", func(a meta.Attributes) meta.Attributes {
				if i == 0 {
					a.ReadEnabled = false
				} else {
					a.ListEnabled = false
				}
				return a
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r, err := node.Repository(e.ctx, "app")
	mustNot(t, err)
	if want := (meta.Attributes{WriteEnabled: true}); r.Attributes != want {
		t.Errorf("after concurrent changes attributes = %+v, want %+v", r.Attributes, want)
	}
}

func testManifestLocks(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, "", blob("l1")), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "v1")
	setManifest(t, e, "app", m1.Digest, func(a *meta.Attributes) { a.WriteEnabled = false })
	// Moving v1 away from a locked manifest would overwrite it.
	must(t, s.LinkBlob(e.ctx, "app", blob("c2"), 1))
	wantLocked(t, "moving a tag off a locked manifest", s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: m2, Tags: []string{"v1"}}))
	if got, _ := s.Manifest(e.ctx, "app", "v1"); got.Digest != m1.Digest {
		t.Errorf("locked tag moved to %s", got.Digest)
	}
	// Re-tagging the locked manifest itself is allowed; a new tag elsewhere too.
	must(t, s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: m1, Tags: []string{"v1"}}))
	must(t, s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: m2, Tags: []string{"v2"}}))
	wantLocked(t, "DeleteTag of a locked manifest", s.DeleteTag(e.ctx, "app", "v1"))
	wantLocked(t, "DeleteManifest writeEnabled=false", s.DeleteManifest(e.ctx, "app", m1.Digest))
	wantLocked(t, "UnlinkBlob of a locked manifest's layer", s.UnlinkBlob(e.ctx, "app", blob("l1")))
	wantLocked(t, "DeleteRepository with a locked manifest", s.DeleteRepository(e.ctx, "app"))
	setManifest(t, e, "app", m1.Digest, func(a *meta.Attributes) { a.WriteEnabled, a.DeleteEnabled = true, false })
	wantLocked(t, "DeleteManifest deleteEnabled=false", s.DeleteManifest(e.ctx, "app", m1.Digest))
	got, err := s.Manifest(e.ctx, "app", m1.Digest.String())
	mustNot(t, err)
	if want := (meta.Attributes{ReadEnabled: true, WriteEnabled: true, ListEnabled: true}); got.Attributes != want {
		t.Errorf("manifest attributes = %+v, want %+v", got.Attributes, want)
	}
}

func testListEnabled(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "a", "b")
	e.push(t, s, "app", m2, "c")
	setManifest(t, e, "app", m1.Digest, func(a *meta.Attributes) { a.ListEnabled = false })
	tags, err := s.Tags(e.ctx, "app", "", -1)
	mustNot(t, err)
	if !slices.Equal(tags, []string{"c"}) {
		t.Errorf("Tags with a hidden manifest = %v, want [c]", tags)
	}
	if _, err := s.Manifest(e.ctx, "app", "a"); err != nil {
		t.Errorf("a hidden manifest's tag must still resolve: %v", err)
	}
}

func testDeleteCascades(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, "", blob("shared")), image(blob("c2"), nil, "", blob("shared"))
	e.push(t, s, "app", m1, "a", "b")
	e.push(t, s, "app", m2, "c")
	e.push(t, s, "keep", m1, "a")
	must(t, s.DeleteManifest(e.ctx, "app", m1.Digest))
	for _, tag := range []string{"a", "b"} {
		if _, err := s.Manifest(e.ctx, "app", tag); !errors.Is(err, meta.ErrManifestNotFound) {
			t.Errorf("tag %s survived its manifest: %v", tag, err)
		}
	}
	if tags, _ := s.Tags(e.ctx, "app", "", -1); !slices.Equal(tags, []string{"c"}) {
		t.Errorf("tags after delete = %v", tags)
	}
	must(t, s.DeleteTag(e.ctx, "app", "c"))
	if _, err := s.Manifest(e.ctx, "app", m2.Digest.String()); err != nil {
		t.Errorf("DeleteTag removed the manifest: %v", err)
	}
	must(t, s.DeleteRepository(e.ctx, "app"))
	if _, err := s.Repository(e.ctx, "app"); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("repository survived: %v", err)
	}
	if _, err := s.Blob(e.ctx, "app", blob("shared")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("blob link survived: %v", err)
	}
	if _, err := s.Manifest(e.ctx, "app", m2.Digest.String()); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("manifest survived: %v", err)
	}
	if repos, _ := s.RepositoriesWithBlob(e.ctx, blob("shared")); !slices.Equal(repos, []string{"keep"}) {
		t.Errorf("RepositoriesWithBlob = %v, want [keep]", repos)
	}
	if got, err := s.Manifest(e.ctx, "keep", "a"); err != nil || got.Digest != m1.Digest {
		t.Errorf("other repository changed: %v %v", got.Digest, err)
	}
	// A deleted repository comes back empty on the next push.
	e.push(t, s, "app", m2, "new")
	if tags, _ := s.Tags(e.ctx, "app", "", -1); !slices.Equal(tags, []string{"new"}) {
		t.Errorf("tags of the re-created repository = %v", tags)
	}
}

func testUnlinkBlob(t *testing.T, e *env) {
	s := e.s
	must(t, s.LinkBlob(e.ctx, "app", blob("l"), 3))
	must(t, s.UnlinkBlob(e.ctx, "app", blob("l")))
	if _, err := s.Blob(e.ctx, "app", blob("l")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("Blob after UnlinkBlob: %v", err)
	}
	if err := s.UnlinkBlob(e.ctx, "app", blob("l")); !errors.Is(err, meta.ErrBlobNotFound) {
		t.Errorf("second UnlinkBlob: %v, want ErrBlobNotFound", err)
	}
}

func testGCCandidates(t *testing.T, e *env) {
	s := e.s
	m := image(blob("cfg"), nil, "", blob("used"))
	e.push(t, s, "app", m, "v1")
	must(t, s.LinkBlob(e.ctx, "app", blob("old"), 7))
	must(t, s.LinkBlob(e.ctx, "app", blob("headed"), 1))
	must(t, s.LinkBlob(e.ctx, "other", blob("used"), 1)) // no manifest there
	e.advance(2 * time.Hour)
	must(t, s.LinkBlob(e.ctx, "app", blob("fresh"), 1))
	must(t, s.ReferenceBlob(e.ctx, "app", blob("headed")))
	cutoff := e.now().Add(-time.Hour)

	dry, err := s.UnlinkUnreferenced(e.ctx, cutoff, true)
	mustNot(t, err)
	want := []meta.BlobLink{{Repository: "app", Digest: blob("old"), Size: 7}, {Repository: "other", Digest: blob("used"), Size: 1}}
	sortLinks := func(l []meta.BlobLink) {
		slices.SortFunc(l, func(a, b meta.BlobLink) int {
			if a.Repository != b.Repository {
				return map[bool]int{true: -1, false: 1}[a.Repository < b.Repository]
			}
			return map[bool]int{true: -1, false: 1}[a.Digest < b.Digest]
		})
	}
	sortLinks(dry)
	sortLinks(want)
	if !slices.Equal(dry, want) {
		t.Fatalf("dry run = %v, want %v", dry, want)
	}
	if _, err := s.Blob(e.ctx, "app", blob("old")); err != nil {
		t.Fatalf("dry run removed a link: %v", err)
	}
	got, err := s.UnlinkUnreferenced(e.ctx, cutoff, false)
	mustNot(t, err)
	sortLinks(got)
	if !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	for _, d := range []digest.Digest{blob("cfg"), blob("used"), blob("headed"), blob("fresh")} {
		if _, err := s.Blob(e.ctx, "app", d); err != nil {
			t.Errorf("link %s removed: %v", d, err)
		}
	}
	if ok, _ := s.BlobReferenced(e.ctx, blob("old")); ok {
		t.Error("old blob still referenced")
	}
}

func testWalks(t *testing.T, e *env) {
	s := e.s
	e.push(t, s, "a", image(blob("c1"), nil, "", blob("l")), "v1", "v2")
	e.push(t, s, "b", image(blob("c2"), nil, ""), "v1")
	var links, manifests, tags int
	must(t, s.WalkBlobLinks(e.ctx, func(meta.BlobLink) error { links++; return nil }))
	must(t, s.WalkManifests(e.ctx, func(repo string, m meta.Manifest) error {
		if len(m.Content) == 0 || repo == "" {
			t.Errorf("WalkManifests gave %s %+v", repo, m)
		}
		manifests++
		return nil
	}))
	must(t, s.WalkTags(e.ctx, func(string, string, digest.Digest) error { tags++; return nil }))
	if links != 3 || manifests != 2 || tags != 3 {
		t.Errorf("walks saw %d links, %d manifests, %d tags; want 3, 2, 3", links, manifests, tags)
	}
	stop := errors.New("stop")
	if err := s.WalkTags(e.ctx, func(string, string, digest.Digest) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("WalkTags did not pass on fn's error: %v", err)
	}
}

func testUploads(t *testing.T, e *env) {
	s := e.s
	started := e.now()
	must(t, s.CreateUpload(e.ctx, meta.Upload{ID: "u1", Repository: "app", Owner: "alice", State: []byte{0, 1, 2}}, storage.UploadLimits{}))
	// Creating it again (a retried request) changes nothing.
	must(t, s.CreateUpload(e.ctx, meta.Upload{ID: "u1", Repository: "app", Owner: "alice", State: []byte{9}}, storage.UploadLimits{}))
	u, err := e.second().Upload(e.ctx, "u1")
	mustNot(t, err)
	if u.Repository != "app" || u.Owner != "alice" || string(u.State) != "\x00\x01\x02" || u.Size != 0 || !u.StartedAt.Equal(started) {
		t.Errorf("Upload = %+v", u)
	}
	must(t, s.CreateUpload(e.ctx, meta.Upload{ID: "u2", Repository: "app", Owner: "bob"}, storage.UploadLimits{}))
	must(t, s.CreateUpload(e.ctx, meta.Upload{ID: "u3", Repository: "other", Owner: "alice"}, storage.UploadLimits{}))
	e.advance(time.Minute)
	must(t, s.UpdateUpload(e.ctx, "u1", 0, 100, []byte("part1")))
	if err := s.UpdateUpload(e.ctx, "u1", 0, 50, []byte("stale")); !errors.Is(err, meta.ErrUploadConflict) {
		t.Errorf("UpdateUpload with a stale size = %v, want ErrUploadConflict", err)
	}
	if err := s.UpdateUpload(e.ctx, "none", 0, 50, nil); !errors.Is(err, meta.ErrUploadNotFound) {
		t.Errorf("UpdateUpload of an unknown session = %v, want ErrUploadNotFound", err)
	}
	u, err = s.Upload(e.ctx, "u1")
	mustNot(t, err)
	if u.Size != 100 || string(u.State) != "part1" || !u.UpdatedAt.Equal(e.now()) {
		t.Errorf("after update = %+v", u)
	}
	if o, r, err := s.CountUploads(e.ctx, "alice", "app"); err != nil || o != 2 || r != 2 {
		t.Errorf("CountUploads(alice, app) = %d, %d, %v; want 2, 2", o, r, err)
	}
	// u2 and u3 were last updated before u1.
	old, err := s.UploadsBefore(e.ctx, e.now())
	mustNot(t, err)
	if len(old) != 2 || old[0].ID != "u2" && old[0].ID != "u3" {
		t.Errorf("UploadsBefore = %+v, want u2 and u3", old)
	}
	must(t, s.UpdateUpload(e.ctx, "u2", 0, 10, nil)) // continued meanwhile
	if ok, err := s.PurgeUpload(e.ctx, "u2", e.now()); err != nil || ok {
		t.Errorf("PurgeUpload of a continued session = %v, %v; want false", ok, err)
	}
	if ok, err := s.PurgeUpload(e.ctx, "u3", e.now()); err != nil || !ok {
		t.Errorf("PurgeUpload = %v, %v; want true", ok, err)
	}
	must(t, s.DeleteUpload(e.ctx, "u1"))
	if _, err := s.Upload(e.ctx, "u1"); !errors.Is(err, meta.ErrUploadNotFound) {
		t.Errorf("Upload after delete = %v", err)
	}
	if err := s.DeleteUpload(e.ctx, "u1"); !errors.Is(err, meta.ErrUploadNotFound) {
		t.Errorf("second DeleteUpload = %v", err)
	}
}

func testUploadCaps(t *testing.T, e *env) {
	c := e.s.UploadCounter(storage.UploadLimits{PerIdentity: 2, PerRepository: 3})
	open := func(id, repo, owner string) error {
		return c.Open(e.ctx, storage.UploadInfo{ID: id, Repository: repo, Owner: owner, StartedAt: e.now()})
	}
	must(t, open("1", "app", "alice"))
	must(t, open("2", "app", "alice"))
	var tm *storage.TooManyUploadsError
	if err := open("3", "other", "alice"); !errors.As(err, &tm) || tm.Scope != "identity" || tm.Name != "alice" || tm.Limit != 2 {
		t.Errorf("third session of alice = %v", err)
	}
	must(t, open("2", "app", "alice")) // counted already
	must(t, open("4", "app", "bob"))
	if err := open("5", "app", "carol"); !errors.As(err, &tm) || tm.Scope != "repository" || tm.Name != "app" {
		t.Errorf("fourth session in app = %v", err)
	}
	c.Close(e.ctx, "1")
	c.Close(e.ctx, "1") // twice: nothing
	c.Close(e.ctx, "nonexistent")
	must(t, open("3", "other", "alice"))
	if _, err := e.s.Upload(e.ctx, "5"); !errors.Is(err, meta.ErrUploadNotFound) {
		t.Errorf("a refused session was recorded: %v", err)
	}
}

// testUploadCapsRacing opens sessions for one identity from many
// goroutines on two nodes at once: the cap holds exactly.
func testUploadCapsRacing(t *testing.T, e *env) {
	nodes := []*meta.Store{e.s, e.second()}
	const limit, tries = 3, 12
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := nodes[i%2].UploadCounter(storage.UploadLimits{PerIdentity: limit})
			err := c.Open(e.ctx, storage.UploadInfo{ID: fmt.Sprint("s", i), Repository: fmt.Sprint("r", i), Owner: "alice", StartedAt: e.now()})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, storage.ErrTooManyUploads):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != limit || refused.Load() != tries-limit {
		t.Errorf("%d sessions opened, %d refused; want %d, %d", ok.Load(), refused.Load(), limit, tries-limit)
	}
	if n, _, err := e.s.CountUploads(e.ctx, "alice", ""); err != nil || n != limit {
		t.Errorf("CountUploads = %d, %v; want %d", n, err, limit)
	}
}

// testUploadCASRacing appends to one session at one offset from two nodes:
// exactly one append wins.
func testUploadCASRacing(t *testing.T, e *env) {
	must(t, e.s.CreateUpload(e.ctx, meta.Upload{ID: "u", Repository: "app", Owner: "a"}, storage.UploadLimits{}))
	nodes := []*meta.Store{e.s, e.second()}
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := nodes[i%2].UpdateUpload(e.ctx, "u", 0, int64(10+i), []byte{byte(i)})
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, meta.ErrUploadConflict):
				lost.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 || lost.Load() != 7 {
		t.Fatalf("%d appends won, %d lost; want 1, 7", won.Load(), lost.Load())
	}
	u, err := e.s.Upload(e.ctx, "u")
	mustNot(t, err)
	if u.Size != int64(10+int(u.State[0])) {
		t.Errorf("size %d and state %v are from different appends", u.Size, u.State)
	}
}

func testLeasesRacing(t *testing.T, e *env) {
	nodes := []*meta.Store{e.s, e.second()}
	for round := range 5 {
		name := fmt.Sprint("gc-", round)
		var winners atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				holder := fmt.Sprint("node-", i)
				ok, err := nodes[i%2].Database().Leases(e.now).Acquire(e.ctx, name, holder, time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					winners.Add(1)
					winner.Store(holder)
				}
			}()
		}
		wg.Wait()
		if winners.Load() != 1 {
			t.Fatalf("round %d: %d holders won the lease, want 1", round, winners.Load())
		}
		l := e.s.Database().Leases(e.now)
		if h, err := l.Holder(e.ctx, name); err != nil || h != winner.Load() {
			t.Errorf("Holder = %q, %v; want %v", h, err, winner.Load())
		}
	}
}

func testLeaseExpiry(t *testing.T, e *env) {
	a := e.s.Database().Leases(e.now)
	b := e.second().Database().Leases(e.now)
	if ok, err := a.Acquire(e.ctx, "purge", "A", time.Minute); err != nil || !ok {
		t.Fatalf("A: %v %v", ok, err)
	}
	if ok, err := b.Acquire(e.ctx, "purge", "B", time.Minute); err != nil || ok {
		t.Fatalf("B took a held lease: %v %v", ok, err)
	}
	if err := b.Renew(e.ctx, "purge", "B", time.Minute); !errors.Is(err, sqldb.ErrLeaseLost) {
		t.Errorf("B renewed a lease it does not hold: %v", err)
	}
	e.advance(50 * time.Second)
	must(t, a.Renew(e.ctx, "purge", "A", time.Minute))
	e.advance(50 * time.Second) // within the renewed minute
	if ok, _ := b.Acquire(e.ctx, "purge", "B", time.Minute); ok {
		t.Fatal("B took a renewed lease")
	}
	e.advance(11 * time.Second) // A's lease has expired
	if ok, err := b.Acquire(e.ctx, "purge", "B", time.Minute); err != nil || !ok {
		t.Fatalf("B could not take an expired lease: %v %v", ok, err)
	}
	if err := a.Renew(e.ctx, "purge", "A", time.Minute); !errors.Is(err, sqldb.ErrLeaseLost) {
		t.Errorf("A renewed a lease taken over: %v", err)
	}
	must(t, a.Release(e.ctx, "purge", "A")) // not A's: nothing
	if h, _ := a.Holder(e.ctx, "purge"); h != "B" {
		t.Errorf("holder after A's release = %q, want B", h)
	}
	must(t, b.Release(e.ctx, "purge", "B"))
	if ok, err := a.Acquire(e.ctx, "purge", "A", time.Minute); err != nil || !ok {
		t.Errorf("A could not take a released lease: %v %v", ok, err)
	}
}

type change struct{ kind, repo, tag, digest string }

func changesOf(t *testing.T, s *meta.Store, after int64) ([]change, int64) {
	t.Helper()
	cs, err := s.Changes(context.Background(), after, 1000)
	mustNot(t, err)
	var out []change
	last := after
	for _, c := range cs {
		if c.Seq <= last {
			t.Fatalf("sequence not increasing: %d after %d", c.Seq, last)
		}
		last = c.Seq
		out = append(out, change{c.Kind, c.Repository, c.Tag, c.Digest})
	}
	return out, last
}

func testChangeLog(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "v1")
	e.push(t, s, "app", m2, "v1", "v2")
	setManifest(t, e, "app", m2.Digest, func(a *meta.Attributes) { a.ListEnabled = false })
	setRepo(t, e, "app", func(a *meta.Attributes) { a.ReadEnabled = false })
	must(t, s.DeleteTag(e.ctx, "app", "v2"))
	must(t, s.DeleteManifest(e.ctx, "app", m1.Digest))
	must(t, s.LinkBlob(e.ctx, "app", blob("x"), 1))
	must(t, s.UnlinkBlob(e.ctx, "app", blob("x")))
	must(t, s.DeleteRepository(e.ctx, "app"))
	got, last := changesOf(t, s, 0)
	d1, d2 := m1.Digest.String(), m2.Digest.String()
	want := []change{
		{meta.ChangePush, "app", "", d1}, {meta.ChangeTag, "app", "v1", d1},
		{meta.ChangePush, "app", "", d2}, {meta.ChangeTag, "app", "v1", d2}, {meta.ChangeTag, "app", "v2", d2},
		{meta.ChangeManifestAttributes, "app", "", d2},
		{meta.ChangeRepositoryAttributes, "app", "", ""},
		{meta.ChangeTagDelete, "app", "v2", ""},
		{meta.ChangeManifestDelete, "app", "", d1},
		{meta.ChangeBlobDelete, "app", "", blob("x").String()},
		{meta.ChangeRepositoryDelete, "app", "", ""},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("change log:\n got %v\nwant %v", got, want)
	}
	// Paging: after a sequence number, n at a time, from another node.
	all, err := e.second().Changes(e.ctx, 0, 1000)
	mustNot(t, err)
	page, err := s.Changes(e.ctx, all[2].Seq, 3)
	mustNot(t, err)
	if len(page) != 3 || page[0].Seq != all[3].Seq || page[2].Seq != all[5].Seq {
		t.Errorf("Changes(after %d, 3) = %+v", all[2].Seq, page)
	}
	if !all[0].Time.Equal(e.now()) {
		t.Errorf("change time %v, want %v", all[0].Time, e.now())
	}
	if rest, _ := changesOf(t, s, last); len(rest) != 0 {
		t.Errorf("changes after the last: %v", rest)
	}
}

// testChangeLogFailedWrites: a write that fails logs nothing.
func testChangeLogFailedWrites(t *testing.T, e *env) {
	s := e.s
	m := image(blob("c1"), nil, "", blob("l"))
	e.push(t, s, "app", m, "v1")
	_, last := changesOf(t, s, 0)
	unknown := image(blob("c1"), nil, "", blob("missing"))
	if err := s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: unknown, Tags: []string{"v2"}, Requires: []digest.Digest{blob("missing")}}); err == nil {
		t.Fatal("push with an unknown blob succeeded")
	}
	setManifest(t, e, "app", m.Digest, func(a *meta.Attributes) { a.DeleteEnabled = false })
	_, last = changesOf(t, s, last)
	if err := s.DeleteManifest(e.ctx, "app", m.Digest); err == nil {
		t.Fatal("delete of a locked manifest succeeded")
	}
	if err := s.DeleteTag(e.ctx, "app", "nope"); err == nil {
		t.Fatal("delete of an unknown tag succeeded")
	}
	if got, _ := changesOf(t, s, last); len(got) != 0 {
		t.Errorf("failed writes logged %v", got)
	}
}

// testConcurrentTagPushes pushes different manifests to one tag from many
// goroutines on two nodes: every push succeeds, and the tag ends where the
// change log says it was moved last, which holds only if log order is
// commit order.
func testConcurrentTagPushes(t *testing.T, e *env) {
	nodes := []*meta.Store{e.s, e.second()}
	const pushes = 16
	var wg sync.WaitGroup
	for i := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := nodes[i%2]
			m := image(blob(fmt.Sprint("cfg", i)), nil, "", blob("shared"))
			req := meta.PutManifestRequest{Repository: "app", Manifest: m, Tags: []string{"latest"}, Requires: []digest.Digest{blob(fmt.Sprint("cfg", i)), blob("shared")}}
			for _, d := range req.Requires {
				if err := s.LinkBlob(e.ctx, "app", d, 1); err != nil {
					t.Error(err)
					return
				}
			}
			if err := s.PutManifest(e.ctx, req); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	changes, _ := changesOf(t, e.s, 0)
	var lastTag string
	pushed := 0
	for _, c := range changes {
		switch c.kind {
		case meta.ChangeTag:
			lastTag = c.digest
		case meta.ChangePush:
			pushed++
		}
	}
	if pushed != pushes {
		t.Errorf("change log has %d pushes, want %d", pushed, pushes)
	}
	for _, s := range nodes {
		m, err := s.Manifest(e.ctx, "app", "latest")
		mustNot(t, err)
		if m.Digest.String() != lastTag {
			t.Errorf("latest is %s, but the change log moved it last to %s", m.Digest, lastTag)
		}
	}
	un, err := e.s.UntaggedManifests(e.ctx, "app", -1)
	mustNot(t, err)
	if len(un) != pushes-1 {
		t.Errorf("%d untagged manifests, want %d", len(un), pushes-1)
	}
}

func testConcurrentRepositoryCreation(t *testing.T, e *env) {
	nodes := []*meta.Store{e.s, e.second()}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := nodes[i%2].LinkBlob(e.ctx, fmt.Sprint("repo", i%2), blob(fmt.Sprint(i)), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	repos, err := e.s.Repositories(e.ctx, "", -1)
	mustNot(t, err)
	if !slices.Equal(repos, []string{"repo0", "repo1"}) {
		t.Errorf("repositories = %v", repos)
	}
}

// testOtherNodeSeesWrites: what one node changes, the other reads at once,
// even what it read (and might have cached) before.
func testOtherNodeSeesWrites(t *testing.T, e *env) {
	a, b := e.s, e.second()
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, a, "app", m1, "latest")
	for range 2 {
		if got, err := b.Manifest(e.ctx, "app", "latest"); err != nil || got.Digest != m1.Digest {
			t.Fatalf("node 2 reads latest = %v, %v", got.Digest, err)
		}
		if _, err := b.Repository(e.ctx, "app"); err != nil {
			t.Fatal(err)
		}
	}
	e.push(t, a, "app", m2, "latest")
	setRepo(t, e, "app", func(at *meta.Attributes) { at.WriteEnabled = false })
	if got, err := b.Manifest(e.ctx, "app", "latest"); err != nil || got.Digest != m2.Digest {
		t.Errorf("node 2 reads latest = %v, %v after node 1 moved it to %s", got.Digest, err, m2.Digest)
	}
	if r, err := b.Repository(e.ctx, "app"); err != nil || r.Attributes.WriteEnabled {
		t.Errorf("node 2 reads writeEnabled=%v, %v after node 1 locked the repository", r.Attributes.WriteEnabled, err)
	}
	must(t, a.DeleteManifest(e.ctx, "app", m1.Digest))
	if _, err := b.Manifest(e.ctx, "app", m1.Digest.String()); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("node 2 reads a manifest node 1 deleted: %v", err)
	}
}

// testCaseSensitive: tags differ by case (the distribution spec allows
// upper case in tags), and listings sort bytewise on every engine, whatever
// the database's locale.
func testCaseSensitive(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "Latest")
	e.push(t, s, "app", m2, "latest")
	if got, _ := s.Manifest(e.ctx, "app", "Latest"); got.Digest != m1.Digest {
		t.Errorf("Latest = %s, want %s", got.Digest, m1.Digest)
	}
	if got, _ := s.Manifest(e.ctx, "app", "latest"); got.Digest != m2.Digest {
		t.Errorf("latest = %s, want %s", got.Digest, m2.Digest)
	}
	if _, err := s.Manifest(e.ctx, "app", "LATEST"); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("LATEST: %v, want ErrManifestNotFound", err)
	}
	if tags, _ := s.Tags(e.ctx, "app", "", -1); !slices.Equal(tags, []string{"Latest", "latest"}) {
		t.Errorf("tags = %v", tags)
	}
	if tags, _ := s.Tags(e.ctx, "app", "Latest", -1); !slices.Equal(tags, []string{"latest"}) {
		t.Errorf("tags after Latest = %v", tags)
	}
}

func testTagManifests(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, "", blob("l1")), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "a", "c")
	e.push(t, s, "app", m2, "b", "d")
	setManifest(t, e, "app", m2.Digest, func(a *meta.Attributes) { a.ListEnabled = false })
	e.push(t, s, "app", m1, "e")
	got, err := s.TagManifests(e.ctx, "app", "a", 2)
	mustNot(t, err)
	if len(got) != 2 || got[0].Tag != "c" || got[1].Tag != "e" {
		t.Fatalf("TagManifests(last=a, n=2) = %+v, want c and e", got)
	}
	for _, tm := range got {
		// Summary.Size counts the manifest and its config and layer (1 each).
		if tm.Digest != m1.Digest || tm.Content != nil || tm.Summary.Size != m1.Size+2 || tm.MediaType != imageType {
			t.Errorf("TagManifests entry %+v", tm)
		}
	}
	all, err := s.TagManifests(e.ctx, "app", "", -1)
	mustNot(t, err)
	if len(all) != 3 {
		t.Errorf("TagManifests(n=-1) = %d entries, want 3 (b and d hidden)", len(all))
	}
	if _, err := s.TagManifests(e.ctx, "none", "", -1); !errors.Is(err, meta.ErrRepositoryNotFound) {
		t.Errorf("TagManifests of an unknown repository: %v", err)
	}
}

// testUploadClaims: a claim on a session excludes other requests on any
// node until it is released or expires; a request whose claim expired and
// was taken over can neither save nor delete.
func testUploadClaims(t *testing.T, e *env) {
	must(t, e.s.CreateUpload(e.ctx, meta.Upload{ID: "u", Repository: "app", Owner: "a"}, storage.UploadLimits{}))
	a, b := e.s, e.second()
	const ttl = 30 * time.Second
	if _, err := a.ClaimUpload(e.ctx, "u", "A", ttl); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ClaimUpload(e.ctx, "u", "B", ttl); !errors.Is(err, meta.ErrUploadBusy) {
		t.Fatalf("claim of a claimed session = %v, want ErrUploadBusy", err)
	}
	if err := b.SaveClaimedUpload(e.ctx, "u", "B", 0, 10, []byte("b")); !errors.Is(err, meta.ErrUploadClaimLost) {
		t.Fatalf("save without the claim = %v, want ErrUploadClaimLost", err)
	}
	e.advance(ttl / 2)
	must(t, a.RenewUploadClaim(e.ctx, "u", "A", ttl))
	e.advance(ttl * 3 / 4) // past the first expiry, within the renewed one
	if _, err := b.ClaimUpload(e.ctx, "u", "B", ttl); !errors.Is(err, meta.ErrUploadBusy) {
		t.Fatalf("claim of a renewed session = %v, want ErrUploadBusy", err)
	}
	must(t, a.SaveClaimedUpload(e.ctx, "u", "A", 0, 10, []byte("a")))
	u, err := b.ClaimUpload(e.ctx, "u", "B", ttl) // released by the save
	if err != nil || u.Size != 10 || string(u.State) != "a" {
		t.Fatalf("claim after save = %+v, %v", u, err)
	}
	// B's node dies; its claim expires and A takes the session over.
	e.advance(ttl + time.Second)
	if _, err := a.ClaimUpload(e.ctx, "u", "A", ttl); err != nil {
		t.Fatalf("claim of an expired claim = %v", err)
	}
	for name, err := range map[string]error{
		"save":   b.SaveClaimedUpload(e.ctx, "u", "B", 10, 20, []byte("late")),
		"renew":  b.RenewUploadClaim(e.ctx, "u", "B", ttl),
		"delete": b.DeleteClaimedUpload(e.ctx, "u", "B"),
	} {
		if !errors.Is(err, meta.ErrUploadClaimLost) {
			t.Errorf("%s by a lost claim = %v, want ErrUploadClaimLost", name, err)
		}
	}
	must(t, b.ReleaseUploadClaim(e.ctx, "u", "B")) // a lost claim releases nothing
	if err := a.SaveClaimedUpload(e.ctx, "u", "A", 0, 5, nil); !errors.Is(err, meta.ErrUploadClaimLost) {
		t.Errorf("save over a stale size = %v, want ErrUploadClaimLost", err)
	}
	must(t, a.DeleteClaimedUpload(e.ctx, "u", "A"))
	if _, err := b.ClaimUpload(e.ctx, "u", "B", ttl); !errors.Is(err, meta.ErrUploadNotFound) {
		t.Errorf("claim of a deleted session = %v, want ErrUploadNotFound", err)
	}
}

// testUploadClaimsRacing claims one session from many goroutines on two
// nodes at once: exactly one holds it.
func testUploadClaimsRacing(t *testing.T, e *env) {
	must(t, e.s.CreateUpload(e.ctx, meta.Upload{ID: "u", Repository: "app", Owner: "a"}, storage.UploadLimits{}))
	nodes := []*meta.Store{e.s, e.second()}
	var won, busy atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := nodes[i%2].ClaimUpload(e.ctx, "u", fmt.Sprint("t", i), time.Minute)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, meta.ErrUploadBusy):
				busy.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 || busy.Load() != 9 {
		t.Errorf("%d claims won, %d busy; want 1, 9", won.Load(), busy.Load())
	}
}

// testChangeLogAtomic makes appending to the change log fail: every write
// that logs must then fail whole, changing nothing, since the change and
// its log entry are one transaction.
func testChangeLogAtomic(t *testing.T, e *env) {
	s := e.s
	m1, m2 := image(blob("c1"), nil, ""), image(blob("c2"), nil, "")
	e.push(t, s, "app", m1, "v1")
	must(t, s.LinkBlob(e.ctx, "app", blob("c2"), 1))
	db := s.Database()
	refuse := []string{`CREATE TRIGGER refuse_changes BEFORE INSERT ON changes BEGIN SELECT RAISE(ABORT, 'change log refused'); END`}
	if db.Engine() == sqldb.Postgres {
		refuse = []string{
			`CREATE FUNCTION refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'change log refused'; END $$`,
			`CREATE TRIGGER refuse_changes BEFORE INSERT ON changes FOR EACH ROW EXECUTE FUNCTION refuse_changes()`,
		}
	}
	for _, q := range refuse {
		if _, err := db.W().SQL().ExecContext(e.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for name, err := range map[string]error{
		"push":       s.PutManifest(e.ctx, meta.PutManifestRequest{Repository: "app", Manifest: m2, Tags: []string{"v1", "v2"}}),
		"tag delete": s.DeleteTag(e.ctx, "app", "v1"),
		"attribute change": func() error {
			_, err := s.UpdateRepositoryAttributes(e.ctx, "app", func(a meta.Attributes) meta.Attributes { a.ListEnabled = false; return a })
			return err
		}(),
		"manifest delete":   s.DeleteManifest(e.ctx, "app", m1.Digest),
		"repository delete": s.DeleteRepository(e.ctx, "app"),
	} {
		if err == nil {
			t.Errorf("%s succeeded though its change could not be logged", name)
		}
	}
	if _, err := s.Manifest(e.ctx, "app", m2.Digest.String()); !errors.Is(err, meta.ErrManifestNotFound) {
		t.Errorf("the refused push stored its manifest: %v", err)
	}
	if got, err := s.Manifest(e.ctx, "app", "v1"); err != nil || got.Digest != m1.Digest {
		t.Errorf("v1 = %v, %v after refused writes; want %s", got.Digest, err, m1.Digest)
	}
	if r, err := s.Repository(e.ctx, "app"); err != nil || !r.Attributes.ListEnabled {
		t.Errorf("repository after refused writes: %+v, %v", r, err)
	}
}

// testContentRefs: garbage collection marks content for deletion only if
// nothing links it and no push referred to it since the cutoff; a push
// meets the mark until the collection is done, or takes the content back
// from a collection that died.
func testContentRefs(t *testing.T, e *env) {
	a, b := e.s, e.second()
	used, linked, stray, abandoned := blob("used"), blob("linked"), blob("stray"), blob("abandoned")
	for _, d := range []digest.Digest{used, abandoned} {
		must(t, a.ReferenceContent(e.ctx, d))
	}
	must(t, a.LinkBlob(e.ctx, "app", linked, 1))
	if _, ok, err := b.MarkContentDeleting(e.ctx, used, e.now().Add(-time.Hour)); err != nil || ok {
		t.Fatalf("mark of content referenced since the cutoff = %v, %v", ok, err)
	}
	e.advance(2 * time.Hour)
	cutoff := e.now().Add(-time.Hour)
	mark, ok, err := b.MarkContentDeleting(e.ctx, used, cutoff)
	if err != nil || !ok {
		t.Fatalf("mark of unreferenced content = %v, %v", ok, err)
	}
	if err := a.ReferenceContent(e.ctx, used); !errors.Is(err, meta.ErrContentDeleting) {
		t.Fatalf("reference during deletion = %v, want ErrContentDeleting", err)
	}
	if _, ok, _ := a.MarkContentDeleting(e.ctx, used, cutoff); ok {
		t.Fatal("content marked twice")
	}
	must(t, b.ForgetContent(e.ctx, used, mark))
	must(t, a.ReferenceContent(e.ctx, used)) // pushed again
	for name, d := range map[string]digest.Digest{"linked content": linked} {
		if _, ok, err := b.MarkContentDeleting(e.ctx, d, cutoff); err != nil || ok {
			t.Errorf("mark of %s = %v, %v", name, ok, err)
		}
	}
	if _, ok, err := b.MarkContentDeleting(e.ctx, stray, cutoff); err != nil || !ok {
		t.Errorf("mark of content never referenced = %v, %v", ok, err)
	}
	if err := a.ReferenceContent(e.ctx, stray); !errors.Is(err, meta.ErrContentDeleting) {
		t.Errorf("reference of marked stray content = %v", err)
	}
	// A collection that died leaves its mark; after twice the window a
	// push takes the content back, and the late collection's forget
	// changes nothing.
	mark, ok, err = b.MarkContentDeleting(e.ctx, abandoned, cutoff)
	if err != nil || !ok {
		t.Fatalf("mark = %v, %v", ok, err)
	}
	e.advance(2*meta.ContentDeleteWindow + time.Second)
	must(t, a.ReferenceContent(e.ctx, abandoned))
	must(t, b.ForgetContent(e.ctx, abandoned, mark))
	if _, ok, _ := b.MarkContentDeleting(e.ctx, abandoned, e.now().Add(-time.Hour)); ok {
		t.Error("content taken back was marked again within the grace period")
	}
}

// testUploadCreateRacing creates one session (a retried request) from many
// goroutines on two nodes at once: every attempt succeeds and one session
// exists.
func testUploadCreateRacing(t *testing.T, e *env) {
	nodes := []*meta.Store{e.s, e.second()}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Different owners and repositories take different locks, so
			// only the table's key keeps the session one.
			u := meta.Upload{ID: "same", Repository: fmt.Sprint("r", i), Owner: fmt.Sprint("o", i)}
			if err := nodes[i%2].CreateUpload(e.ctx, u, storage.UploadLimits{PerIdentity: 1}); err != nil {
				t.Errorf("create %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	all, err := e.s.UploadsBefore(e.ctx, e.now().Add(time.Hour))
	if err != nil || len(all) != 1 {
		t.Errorf("sessions = %v, %v; want one", all, err)
	}
}
