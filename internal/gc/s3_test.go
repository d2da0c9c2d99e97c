package gc_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

// pushDuringCollect is the metadata store as collection sees it, with a
// push of blob target by another client right after collection found
// target unreferenced: the push finds the content stored, so it does not
// write it again.
type pushDuringCollect struct {
	gc.Metadata
	target digest.Digest
	push   func()
	pushed bool
}

func (m *pushDuringCollect) BlobReferenced(ctx context.Context, d digest.Digest) (bool, error) {
	used, err := m.Metadata.BlobReferenced(ctx, d)
	if d == m.target && !m.pushed {
		m.pushed = true
		m.push()
	}
	return used, err
}

// Garbage collection of blobs on S3: unreferenced blobs go (linked by no
// repository, or by links no manifest needs), referenced ones stay, and a
// blob pushed again while the collection runs is spared although the
// collection had judged it garbage.
func TestCollectOnS3(t *testing.T) {
	ctx := context.Background()
	gw := testutil.StartS3(t)
	gw.SetEnv(t)
	cfg, err := s3store.ParseURL(gw.URL(gw.NewBucket(), "reg"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	md, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	md.SetClock(now)
	blobs := s3store.NewBlobs(st, s3store.NewDBSessions(md, storage.UploadLimits{}), md, s3store.BlobsOptions{Now: now})
	srv := httptest.NewServer(registry.New(registry.Options{Blobs: blobs, Meta: md, Authorizer: testutil.AllowAll{}}))
	defer srv.Close()
	send := func(method, path, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
	}
	push := func(content string) digest.Digest {
		d := digest.FromString(content)
		send("POST", "/v2/app/blobs/uploads/?digest="+d.String(), content, http.StatusCreated)
		return d
	}
	cfgBlob, kept, orphan, repushed := push("{}"), push("kept layer"), push("orphan layer"), push("layer pushed again")
	stray := digest.FromString("never linked")
	if _, err := blobs.Put(ctx, stray, strings.NewReader("never linked")); err != nil {
		t.Fatal(err)
	}
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfgBlob.String() + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + kept.String() + `","size":10}]}`
	send("PUT", "/v2/app/manifests/v1", man, http.StatusCreated)

	// Young: nothing goes.
	r, err := gc.Collect(ctx, md, blobs, gc.Options{Now: now})
	if err != nil || len(r.DeletedBlobs) != 0 {
		t.Fatalf("young blobs collected: %+v, %v", r, err)
	}

	clock.Add(int64(2 * time.Hour))
	// The push is a monolithic upload caught between storing (finding)
	// the content and linking it, the moment a collection could take the
	// content from under it.
	during := &pushDuringCollect{Metadata: md, target: repushed, push: func() {
		if _, err := blobs.PutSized(ctx, repushed, 18, strings.NewReader("layer pushed again")); err != nil {
			t.Error(err)
		}
	}}
	r, err = gc.Collect(ctx, during, blobs, gc.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !during.pushed {
		t.Fatal("the collection never looked at the re-pushed blob")
	}
	deleted := map[digest.Digest]bool{}
	for _, d := range r.DeletedBlobs {
		deleted[d] = true
	}
	if len(r.DeletedBlobs) != 2 || !deleted[orphan] || !deleted[stray] {
		t.Fatalf("deleted %v, want the orphan %s and the stray %s", r.DeletedBlobs, orphan, stray)
	}
	for d, want := range map[digest.Digest]bool{cfgBlob: true, kept: true, repushed: true, orphan: false, stray: false} {
		if _, err := blobs.Stat(ctx, d); (err == nil) != want {
			t.Errorf("blob %s: stored = %v, want %v", d, err == nil, want)
		}
	}
	// The push links the content it stored; the blob is whole and pullable.
	if err := md.LinkBlob(ctx, "app", repushed, 18); err != nil {
		t.Fatal(err)
	}
	send("GET", "/v2/app/blobs/"+repushed.String(), "", http.StatusOK)
}
