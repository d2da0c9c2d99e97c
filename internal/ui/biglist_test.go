package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/testutil"
)

// contentWatch is the metadata store with a count of the manifests whose
// content it handed out, by Manifest or in a list.
type contentWatch struct {
	*meta.Store
	reads atomic.Int64
}

func (c *contentWatch) Manifest(ctx context.Context, repo, ref string) (meta.Manifest, error) {
	m, err := c.Store.Manifest(ctx, repo, ref)
	if err == nil {
		c.reads.Add(1)
	}
	return m, err
}

func (c *contentWatch) TagManifests(ctx context.Context, repo, last string, n int) ([]meta.TaggedManifest, error) {
	tags, err := c.Store.TagManifests(ctx, repo, last, n)
	for _, t := range tags {
		if t.Content != nil {
			c.reads.Add(1)
		}
	}
	return tags, err
}

func (c *contentWatch) UntaggedManifests(ctx context.Context, repo string, n int) ([]meta.Manifest, error) {
	ms, err := c.Store.UntaggedManifests(ctx, repo, n)
	for _, m := range ms {
		if m.Content != nil {
			c.reads.Add(1)
		}
	}
	return ms, err
}

// newWatchedFixture is newFixture with the portal reading the metadata
// store through a contentWatch.
func newWatchedFixture(t testing.TB) (*fixture, *contentWatch) {
	t.Helper()
	st := testutil.NewStores(t, ownerPassword)
	store, al, ids, log := st.Meta, st.Audit, st.Identity, slog.New(slog.DiscardHandler)
	watch := &contentWatch{Store: store}
	clk := &clock{t: time.Now()}
	h := New(Options{Identity: ids, Meta: watch, Audit: al, Logger: log, Now: clk.Now})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tt, _ := t.(*testing.T)
	return &fixture{t: tt, h: h, srv: srv, ids: ids, store: store, audit: al, clock: clk}, watch
}

// putLargeIndex stores an image and, under each tag, an index of entries
// manifests: the image for linux/amd64, then made-up children on a
// thousand platforms over and over, with an attestation among them.
func putLargeIndex(t testing.TB, store *meta.Store, repo string, entries int, tags ...string) {
	t.Helper()
	ctx := context.Background()
	img := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString("config").String() + `","size":1000},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digest.FromString("layer").String() + `","size":1000000}]}`)
	imgDigest := digest.FromBytes(img)
	if err := store.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Manifest: meta.Manifest{
		Digest: imgDigest, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(img)), Content: img}}); err != nil {
		t.Fatal(err)
	}
	type platform struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      digest.Digest     `json:"digest"`
		Size        int64             `json:"size"`
		Platform    platform          `json:"platform"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	children := []desc{{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: imgDigest, Size: int64(len(img)), Platform: platform{OS: "linux", Architecture: "amd64"}}}
	for i := 1; i < entries; i++ {
		d := desc{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromString(fmt.Sprint("child", i)), Size: 500,
			Platform: platform{OS: "linux", Architecture: fmt.Sprintf("arch%d", i%1000)}}
		if i == 1 {
			d.Platform = platform{OS: "unknown", Architecture: "unknown"}
			d.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest"}
		}
		children = append(children, d)
	}
	for _, tag := range tags {
		b, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
			"manifests": children, "annotations": map[string]string{"tag": tag}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Tags: []string{tag}, Manifest: meta.Manifest{
			Digest: digest.FromBytes(b), MediaType: "application/vnd.oci.image.index.v1+json", Size: int64(len(b)), Content: b}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRepositoryListReadsNoManifest: the page of a repository whose tags
// are indexes of 27,000 entries is rendered from the summaries stored at
// push, without reading (let alone parsing) any manifest's content, and
// still shows each tag's platforms and size.
func TestRepositoryListReadsNoManifest(t *testing.T) {
	const entries = 27000
	f, watch := newWatchedFixture(t)
	putLargeIndex(t, f.store, "big/app", entries, "v1", "v2")
	b := f.signIn("owner", ownerPassword)
	watch.reads.Store(0)
	r := b.get("/repositories/big/app")
	wantStatus(t, r, http.StatusOK)
	if n := watch.reads.Load(); n != 0 {
		t.Errorf("the repository page read the content of %d manifests; lists must show stored summaries", n)
	}
	if !strings.Contains(r.body, ">v1<") || !strings.Contains(r.body, ">v2<") {
		t.Error("the page does not list the tags")
	}
	// entries children, one of them an attestation; 16 platforms shown.
	more := fmt.Sprintf("+%d more", entries-1-meta.SummaryPlatforms)
	if strings.Count(r.body, more) != 2 || !strings.Contains(r.body, "linux/amd64") || strings.Contains(r.body, "unknown/unknown") {
		t.Errorf("the page does not show each index's platforms (want %q twice)", more)
	}
	// Size: the index, its image child with config and layer, and 31
	// children of 500 bytes the repository does not have.
	m, err := f.store.Manifest(context.Background(), "big/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := m.Size + 1001000 + 31*500; m.Summary.Size < want || m.Summary.Size > want+1000 {
		t.Errorf("summary size %d, want about %d", m.Summary.Size, want)
	}
	if m.Summary.Children != entries || m.Summary.PlatformCount != entries-1 {
		t.Errorf("summary %+v", m.Summary)
	}
}

// BenchmarkRepositoryPageLargeIndexes renders the page of a repository
// with five tags, each an index of 27,000 entries.
func BenchmarkRepositoryPageLargeIndexes(b *testing.B) {
	f, _ := newWatchedFixture(b)
	putLargeIndex(b, f.store, "big/app", 27000, "v1", "v2", "v3", "v4", "v5")
	gen, _ := f.ids.UserGeneration("owner")
	sess, _, _ := f.h.sessions.create("owner", gen)
	req, _ := http.NewRequest("GET", f.srv.URL+"/repositories/big/app", nil)
	req.AddCookie(&http.Cookie{Name: f.h.sessionCookieName(), Value: sess})
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}

// TestIndexPageShowsBoundedChildren: the page of an index of 27,000
// entries shows the first childrenShown of them and says how many more
// there are, instead of megabytes of rows.
func TestIndexPageShowsBoundedChildren(t *testing.T) {
	const entries = 27000
	f, _ := newWatchedFixture(t)
	putLargeIndex(t, f.store, "big/app", entries, "v1")
	m, err := f.store.Manifest(context.Background(), "big/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	r := f.signIn("owner", ownerPassword).get("/repositories/big/app/-/manifests/" + m.Digest.String())
	wantStatus(t, r, http.StatusOK)
	if rows := strings.Count(r.body, `<span class="chip">linux/`); rows != childrenShown-1 { // one is the attestation
		t.Errorf("%d platform rows, want %d", rows, childrenShown-1)
	}
	if !strings.Contains(r.body, fmt.Sprintf("%d more are not shown", entries-childrenShown)) {
		t.Error("the page does not say how many children it leaves out")
	}
}

// BenchmarkIndexPage renders the page of an index of 27,000 entries.
func BenchmarkIndexPage(b *testing.B) {
	f, _ := newWatchedFixture(b)
	putLargeIndex(b, f.store, "big/app", 27000, "v1")
	m, err := f.store.Manifest(context.Background(), "big/app", "v1")
	if err != nil {
		b.Fatal(err)
	}
	gen, _ := f.ids.UserGeneration("owner")
	sess, _, _ := f.h.sessions.create("owner", gen)
	req, _ := http.NewRequest("GET", f.srv.URL+"/repositories/big/app/-/manifests/"+m.Digest.String(), nil)
	req.AddCookie(&http.Cookie{Name: f.h.sessionCookieName(), Value: sess})
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
