package metatest

import (
	"slices"
	"testing"

	"github.com/berth-registry/berth/internal/meta"
)

// testPlatforms: PutManifestRequest.Platform becomes an image's summary
// platform; an image stored before platforms were recorded is listed by
// PlatformFills until FillPlatform records its platform, which every
// node's reads then show; entries of deleted manifests are dropped.
func testPlatforms(t *testing.T, e *env) {
	s := e.s
	m1 := image(blob("cfg1"), nil, "", blob("l1"))
	req := meta.PutManifestRequest{Repository: "app", Manifest: m1, Tags: []string{"new"}, Platform: "linux/arm64/v8"}
	for d := range blobsOf(m1) {
		must(t, s.LinkBlob(e.ctx, "app", d, 1))
		req.Requires = append(req.Requires, d)
	}
	must(t, s.PutManifest(e.ctx, req))
	got, err := s.Manifest(e.ctx, "app", "new")
	mustNot(t, err)
	if !slices.Equal(got.Summary.Platforms, []string{"linux/arm64/v8"}) || got.Summary.PlatformCount != 1 {
		t.Errorf("pushed with a platform: summary %+v", got.Summary)
	}

	// An image from before: pushed without one, and on the fill list as
	// the upgrade's migration puts it (here by hand).
	old := image(blob("cfg2"), nil, "", blob("l2"))
	gone := image(blob("cfg3"), nil, "", blob("l3"))
	e.push(t, s, "app", old, "old")
	e.push(t, s, "app", gone)
	for _, d := range []string{old.Digest.String(), gone.Digest.String()} {
		if _, err := s.DB().ExecContext(e.ctx, `INSERT INTO platform_fill(repository_id, digest) SELECT repository_id, digest FROM manifests WHERE digest = '`+d+`'`); err != nil {
			t.Fatal(err)
		}
	}
	must(t, s.DeleteManifest(e.ctx, "app", gone.Digest))
	second := e.second()
	for _, st := range []*meta.Store{s, second} {
		if m, err := st.Manifest(e.ctx, "app", "old"); err != nil || len(m.Summary.Platforms) != 0 { // and cached
			t.Fatalf("before the fill: %+v, %v", m.Summary, err)
		}
	}
	fills, err := s.PlatformFills(e.ctx, 10)
	mustNot(t, err)
	if len(fills) != 1 || fills[0].Repository != "app" || fills[0].Manifest.Digest != old.Digest || string(fills[0].Manifest.Content) != string(old.Content) {
		t.Fatalf("PlatformFills = %+v, want app@%s alone", fills, old.Digest)
	}
	must(t, s.FillPlatform(e.ctx, "app", old.Digest, "linux/amd64"))
	for i, st := range []*meta.Store{s, second} {
		m, err := st.Manifest(e.ctx, "app", "old")
		if err != nil || !slices.Equal(m.Summary.Platforms, []string{"linux/amd64"}) || m.Summary.Size != old.Size+2 {
			t.Errorf("node %d after the fill: %+v, %v", i+1, m.Summary, err)
		}
		tags, err := st.TagManifests(e.ctx, "app", "", 10)
		mustNot(t, err)
		for _, tm := range tags {
			if tm.Tag == "old" && !slices.Equal(tm.Summary.Platforms, []string{"linux/amd64"}) {
				t.Errorf("node %d lists old with %+v", i+1, tm.Summary)
			}
		}
	}
	if fills, err := s.PlatformFills(e.ctx, 10); err != nil || len(fills) != 0 {
		t.Errorf("PlatformFills after the fill = %+v, %v; want none", fills, err)
	}
	// Filling a manifest that is gone is no error.
	must(t, s.FillPlatform(e.ctx, "nope", old.Digest, "linux/amd64"))
}
