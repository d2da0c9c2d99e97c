package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// image is a manifest with its config and one layer, linked into repo.
type image struct {
	config, layer digest.Digest
	manifest      Manifest
}

func newImage(t *testing.T, s *Store, repo, name string) image {
	t.Helper()
	ctx := context.Background()
	im := image{config: digest.FromString(name + " config"), layer: digest.FromString(name + " layer")}
	for _, d := range []digest.Digest{im.config, im.layer} {
		if err := s.LinkBlob(ctx, repo, d, 10); err != nil {
			t.Fatal(err)
		}
	}
	content := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q},"layers":[{"digest":%q}]}`, ociManifest, im.config, im.layer)
	im.manifest = Manifest{Digest: digest.FromBytes(content), MediaType: ociManifest, Size: int64(len(content)), Content: content}
	return im
}

func (im image) put(t *testing.T, s *Store, repo string, tags ...string) {
	t.Helper()
	err := s.PutManifest(context.Background(), PutManifestRequest{Repository: repo, Manifest: im.manifest, Tags: tags,
		Requires: []digest.Digest{im.config, im.layer}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBlobLinksArePerRepository(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	d := digest.FromString("blob")
	if err := s.LinkBlob(ctx, "team/app", d, 42); err != nil {
		t.Fatal(err)
	}
	if size, err := s.Blob(ctx, "team/app", d); err != nil || size != 42 {
		t.Fatalf("Blob: %d, %v; want 42", size, err)
	}
	if _, err := s.Repository(ctx, "team/app"); err != nil {
		t.Fatalf("linking a blob did not create the repository: %v", err)
	}
	if _, err := s.Blob(ctx, "team/other", d); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Blob through another repository: %v, want ErrBlobNotFound", err)
	}
	if err := s.LinkBlob(ctx, "team/other", d, 42); err != nil {
		t.Fatal(err)
	}
	if repos, err := s.RepositoriesWithBlob(ctx, d); err != nil || !slices.Equal(repos, []string{"team/app", "team/other"}) {
		t.Fatalf("RepositoriesWithBlob: %v, %v", repos, err)
	}
	// Linking again is not an error, and keeps one link.
	if err := s.LinkBlob(ctx, "team/app", d, 42); err != nil {
		t.Fatal(err)
	}
	if err := s.ReferenceBlob(ctx, "team/app", d); err != nil {
		t.Fatalf("ReferenceBlob of a linked blob: %v", err)
	}
	if err := s.ReferenceBlob(ctx, "team/app", digest.FromString("absent")); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("ReferenceBlob of an absent blob: %v, want ErrBlobNotFound", err)
	}
	if err := s.UnlinkBlob(ctx, "team/app", d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Blob(ctx, "team/app", d); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Blob after unlinking: %v, want ErrBlobNotFound", err)
	}
	if _, err := s.Blob(ctx, "team/other", d); err != nil {
		t.Fatalf("unlinking from one repository removed the other's link: %v", err)
	}
	for _, repo := range []string{"team/app", "nowhere"} {
		if err := s.UnlinkBlob(ctx, repo, d); !errors.Is(err, ErrBlobNotFound) {
			t.Errorf("UnlinkBlob of an absent link in %s: %v, want ErrBlobNotFound", repo, err)
		}
	}
}

func TestPutManifestRequiresBlobs(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	im := newImage(t, s, "app", "one")
	missing := digest.FromString("missing")
	err := s.PutManifest(ctx, PutManifestRequest{Repository: "app", Manifest: im.manifest, Tags: []string{"v1"},
		Requires: []digest.Digest{im.config, missing}})
	var unknown *BlobUnknownError
	if !errors.As(err, &unknown) || unknown.Digest != missing {
		t.Fatalf("PutManifest with a missing blob: %v, want BlobUnknownError for %s", err, missing)
	}
	// Nothing of the refused manifest is stored.
	if _, err := s.Manifest(ctx, "app", "v1"); !errors.Is(err, ErrManifestNotFound) {
		t.Fatalf("tag of a refused manifest: %v, want ErrManifestNotFound", err)
	}
	// A blob of another repository does not count.
	other := newImage(t, s, "other", "two")
	err = s.PutManifest(ctx, PutManifestRequest{Repository: "app", Manifest: other.manifest, Requires: []digest.Digest{other.layer}})
	if !errors.As(err, &unknown) {
		t.Fatalf("PutManifest with another repository's blob: %v, want BlobUnknownError", err)
	}
}

func TestManifestsAndTags(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	one, two := newImage(t, s, "app", "one"), newImage(t, s, "app", "two")
	one.put(t, s, "app", "v1", "latest")

	for _, ref := range []string{"v1", "latest", one.manifest.Digest.String()} {
		m, err := s.Manifest(ctx, "app", ref)
		if err != nil || m.Digest != one.manifest.Digest || string(m.Content) != string(one.manifest.Content) {
			t.Fatalf("Manifest(%s): %s, %v", ref, m.Digest, err)
		}
	}
	if _, err := s.Manifest(ctx, "other", "v1"); !errors.Is(err, ErrManifestNotFound) {
		t.Fatalf("Manifest in another repository: %v, want ErrManifestNotFound", err)
	}
	// Moving a tag is seen at once, though the old answer was cached.
	two.put(t, s, "app", "latest")
	if m, err := s.Manifest(ctx, "app", "latest"); err != nil || m.Digest != two.manifest.Digest {
		t.Fatalf("latest after moving it: %s, %v; want %s", m.Digest, err, two.manifest.Digest)
	}
	if tags, err := s.Tags(ctx, "app", "", -1); err != nil || !slices.Equal(tags, []string{"latest", "v1"}) {
		t.Fatalf("Tags: %v, %v", tags, err)
	}

	// Deleting a tag keeps its manifest; deleting a manifest takes its tags.
	if err := s.DeleteTag(ctx, "app", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTag(ctx, "app", "v1"); !errors.Is(err, ErrTagNotFound) {
		t.Fatalf("deleting a deleted tag: %v, want ErrTagNotFound", err)
	}
	if _, err := s.Manifest(ctx, "app", one.manifest.Digest.String()); err != nil {
		t.Fatalf("the manifest of a deleted tag: %v", err)
	}
	untagged, err := s.UntaggedManifests(ctx, "app", 10)
	if err != nil || len(untagged) != 1 || untagged[0].Digest != one.manifest.Digest {
		t.Fatalf("UntaggedManifests: %v, %v", untagged, err)
	}
	if err := s.DeleteManifest(ctx, "app", two.manifest.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Manifest(ctx, "app", "latest"); !errors.Is(err, ErrManifestNotFound) {
		t.Fatalf("tag of a deleted manifest: %v, want ErrManifestNotFound", err)
	}
	if err := s.DeleteManifest(ctx, "app", two.manifest.Digest); !errors.Is(err, ErrManifestNotFound) {
		t.Fatalf("deleting a deleted manifest: %v, want ErrManifestNotFound", err)
	}
	if tags, err := s.Tags(ctx, "app", "", -1); err != nil || tags == nil || len(tags) != 0 {
		t.Fatalf("Tags of a repository without tags: %#v, %v; want an empty list", tags, err)
	}
	if _, err := s.Tags(ctx, "nowhere", "", -1); !errors.Is(err, ErrRepositoryNotFound) {
		t.Fatalf("Tags of an unknown repository: %v, want ErrRepositoryNotFound", err)
	}
}

func TestListingPages(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	im := newImage(t, s, "app", "one")
	im.put(t, s, "app", "c", "a", "b", "d")
	for _, repo := range []string{"z", "m", "b"} {
		if err := s.LinkBlob(ctx, repo, im.layer, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		last string
		n    int
		tags []string
		reps []string
	}{
		{"", -1, []string{"a", "b", "c", "d"}, []string{"app", "b", "m", "z"}},
		{"", 2, []string{"a", "b"}, []string{"app", "b"}},
		{"b", 2, []string{"c", "d"}, []string{"m", "z"}},
		{"d", 2, []string{}, []string{"m", "z"}},
		{"zz", -1, []string{}, nil},
		{"", 0, []string{}, nil},
	} {
		tags, err := s.Tags(ctx, "app", tc.last, tc.n)
		if err != nil || !slices.Equal(tags, tc.tags) {
			t.Errorf("Tags(last %q, n %d): %v, %v; want %v", tc.last, tc.n, tags, err, tc.tags)
		}
		repos, err := s.Repositories(ctx, tc.last, tc.n)
		if err != nil || !slices.Equal(repos, tc.reps) {
			t.Errorf("Repositories(last %q, n %d): %v, %v; want %v", tc.last, tc.n, repos, err, tc.reps)
		}
	}
}

func TestListEnabledHides(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	one, two := newImage(t, s, "app", "one"), newImage(t, s, "app", "two")
	one.put(t, s, "app", "v1")
	two.put(t, s, "app", "v2")
	if err := s.LinkBlob(ctx, "secret", one.layer, 1); err != nil {
		t.Fatal(err)
	}
	hide := func(a Attributes) Attributes { a.ListEnabled = false; return a }
	if _, err := s.UpdateRepositoryAttributes(ctx, "secret", hide); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateManifestAttributes(ctx, "app", two.manifest.Digest, hide); err != nil {
		t.Fatal(err)
	}
	if repos, _ := s.Repositories(ctx, "", -1); !slices.Equal(repos, []string{"app"}) {
		t.Errorf("Repositories: %v, want the hidden one left out", repos)
	}
	if repos, _ := s.ListRepositories(ctx, "", -1, true); !slices.Equal(repos, []string{"app", "secret"}) {
		t.Errorf("ListRepositories with hidden ones: %v", repos)
	}
	if tags, _ := s.Tags(ctx, "app", "", -1); !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("Tags: %v, want the hidden manifest's tag left out", tags)
	}
	// Hidden from lists, not from reads.
	if _, err := s.Manifest(ctx, "app", "v2"); err != nil {
		t.Errorf("Manifest of a hidden manifest: %v", err)
	}
	if _, err := s.UpdateRepositoryAttributes(ctx, "nowhere", hide); !errors.Is(err, ErrRepositoryNotFound) {
		t.Errorf("attributes of an unknown repository: %v, want ErrRepositoryNotFound", err)
	}
	if _, err := s.UpdateManifestAttributes(ctx, "app", digest.FromString("absent"), hide); !errors.Is(err, ErrManifestNotFound) {
		t.Errorf("attributes of an unknown manifest: %v, want ErrManifestNotFound", err)
	}
}

// TestLocks checks that each attribute refuses the changes it forbids, with
// an error that says which.
func TestLocks(t *testing.T) {
	ctx := context.Background()
	set := func(write, del bool) func(Attributes) Attributes {
		return func(a Attributes) Attributes { a.WriteEnabled, a.DeleteEnabled = write, del; return a }
	}
	for _, tc := range []struct {
		name   string
		lock   func(s *Store, im image) error
		change func(s *Store, im, other image) error
		attr   string
	}{
		{"repository writeEnabled refuses a link",
			func(s *Store, im image) error {
				_, err := s.UpdateRepositoryAttributes(ctx, "app", set(false, true))
				return err
			},
			func(s *Store, im, other image) error { return s.LinkBlob(ctx, "app", digest.FromString("new"), 1) },
			"writeEnabled"},
		{"repository writeEnabled refuses a manifest",
			func(s *Store, im image) error {
				_, err := s.UpdateRepositoryAttributes(ctx, "app", set(false, true))
				return err
			},
			func(s *Store, im, other image) error {
				return s.PutManifest(ctx, PutManifestRequest{Repository: "app", Manifest: other.manifest, Tags: []string{"v2"}})
			},
			"writeEnabled"},
		{"repository deleteEnabled refuses deleting a tag",
			func(s *Store, im image) error {
				_, err := s.UpdateRepositoryAttributes(ctx, "app", set(true, false))
				return err
			},
			func(s *Store, im, other image) error { return s.DeleteTag(ctx, "app", "v1") },
			"deleteEnabled"},
		{"repository deleteEnabled refuses deleting the repository",
			func(s *Store, im image) error {
				_, err := s.UpdateRepositoryAttributes(ctx, "app", set(true, false))
				return err
			},
			func(s *Store, im, other image) error { return s.DeleteRepository(ctx, "app") },
			"deleteEnabled"},
		{"manifest writeEnabled refuses moving its tag",
			func(s *Store, im image) error {
				_, err := s.UpdateManifestAttributes(ctx, "app", im.manifest.Digest, set(false, true))
				return err
			},
			func(s *Store, im, other image) error {
				return s.PutManifest(ctx, PutManifestRequest{Repository: "app", Manifest: other.manifest, Tags: []string{"v1"}})
			},
			"writeEnabled"},
		{"manifest writeEnabled refuses deleting its tag",
			func(s *Store, im image) error {
				_, err := s.UpdateManifestAttributes(ctx, "app", im.manifest.Digest, set(false, true))
				return err
			},
			func(s *Store, im, other image) error { return s.DeleteTag(ctx, "app", "v1") },
			"writeEnabled"},
		{"manifest deleteEnabled refuses deleting it",
			func(s *Store, im image) error {
				_, err := s.UpdateManifestAttributes(ctx, "app", im.manifest.Digest, set(true, false))
				return err
			},
			func(s *Store, im, other image) error { return s.DeleteManifest(ctx, "app", im.manifest.Digest) },
			"deleteEnabled"},
		{"a locked manifest keeps its layer",
			func(s *Store, im image) error {
				_, err := s.UpdateManifestAttributes(ctx, "app", im.manifest.Digest, set(true, false))
				return err
			},
			func(s *Store, im, other image) error { return s.UnlinkBlob(ctx, "app", im.layer) },
			""},
		{"a locked manifest keeps its repository",
			func(s *Store, im image) error {
				_, err := s.UpdateManifestAttributes(ctx, "app", im.manifest.Digest, set(false, true))
				return err
			},
			func(s *Store, im, other image) error { return s.DeleteRepository(ctx, "app") },
			""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			im, other := newImage(t, s, "app", "one"), newImage(t, s, "app", "two")
			im.put(t, s, "app", "v1")
			if err := tc.lock(s, im); err != nil {
				t.Fatal(err)
			}
			err := tc.change(s, im, other)
			var locked *LockedError
			if !errors.Is(err, ErrLocked) || !errors.As(err, &locked) || locked.Attr != tc.attr {
				t.Fatalf("got %v, want a LockedError for %q", err, tc.attr)
			}
			// What was there is still there.
			if m, err := s.Manifest(ctx, "app", "v1"); err != nil || m.Digest != im.manifest.Digest {
				t.Fatalf("v1 after the refused change: %s, %v", m.Digest, err)
			}
			if _, err := s.Blob(ctx, "app", im.layer); err != nil {
				t.Fatalf("layer after the refused change: %v", err)
			}
		})
	}
}

func TestDeleteRepository(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	im := newImage(t, s, "app", "one")
	im.put(t, s, "app", "v1")
	if _, err := s.Repository(ctx, "app"); err != nil { // cached now
		t.Fatal(err)
	}
	if err := s.DeleteRepository(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Repository(ctx, "app"); !errors.Is(err, ErrRepositoryNotFound) {
		t.Fatalf("Repository after deleting it: %v, want ErrRepositoryNotFound", err)
	}
	if _, err := s.Manifest(ctx, "app", "v1"); !errors.Is(err, ErrManifestNotFound) {
		t.Fatalf("Manifest after deleting its repository: %v, want ErrManifestNotFound", err)
	}
	if _, err := s.Blob(ctx, "app", im.layer); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Blob after deleting its repository: %v, want ErrBlobNotFound", err)
	}
	if err := s.DeleteRepository(ctx, "app"); !errors.Is(err, ErrRepositoryNotFound) {
		t.Fatalf("deleting a deleted repository: %v, want ErrRepositoryNotFound", err)
	}
	// A new repository of the same name starts empty, with default attributes.
	if err := s.LinkBlob(ctx, "app", digest.FromString("fresh"), 1); err != nil {
		t.Fatal(err)
	}
	r, err := s.Repository(ctx, "app")
	if err != nil || r.Attributes != DefaultAttributes {
		t.Fatalf("recreated repository: %+v, %v", r, err)
	}
	if _, err := s.Blob(ctx, "app", im.layer); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("recreated repository sees the old layer: %v", err)
	}
}

func TestReferrers(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	subject := newImage(t, s, "app", "subject")
	subject.put(t, s, "app", "v1")
	for i, at := range []string{"application/vnd.example.sbom", "application/vnd.example.signature"} {
		content := fmt.Appendf(nil, `{"schemaVersion":2,"n":%d}`, i)
		m := Manifest{Digest: digest.FromBytes(content), MediaType: ociManifest, ArtifactType: at, Subject: subject.manifest.Digest,
			Size: int64(len(content)), Content: content, Annotations: map[string]string{"n": fmt.Sprint(i)}}
		if err := s.PutManifest(ctx, PutManifestRequest{Repository: "app", Manifest: m}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Referrers(ctx, "app", subject.manifest.Digest, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("Referrers: %v, %v", all, err)
	}
	signatures, err := s.Referrers(ctx, "app", subject.manifest.Digest, "application/vnd.example.signature")
	if err != nil || len(signatures) != 1 || signatures[0].Annotations["n"] != "1" {
		t.Fatalf("Referrers of one type: %v, %v", signatures, err)
	}
	none, err := s.Referrers(ctx, "other", subject.manifest.Digest, "")
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("Referrers in another repository: %#v, %v; want an empty list", none, err)
	}
}

func TestStateSurvivesReopening(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	im := newImage(t, s, "app", "one")
	im.put(t, s, "app", "v1")
	if _, err := s.UpdateRepositoryAttributes(ctx, "app", func(a Attributes) Attributes { a.DeleteEnabled = false; return a }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	if m, err := s.Manifest(ctx, "app", "v1"); err != nil || m.Digest != im.manifest.Digest {
		t.Fatalf("manifest after reopening: %s, %v", m.Digest, err)
	}
	if r, err := s.Repository(ctx, "app"); err != nil || r.Attributes.DeleteEnabled {
		t.Fatalf("attributes after reopening: %+v, %v", r, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
