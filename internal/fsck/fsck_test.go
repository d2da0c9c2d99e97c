package fsck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

type fixture struct {
	t    *testing.T
	dir  string
	url  string
	fs   *storage.FS
	meta *meta.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	fs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	srv := httptest.NewServer(registry.New(registry.Options{Blobs: fs, Meta: md, Authorizer: testutil.AllowAll{}}))
	t.Cleanup(srv.Close)
	return &fixture{t: t, dir: dir, url: srv.URL, fs: fs, meta: md}
}

func (f *fixture) req(method, path, contentType string, body []byte) (int, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.url+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) must(want int, method, path, contentType string, body []byte) []byte {
	f.t.Helper()
	st, b := f.req(method, path, contentType, body)
	if st != want {
		f.t.Fatalf("%s %s: %d, want %d: %.300s", method, path, st, want, b)
	}
	return b
}

func (f *fixture) pushBlob(content []byte) digest.Digest {
	f.t.Helper()
	d := digest.FromBytes(content)
	f.must(201, "POST", "/v2/r/blobs/uploads/?digest="+d.String(), "", content)
	return d
}

type image struct {
	tag           string
	config, layer []byte
	cd, ld        digest.Digest
	manifest      []byte
}

// pushImage pushes an image of one layer of 200,000 bytes as r:tag.
func (f *fixture) pushImage(tag string) image {
	f.t.Helper()
	im := image{tag: tag, config: []byte(`{"tag":"` + tag + `"}`), layer: bytes.Repeat([]byte(tag), 200000/len(tag)+1)[:200000]}
	im.cd, im.ld = f.pushBlob(im.config), f.pushBlob(im.layer)
	im.manifest = fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		im.cd, len(im.config), im.ld, len(im.layer))
	f.must(201, "PUT", "/v2/r/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", im.manifest)
	return im
}

// pull fetches the image as a client would and checks every byte.
func (f *fixture) pull(im image) {
	f.t.Helper()
	if got := f.must(200, "GET", "/v2/r/manifests/"+im.tag, "", nil); !bytes.Equal(got, im.manifest) {
		f.t.Fatalf("manifest %s differs", im.tag)
	}
	for d, want := range map[digest.Digest][]byte{im.cd: im.config, im.ld: im.layer} {
		if got := f.must(200, "GET", "/v2/r/blobs/"+d.String(), "", nil); !bytes.Equal(got, want) {
			f.t.Fatalf("blob %s of %s differs", d, im.tag)
		}
	}
}

func (f *fixture) path(d digest.Digest) string {
	return filepath.Join(f.dir, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

func (f *fixture) check(repair bool) Report {
	f.t.Helper()
	r, err := Check(context.Background(), f.meta, f.fs, Options{Repair: repair})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func damagedDigests(r Report) []digest.Digest {
	var out []digest.Digest
	for _, b := range r.DamagedBlobs {
		out = append(out, b.Digest)
	}
	return out
}

func missingDigests(r Report) []digest.Digest {
	var out []digest.Digest
	for _, b := range r.MissingBlobs {
		out = append(out, b.Digest)
	}
	return out
}

func sorted(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}

// The whole repair cycle: damage found, quarantined, refused, pushed again,
// pulled again.
func TestCheckFindsDamageAndRepairRestoresPulls(t *testing.T) {
	f := newFixture(t)
	flipped, cut, lost := f.pushImage("flipped"), f.pushImage("cut"), f.pushImage("lost")
	healthy := f.pushImage("healthy")
	if r := f.check(false); r.Problems() != 0 || r.BlobsChecked != 8 || r.ManifestsChecked != 4 {
		t.Fatalf("a healthy store: %+v", r)
	}

	// One byte changed in place, one file truncated to 1,000 of 200,000
	// bytes, one file lost, one link removed from under a manifest.
	b, _ := os.ReadFile(f.path(flipped.ld))
	b[100] ^= 0xff
	os.WriteFile(f.path(flipped.ld), b, 0o640)
	os.Truncate(f.path(cut.ld), 1000)
	os.Remove(f.path(lost.ld))
	f.must(202, "DELETE", "/v2/r/blobs/"+lost.cd.String(), "", nil)

	r := f.check(false)
	if got, want := damagedDigests(r), sorted(flipped.ld, cut.ld); !slices.Equal(got, want) {
		t.Fatalf("damaged %v, want %v", got, want)
	}
	for _, db := range r.DamagedBlobs {
		if db.Quarantined || db.ActualDigest == db.Digest || db.ActualDigest == "" {
			t.Errorf("damaged blob %+v", db)
		}
		if db.Digest == cut.ld && (db.Size != 1000 || db.ExpectedSize != 200000) {
			t.Errorf("truncated blob reported as %+v", db)
		}
		if db.Digest == flipped.ld && (db.Size != 200000 || db.ExpectedSize != 200000) {
			t.Errorf("flipped blob reported as %+v", db)
		}
		if len(db.Manifests) != 1 || !slices.Equal(db.Repositories, []string{"r"}) {
			t.Errorf("users of %s: %v %v", db.Digest, db.Repositories, db.Manifests)
		}
	}
	if got := missingDigests(r); !slices.Equal(got, []digest.Digest{lost.ld}) {
		t.Fatalf("missing %v, want %v", got, lost.ld)
	}
	broken := map[string][]MissingReference{}
	for _, m := range r.BrokenManifests {
		broken[strings.Join(m.Tags, ",")] = m.Missing
	}
	want := map[string][]MissingReference{
		"flipped": {{flipped.ld, "damaged"}},
		"cut":     {{cut.ld, "damaged"}},
		"lost":    {{lost.cd, "not linked"}, {lost.ld, "missing"}},
	}
	if fmt.Sprint(broken) != fmt.Sprint(want) {
		t.Fatalf("broken manifests %v, want %v", broken, want)
	}
	if _, err := os.Stat(f.path(flipped.ld)); err != nil {
		t.Fatalf("a check without repair moved a file: %v", err)
	}

	r = f.check(true)
	for _, db := range r.DamagedBlobs {
		if !db.Quarantined {
			t.Errorf("not quarantined: %s", db.Digest)
		}
	}
	for _, d := range []digest.Digest{flipped.ld, cut.ld} {
		for _, m := range []string{"GET", "HEAD"} {
			f.must(404, m, "/v2/r/blobs/"+d.String(), "", nil)
		}
	}
	q, _ := f.fs.Quarantined(context.Background())
	if len(q) != 2 {
		t.Fatalf("quarantine: %+v", q)
	}
	r = f.check(false)
	if len(r.DamagedBlobs) != 0 || !slices.Equal(missingDigests(r), sorted(flipped.ld, cut.ld, lost.ld)) {
		t.Fatalf("after repair: damaged %v, missing %v", damagedDigests(r), missingDigests(r))
	}
	for _, m := range r.MissingBlobs {
		if m.Quarantined != (m.Digest != lost.ld) {
			t.Errorf("missing %s: quarantined=%v", m.Digest, m.Quarantined)
		}
	}

	// Pushing the right bytes again restores every image.
	for _, content := range [][]byte{flipped.layer, cut.layer, lost.layer, lost.config} {
		f.pushBlob(content)
	}
	if r := f.check(false); r.Problems() != 0 {
		t.Fatalf("after the re-push: %+v", r)
	}
	for _, im := range []image{flipped, cut, lost, healthy} {
		f.pull(im)
	}
}

func TestReferences(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	for _, tc := range []struct {
		name, manifest string
		want           []digest.Digest
	}{
		{"image", fmt.Sprintf(`{"config":{"digest":"%s"},"layers":[{"digest":"%s"},{"digest":"%s"}]}`, a, b, a), []digest.Digest{a, b}},
		{"foreign layer", fmt.Sprintf(`{"config":{"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"%s"}]}`, a, b), []digest.Digest{a}},
		{"non-distributable layer", fmt.Sprintf(`{"config":{"digest":"%s"},"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"%s"}]}`, a, b), []digest.Digest{a}},
		{"index", fmt.Sprintf(`{"manifests":[{"digest":"%s"}]}`, a), nil},
		{"not JSON", `{`, nil},
	} {
		if got := References([]byte(tc.manifest)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
