package meta

import (
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	typeImage = "application/vnd.oci.image.manifest.v1+json"
	typeIndex = "application/vnd.oci.image.index.v1+json"
)

func putTestManifest(t *testing.T, s *Store, repo, mt, content string, tags ...string) Manifest {
	t.Helper()
	b := []byte(content)
	m := Manifest{Digest: digest.FromBytes(b), MediaType: mt, Size: int64(len(b)), Content: b}
	if err := s.PutManifest(context.Background(), PutManifestRequest{Repository: repo, Manifest: m, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSummaryAtPush: a manifest's summary is worked out when it is stored
// (an index's size counts the children the repository has), lists return
// it without the content, and a database from before summaries gets them
// filled in when it is opened.
func TestSummaryAtPush(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	img := putTestManifest(t, s, "app", typeImage, `{"schemaVersion":2,"config":{"size":100},"layers":[{"size":1000},{"size":2000}]}`)
	missing := digest.FromString("missing")
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[`+
		`{"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},`+
		`{"digest":%q,"size":50,"platform":{"os":"unknown","architecture":"unknown"}},`+
		`{"digest":%q,"size":70,"platform":{"os":"linux","architecture":"amd64"}}]}`, img.Digest, img.Size, missing, missing)
	idx := putTestManifest(t, s, "app", typeIndex, index, "v1")
	putTestManifest(t, s, "app", typeImage, `{"schemaVersion":2,"config":{"size":1}}`, "hidden")
	hidden, err := s.Manifest(ctx, "app", "hidden")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateManifestAttributes(ctx, "app", hidden.Digest, func(a Attributes) Attributes { a.ListEnabled = false; return a }); err != nil {
		t.Fatal(err)
	}

	wantImg := Summary{Size: img.Size + 3100}
	wantIdx := Summary{Size: idx.Size + wantImg.Size + 50 + 70, Children: 3, Platforms: []string{"linux/arm64/v8", "linux/amd64"}, PlatformCount: 2}
	check := func(when string, s *Store) {
		t.Helper()
		for _, c := range []struct {
			ref  string
			want Summary
		}{{img.Digest.String(), wantImg}, {"v1", wantIdx}} {
			m, err := s.Manifest(ctx, "app", c.ref)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(m.Summary) != fmt.Sprint(c.want) {
				t.Errorf("%s: summary of %s = %+v, want %+v", when, c.ref, m.Summary, c.want)
			}
		}
		tags, err := s.TagManifests(ctx, "app", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(tags) != 1 || tags[0].Tag != "v1" || tags[0].Digest != idx.Digest || tags[0].Content != nil ||
			fmt.Sprint(tags[0].Summary) != fmt.Sprint(wantIdx) || !tags[0].Attributes.WriteEnabled {
			t.Errorf("%s: TagManifests = %+v", when, tags)
		}
		untagged, err := s.UntaggedManifests(ctx, "app", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(untagged) != 1 || untagged[0].Digest != img.Digest || untagged[0].Content != nil || fmt.Sprint(untagged[0].Summary) != fmt.Sprint(wantImg) {
			t.Errorf("%s: UntaggedManifests = %+v", when, untagged)
		}
	}
	check("at push", s)

	// A database from before summaries.
	if _, err := s.DB().Exec(`UPDATE manifests SET summary = ''`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after the upgrade", s)
}
