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
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

func TestCollect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	put := func(repo, content string) digest.Digest {
		d := digest.FromString(content)
		if _, err := blobs.Put(ctx, d, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if err := md.LinkBlob(ctx, repo, d, int64(len(content))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg, kept, orphan, shared := put("app", "{}"), put("app", "kept layer"), put("app", "orphan layer"), put("app", "shared layer")
	put("other", "shared layer")
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + kept.String() + `","size":10}]}`
	if err := md.PutManifest(ctx, meta.PutManifestRequest{Repository: "app", Tags: []string{"v1"}, Manifest: meta.Manifest{
		Digest: digest.FromString(man), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(man)), Content: []byte(man)}}); err != nil {
		t.Fatal(err)
	}

	// Everything is younger than the grace period: nothing goes.
	r, err := gc.Collect(ctx, md, blobs, gc.Options{})
	if err != nil || len(r.UnlinkedBlobs) != 0 || len(r.DeletedBlobs) != 0 {
		t.Fatalf("young content collected: %+v %v", r, err)
	}

	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	dry, err := gc.Collect(ctx, md, blobs, gc.Options{DryRun: true, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	r, err = gc.Collect(ctx, md, blobs, gc.Options{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	// "orphan" is referenced by no manifest; "shared" is unreferenced in
	// app but every link of "other" is unreferenced too (no manifests there).
	if len(r.UnlinkedBlobs) != 3 {
		t.Fatalf("unlinked %+v, want orphan and shared in app, shared in other", r.UnlinkedBlobs)
	}
	if len(r.DeletedBlobs) != 2 || r.FreedBytes != int64(len("orphan layer")+len("shared layer")) {
		t.Fatalf("deleted %v (%d bytes)", r.DeletedBlobs, r.FreedBytes)
	}
	if len(dry.UnlinkedBlobs) != len(r.UnlinkedBlobs) || len(dry.DeletedBlobs) != len(r.DeletedBlobs) {
		t.Errorf("dry run said %d/%d, the collection did %d/%d", len(dry.UnlinkedBlobs), len(dry.DeletedBlobs), len(r.UnlinkedBlobs), len(r.DeletedBlobs))
	}
	for _, d := range []digest.Digest{cfg, kept} {
		if _, err := blobs.Stat(ctx, d); err != nil {
			t.Errorf("referenced blob %s deleted: %v", d, err)
		}
		if _, err := md.Blob(ctx, "app", d); err != nil {
			t.Errorf("referenced blob %s unlinked: %v", d, err)
		}
	}
	for _, d := range []digest.Digest{orphan, shared} {
		if _, err := blobs.Stat(ctx, d); err == nil {
			t.Errorf("unreferenced blob %s kept", d)
		}
	}
}

// TestCollectSparesRelinkedBlobs pushes an image, deletes it, lets the
// grace period pass, refers to its blobs again the way a client re-pushing
// it does, collects garbage, and then pushes the manifest: it must find its
// blobs however the client referred to them.
func TestCollectSparesRelinkedBlobs(t *testing.T) {
	const layer, config = "layer of a push in progress", "{}"
	ld, cd := digest.FromString(layer), digest.FromString(config)
	man := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cd.String() + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + ld.String() + `","size":27}]}`
	md := digest.FromString(man)

	for _, tc := range []struct {
		name string
		// relink refers to both blobs in repository app again.
		relink     func(t *testing.T, send func(method, path, body string, want int) *http.Response)
		wantStatus int
	}{
		{"re-upload in one request", func(t *testing.T, send func(string, string, string, int) *http.Response) {
			send("POST", "/v2/app/blobs/uploads/?digest="+ld.String(), layer, http.StatusCreated)
			send("POST", "/v2/app/blobs/uploads/?digest="+cd.String(), config, http.StatusCreated)
		}, http.StatusCreated},
		{"re-upload in a session", func(t *testing.T, send func(string, string, string, int) *http.Response) {
			for _, b := range []string{layer, config} {
				loc := send("POST", "/v2/app/blobs/uploads/", "", http.StatusAccepted).Header.Get("Location")
				send("PATCH", loc, b, http.StatusAccepted)
				send("PUT", loc+"?digest="+digest.FromString(b).String(), "", http.StatusCreated)
			}
		}, http.StatusCreated},
		{"mount", func(t *testing.T, send func(string, string, string, int) *http.Response) {
			send("POST", "/v2/app/blobs/uploads/?mount="+ld.String()+"&from=base", "", http.StatusCreated)
			send("POST", "/v2/app/blobs/uploads/?mount="+cd.String()+"&from=base", "", http.StatusCreated)
		}, http.StatusCreated},
		{"HEAD finds them", func(t *testing.T, send func(string, string, string, int) *http.Response) {
			send("HEAD", "/v2/app/blobs/"+ld.String(), "", http.StatusOK)
			send("HEAD", "/v2/app/blobs/"+cd.String(), "", http.StatusOK)
		}, http.StatusCreated},
		// Without a fresh reference the links are garbage: the collection
		// still collects.
		{"nothing", func(*testing.T, func(string, string, string, int) *http.Response) {}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			blobs, err := storage.NewFS(dir)
			if err != nil {
				t.Fatal(err)
			}
			store, err := meta.OpenSQLite(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			var clock atomic.Int64
			clock.Store(time.Now().UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			store.SetClock(now)
			srv := httptest.NewServer(registry.New(registry.Options{Blobs: blobs, Meta: store, Authorizer: testutil.AllowAll{}}))
			defer srv.Close()
			send := func(method, path, body string, want int) *http.Response {
				t.Helper()
				req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
				}
				return resp
			}
			for _, repo := range []string{"base", "app"} {
				send("POST", "/v2/"+repo+"/blobs/uploads/?digest="+ld.String(), layer, http.StatusCreated)
				send("POST", "/v2/"+repo+"/blobs/uploads/?digest="+cd.String(), config, http.StatusCreated)
				send("PUT", "/v2/"+repo+"/manifests/v1", man, http.StatusCreated)
			}
			send("DELETE", "/v2/app/manifests/"+md.String(), "", http.StatusAccepted)

			clock.Add(int64(2 * time.Hour))
			tc.relink(t, send)
			if _, err := gc.Collect(ctx, store, blobs, gc.Options{Now: now}); err != nil {
				t.Fatal(err)
			}
			send("PUT", "/v2/app/manifests/v1", man, tc.wantStatus)
		})
	}
}
