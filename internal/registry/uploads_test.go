package registry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// hookedBlobs runs a hook when an upload's content is complete, just
// before it is stored: the moment between the checks at the start of a
// request and the link at its end.
type hookedBlobs struct {
	*storage.FS
	beforeStore func()
}

func (b hookedBlobs) PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error) {
	b.beforeStore()
	return b.FS.PutSized(ctx, d, size, r)
}

func (b hookedBlobs) Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error) {
	b.beforeStore()
	return b.FS.Commit(ctx, id, d, r)
}

func (b hookedBlobs) Touch(ctx context.Context, d digest.Digest) error {
	b.beforeStore()
	return b.FS.Touch(ctx, d)
}

// TestWriteLockDuringUpload locks a repository while an upload to it is
// under way: nothing of the upload may land in the repository, and a
// session's partial data is removed at once.
func TestWriteLockDuringUpload(t *testing.T) {
	const content = "layer pushed while the repository is locked"
	d := sha(content)
	for _, tc := range []struct {
		name string
		// lockAt is "before" a request of the session or "store" (inside
		// the request, once its content is complete).
		lockAt string
		run    func(t *testing.T, base, loc string)
	}{
		{"PATCH after the lock", "before", func(t *testing.T, base, loc string) {
			do(t, base, call{method: "PATCH", path: loc, body: content[10:], wantStatus: 403, wantCode: "DENIED"})
		}},
		{"PUT after the lock", "before", func(t *testing.T, base, loc string) {
			do(t, base, call{method: "PUT", path: loc + "?digest=" + d.String(), body: content[10:], wantStatus: 403, wantCode: "DENIED"})
		}},
		{"lock during the final PUT", "store", func(t *testing.T, base, loc string) {
			do(t, base, call{method: "PUT", path: loc + "?digest=" + d.String(), body: content[10:], wantStatus: 403, wantCode: "DENIED"})
		}},
		{"lock during a monolithic upload", "store", func(t *testing.T, base, _ string) {
			do(t, base, call{method: "POST", path: "/v2/app/blobs/uploads/?digest=" + d.String(), body: content, wantStatus: 403, wantCode: "DENIED"})
		}},
		{"lock during a mount", "store", func(t *testing.T, base, _ string) {
			do(t, base, call{method: "POST", path: "/v2/app/blobs/uploads/?mount=" + sha("base layer").String() + "&from=base", wantStatus: 403, wantCode: "DENIED"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			fs, err := storage.NewFS(dir)
			if err != nil {
				t.Fatal(err)
			}
			md, err := meta.OpenSQLite(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			lock := func() {
				if _, err := md.UpdateRepositoryAttributes(ctx, "app", func(a meta.Attributes) meta.Attributes { a.WriteEnabled = false; return a }); err != nil {
					t.Error(err)
				}
			}
			var armed atomic.Bool
			blobs := hookedBlobs{FS: fs, beforeStore: func() {
				if armed.Load() {
					lock()
				}
			}}
			srv := httptest.NewServer(New(Options{Blobs: blobs, Meta: md, Authorizer: openAuthz{}}))
			defer srv.Close()

			do(t, srv.URL, call{method: "POST", path: "/v2/base/blobs/uploads/?digest=" + sha("base layer").String(), body: "base layer", wantStatus: 201})
			do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/?digest=" + sha("other").String(), body: "other", wantStatus: 201})
			loc := do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/", wantStatus: 202}).Header.Get("Location")
			do(t, srv.URL, call{method: "PATCH", path: loc, body: content[:10], wantStatus: 202})
			if tc.lockAt == "before" {
				lock()
			} else {
				armed.Store(true)
			}
			tc.run(t, srv.URL, loc)

			do(t, srv.URL, call{method: "HEAD", path: "/v2/app/blobs/" + d.String(), wantStatus: 404})
			do(t, srv.URL, call{method: "HEAD", path: "/v2/app/blobs/" + sha("base layer").String(), wantStatus: 404})
			if tc.lockAt == "before" {
				id := loc[strings.LastIndex(loc, "/")+1:]
				do(t, srv.URL, call{method: "GET", path: loc, wantStatus: 404, wantCode: "BLOB_UPLOAD_UNKNOWN"})
				if _, err := os.Stat(filepath.Join(dir, "uploads", id)); !os.IsNotExist(err) {
					t.Errorf("the refused session's data is still on disk: %v", err)
				}
			}
		})
	}
}

// namedAuthz lets everything through as the identity named in the request's
// X-Test-Identity header.
type namedAuthz struct{}

func (namedAuthz) Authorize(r *http.Request, _ []Access) (Caller, error) {
	return namedCaller(r.Header.Get("X-Test-Identity")), nil
}

type namedCaller string

func (c namedCaller) Name() string                                     { return string(c) }
func (namedCaller) Can(string, auth.Operation) bool                    { return true }
func (namedCaller) CanSee(string) bool                                 { return true }
func (namedCaller) TagCheck(string, auth.Operation) func(string) error { return nil }
func (namedCaller) CatalogTagFilter(string) func(string) bool          { return nil }

// TestUploadSessionCap opens sessions over HTTP beyond the caps: the
// refusal is a 429 TOOMANYREQUESTS with Retry-After that stores nothing,
// and a finished or cancelled session frees its slot.
func TestUploadSessionCap(t *testing.T) {
	dir := t.TempDir()
	fs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	fs.SetUploadCounter(storage.NewSessionCounter(storage.UploadLimits{PerIdentity: 2, PerRepository: 3}, nil))
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	srv := httptest.NewServer(New(Options{Blobs: fs, Meta: md, Authorizer: namedAuthz{}, UploadRetryAfter: 30 * time.Second}))
	defer srv.Close()
	as := func(who string) map[string]string { return map[string]string{"X-Test-Identity": who} }
	refused := map[string]string{"Retry-After": "30"}

	alice1 := do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/", header: as("alice"), wantStatus: 202}).Header.Get("Location")
	alice2 := do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/", header: as("alice"), wantStatus: 202}).Header.Get("Location")
	// alice is at her cap, in any repository, also for a session with a
	// first chunk or one a failed mount would open.
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/", header: as("alice"), wantStatus: 429, wantCode: "TOOMANYREQUESTS", wantHeader: refused})
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/", header: as("alice"), body: "first chunk", wantStatus: 429, wantCode: "TOOMANYREQUESTS", wantHeader: refused})
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/?mount=" + sha("nothing").String(), header: as("alice"), wantStatus: 429, wantCode: "TOOMANYREQUESTS"})
	// A blob in one request holds no session.
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/?digest=" + sha("whole").String(), header: as("alice"), body: "whole", wantStatus: 201})
	// bob is not, until app is at its cap.
	do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/", header: as("bob"), wantStatus: 202})
	do(t, srv.URL, call{method: "POST", path: "/v2/app/blobs/uploads/", header: as("bob"), wantStatus: 429, wantCode: "TOOMANYREQUESTS"})
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/", header: as("bob"), wantStatus: 202})

	entries, _ := os.ReadDir(filepath.Join(dir, "uploads"))
	if len(entries) != 4 {
		t.Errorf("%d sessions on disk, want the 4 accepted", len(entries))
	}

	// Ending sessions frees their slots.
	do(t, srv.URL, call{method: "PUT", path: alice1 + "?digest=" + sha("layer").String(), header: as("alice"), body: "layer", wantStatus: 201})
	do(t, srv.URL, call{method: "DELETE", path: alice2, header: as("alice"), wantStatus: 204})
	for range 2 {
		do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/", header: as("alice"), wantStatus: 202})
	}
	do(t, srv.URL, call{method: "POST", path: "/v2/other/blobs/uploads/", header: as("alice"), wantStatus: 429, wantCode: "TOOMANYREQUESTS"})
}
