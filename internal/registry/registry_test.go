package registry

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// openAuthz lets everything through, or denies reads of the repositories
// in denyRead (to test that mounts do not leak).
type openAuthz struct{ denyRead map[string]bool }

func (a openAuthz) Authorize(*http.Request, []Access) (Caller, error) { return a, nil }
func (a openAuthz) Name() string                                      { return "test" }
func (a openAuthz) Can(repo string, op auth.Operation) bool {
	return !(op == auth.OpPull && a.denyRead[repo])
}
func (a openAuthz) CanSee(repo string) bool                          { return !a.denyRead[repo] }
func (openAuthz) TagCheck(string, auth.Operation) func(string) error { return nil }
func (openAuthz) CatalogTagFilter(string) func(string) bool          { return nil }

func newTestRegistry(t *testing.T, authz Authorizer) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if authz == nil {
		authz = openAuthz{}
	}
	srv := httptest.NewServer(New(Options{Blobs: blobs, Meta: md, Authorizer: authz}))
	t.Cleanup(srv.Close)
	return srv, dir
}

type call struct {
	method, path string
	header       map[string]string
	body         string
	wantStatus   int
	wantCode     string            // OCI error code, if an error is expected
	wantHeader   map[string]string // exact values
}

func do(t *testing.T, base string, c call) *http.Response {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if resp.StatusCode != c.wantStatus {
		t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, resp.StatusCode, c.wantStatus, body)
	}
	if c.wantCode != "" {
		var eb errorBody
		if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 || eb.Errors[0].Code != c.wantCode {
			t.Fatalf("%s %s: body %s, want error code %s", c.method, c.path, body, c.wantCode)
		}
	}
	for k, v := range c.wantHeader {
		if got := resp.Header.Get(k); got != v {
			t.Fatalf("%s %s: header %s = %q, want %q", c.method, c.path, k, got, v)
		}
	}
	return resp
}

func sha(b string) digest.Digest { return digest.FromString(b) }

func sha512Of(b string) digest.Digest {
	s := sha512.Sum512([]byte(b))
	return digest.Digest("sha512:" + hex.EncodeToString(s[:]))
}

func imageManifest(cfg, layer digest.Digest, cfgSize, layerSize int) string {
	return fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`, cfg, cfgSize, layer, layerSize)
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestCalls(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	layer, cfg := "layer-content", "{}"
	ld, cd := sha(layer), sha(cfg)
	man := imageManifest(cd, ld, len(cfg), len(layer))
	md := sha(man)
	bigName := strings.Repeat("a", 256)

	calls := []call{
		{method: "GET", path: "/v2/", wantStatus: 200},
		{method: "POST", path: "/v2/", wantStatus: 405, wantCode: "UNSUPPORTED"},
		{method: "GET", path: "/v2/Upper/manifests/x", wantStatus: 400, wantCode: "NAME_INVALID"},
		{method: "GET", path: "/v2/a/../b/manifests/x", wantStatus: 400, wantCode: "NAME_INVALID"},
		{method: "GET", path: "/v2/a/%2e%2e/b/manifests/x", wantStatus: 400, wantCode: "NAME_INVALID"},
		{method: "GET", path: "/v2/a%2Fb/manifests/x", wantStatus: 404, wantCode: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2//a/manifests/x", wantStatus: 400, wantCode: "NAME_INVALID"},
		{method: "GET", path: "/v2/" + bigName + "/manifests/x", wantStatus: 400, wantCode: "NAME_INVALID"},
		{method: "GET", path: "/v2/nothing/here", wantStatus: 404, wantCode: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2/repo/manifests/latest", wantStatus: 404, wantCode: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2/repo/blobs/sha256:abc", wantStatus: 400, wantCode: "DIGEST_INVALID"},
		{method: "GET", path: "/v2/repo/blobs/" + ld.String(), wantStatus: 404, wantCode: "BLOB_UNKNOWN"},
		// monolithic upload with a wrong digest is refused and stores nothing
		{method: "POST", path: "/v2/repo/blobs/uploads/?digest=" + sha("other").String(), body: layer, wantStatus: 400, wantCode: "DIGEST_INVALID"},
		{method: "HEAD", path: "/v2/repo/blobs/" + sha("other").String(), wantStatus: 404},
		{method: "POST", path: "/v2/repo/blobs/uploads/?digest=" + ld.String(), body: layer, wantStatus: 201,
			wantHeader: map[string]string{"Docker-Content-Digest": ld.String(), "Location": "/v2/repo/blobs/" + ld.String()}},
		{method: "HEAD", path: "/v2/repo/blobs/" + ld.String(), wantStatus: 200,
			wantHeader: map[string]string{"Content-Length": fmt.Sprint(len(layer)), "Docker-Content-Digest": ld.String()}},
		{method: "GET", path: "/v2/repo/blobs/" + ld.String(), header: map[string]string{"Range": "bytes=0-4"}, wantStatus: 206,
			wantHeader: map[string]string{"Content-Length": "5"}},
		{method: "GET", path: "/v2/repo/blobs/" + ld.String(), header: map[string]string{"Range": "bytes=100-200"}, wantStatus: 416},
		// a manifest whose config is missing is refused
		{method: "PUT", path: "/v2/repo/manifests/v1", header: map[string]string{"Content-Type": ociManifest}, body: man, wantStatus: 400, wantCode: "MANIFEST_BLOB_UNKNOWN"},
		{method: "POST", path: "/v2/repo/blobs/uploads/?digest=" + cd.String(), body: cfg, wantStatus: 201},
		{method: "PUT", path: "/v2/repo/manifests/v1", header: map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}, body: man, wantStatus: 400, wantCode: "MANIFEST_INVALID"},
		{method: "PUT", path: "/v2/repo/manifests/v1", header: map[string]string{"Content-Type": ociManifest}, body: "{not json", wantStatus: 400, wantCode: "MANIFEST_INVALID"},
		{method: "PUT", path: "/v2/repo/manifests/" + sha("x").String(), header: map[string]string{"Content-Type": ociManifest}, body: man, wantStatus: 400, wantCode: "DIGEST_INVALID"},
		{method: "PUT", path: "/v2/repo/manifests/-bad", header: map[string]string{"Content-Type": ociManifest}, body: man, wantStatus: 400, wantCode: "MANIFEST_INVALID"},
		{method: "PUT", path: "/v2/repo/manifests/v1", header: map[string]string{"Content-Type": ociManifest}, body: man, wantStatus: 201,
			wantHeader: map[string]string{"Docker-Content-Digest": md.String(), "Location": "/v2/repo/manifests/" + md.String()}},
		{method: "GET", path: "/v2/repo/manifests/v1", wantStatus: 200,
			wantHeader: map[string]string{"Content-Type": ociManifest, "Docker-Content-Digest": md.String()}},
		{method: "HEAD", path: "/v2/repo/manifests/" + md.String(), wantStatus: 200, wantHeader: map[string]string{"Content-Length": fmt.Sprint(len(man))}},
		{method: "GET", path: "/v2/repo/manifests/v2", wantStatus: 404, wantCode: "MANIFEST_UNKNOWN"},
		{method: "PUT", path: "/v2/repo/manifests/" + md.String() + "?tag=a&tag=b", header: map[string]string{"Content-Type": ociManifest}, body: man, wantStatus: 201},
		{method: "GET", path: "/v2/repo/tags/list", wantStatus: 200},
		{method: "GET", path: "/v2/repo/tags/list?n=2", wantStatus: 200, wantHeader: map[string]string{"Link": `</v2/repo/tags/list?last=b&n=2>; rel="next"`}},
		{method: "GET", path: "/v2/repo/tags/list?n=x", wantStatus: 400, wantCode: "UNSUPPORTED"},
		{method: "GET", path: "/v2/missing/tags/list", wantStatus: 404, wantCode: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2/_catalog", wantStatus: 200},
		{method: "GET", path: "/v2/repo/referrers/" + md.String(), wantStatus: 200, wantHeader: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}},
		{method: "GET", path: "/v2/repo/referrers/bad", wantStatus: 400, wantCode: "DIGEST_INVALID"},
		{method: "DELETE", path: "/v2/repo/manifests/a", wantStatus: 202},
		{method: "GET", path: "/v2/repo/manifests/a", wantStatus: 404, wantCode: "MANIFEST_UNKNOWN"},
		{method: "GET", path: "/v2/repo/manifests/b", wantStatus: 200},
		{method: "DELETE", path: "/v2/repo/manifests/" + md.String(), wantStatus: 202},
		{method: "GET", path: "/v2/repo/manifests/b", wantStatus: 404},
		{method: "DELETE", path: "/v2/repo/blobs/" + ld.String(), wantStatus: 202},
		{method: "DELETE", path: "/v2/repo/blobs/" + ld.String(), wantStatus: 404, wantCode: "BLOB_UNKNOWN"},
		{method: "GET", path: "/v2/repo/blobs/uploads/00000000000000000000000000000000", wantStatus: 404, wantCode: "BLOB_UPLOAD_UNKNOWN"},
		{method: "GET", path: "/v2/repo/blobs/uploads/..%2F..%2Fetc", wantStatus: 404, wantCode: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2/repo/blobs/uploads/..", wantStatus: 404, wantCode: "BLOB_UPLOAD_UNKNOWN"},
	}
	for _, c := range calls {
		do(t, base, c)
	}
}

func TestChunkedUpload(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	data := strings.Repeat("0123456789", 1000)
	d := sha(data)
	resp := do(t, srv.URL, call{method: "POST", path: "/v2/r/blobs/uploads/", wantStatus: 202, wantHeader: map[string]string{"Range": "0-0"}})
	loc := resp.Header.Get("Location")
	do(t, srv.URL, call{method: "PATCH", path: loc, header: map[string]string{"Content-Range": "0-4999"}, body: data[:5000], wantStatus: 202,
		wantHeader: map[string]string{"Range": "0-4999"}})
	// out of order chunk
	do(t, srv.URL, call{method: "PATCH", path: loc, header: map[string]string{"Content-Range": "6000-6999"}, body: data[6000:7000], wantStatus: 416,
		wantHeader: map[string]string{"Range": "0-4999"}})
	// a session of one repository is unknown in another
	do(t, srv.URL, call{method: "GET", path: strings.Replace(loc, "/v2/r/", "/v2/other/", 1), wantStatus: 404, wantCode: "BLOB_UPLOAD_UNKNOWN"})
	do(t, srv.URL, call{method: "GET", path: loc, wantStatus: 204, wantHeader: map[string]string{"Range": "0-4999"}})
	do(t, srv.URL, call{method: "PATCH", path: loc, body: data[5000:9000], wantStatus: 202, wantHeader: map[string]string{"Range": "0-8999"}})
	do(t, srv.URL, call{method: "PUT", path: loc + "?digest=" + d.String(), body: data[9000:], wantStatus: 201})
	got := do(t, srv.URL, call{method: "GET", path: "/v2/r/blobs/" + d.String(), wantStatus: 200})
	b, _ := io.ReadAll(got.Body)
	if string(b) != data {
		t.Fatalf("blob content differs")
	}
	// the session is gone
	do(t, srv.URL, call{method: "GET", path: loc, wantStatus: 404, wantCode: "BLOB_UPLOAD_UNKNOWN"})
}

func TestUploadDigestMismatchStoresNothing(t *testing.T) {
	srv, dir := newTestRegistry(t, nil)
	for _, alg := range []string{"sha256", "sha512"} {
		resp := do(t, srv.URL, call{method: "POST", path: "/v2/r/blobs/uploads/", wantStatus: 202})
		loc := resp.Header.Get("Location")
		wrong := sha("something else")
		if alg == "sha512" {
			wrong = sha512Of("something else")
		}
		do(t, srv.URL, call{method: "PUT", path: loc + "?digest=" + wrong.String(), body: "content", wantStatus: 400, wantCode: "DIGEST_INVALID"})
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("blob files after failed uploads: %v", files)
	}
}

func TestSHA512Blob(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	d := sha512Of("hello512")
	do(t, srv.URL, call{method: "POST", path: "/v2/r/blobs/uploads/?digest=" + d.String(), body: "hello512", wantStatus: 201})
	resp := do(t, srv.URL, call{method: "GET", path: "/v2/r/blobs/" + d.String(), wantStatus: 200, wantHeader: map[string]string{"Docker-Content-Digest": d.String()}})
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello512" {
		t.Fatal("sha512 blob content differs")
	}
}

func TestIndexWithMissingChildrenIsAccepted(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":10,"platform":{"os":"linux","architecture":"amd64"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":10,"platform":{"os":"linux","architecture":"arm64"}}]}`, sha("a"), sha("b"))
	do(t, srv.URL, call{method: "PUT", path: "/v2/r/manifests/multi", header: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, body: idx, wantStatus: 201})
}

func TestMountDoesNotLeak(t *testing.T) {
	srv, _ := newTestRegistry(t, openAuthz{denyRead: map[string]bool{"secret": true}})
	d := sha("secret-layer")
	do(t, srv.URL, call{method: "POST", path: "/v2/secret/blobs/uploads/?digest=" + d.String(), body: "secret-layer", wantStatus: 201})
	do(t, srv.URL, call{method: "POST", path: "/v2/public/blobs/uploads/?digest=" + sha("p").String(), body: "p", wantStatus: 201})
	for _, q := range []string{"mount=" + d.String() + "&from=secret", "mount=" + d.String()} {
		resp := do(t, srv.URL, call{method: "POST", path: "/v2/mine/blobs/uploads/?" + q, wantStatus: 202})
		if !strings.Contains(resp.Header.Get("Location"), "/blobs/uploads/") {
			t.Fatalf("mount fallback: Location %q is not an upload session", resp.Header.Get("Location"))
		}
	}
	do(t, srv.URL, call{method: "HEAD", path: "/v2/mine/blobs/" + d.String(), wantStatus: 404})
	// allowed source mounts
	do(t, srv.URL, call{method: "POST", path: "/v2/mine/blobs/uploads/?mount=" + sha("p").String() + "&from=public", wantStatus: 201})
}

func TestManifestTooLarge(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	big := `{"schemaVersion":2,"annotations":{"x":"` + strings.Repeat("a", MaxManifestSize) + `"}}`
	do(t, srv.URL, call{method: "PUT", path: "/v2/r/manifests/big", header: map[string]string{"Content-Type": ociManifest}, body: big, wantStatus: 413, wantCode: "MANIFEST_INVALID"})
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path, kind, name, ref string
		ok                    bool
	}{
		{"/v2/", routeBase, "", "", true},
		{"/v2/_catalog", routeCatalog, "", "", true},
		{"/v2/a/b/c/manifests/latest", routeManifest, "a/b/c", "latest", true},
		{"/v2/blobs/blobs/sha256:x", routeBlob, "blobs", "sha256:x", true},
		{"/v2/manifests/manifests/manifests", routeManifest, "manifests", "manifests", true},
		{"/v2/a/blobs/uploads/", routeUploads, "a", "", true},
		{"/v2/a/blobs/uploads", routeUploads, "a", "", true},
		{"/v2/a/blobs/uploads/abc", routeUpload, "a", "abc", true},
		{"/v2/a/tags/list", routeTags, "a", "", true},
		{"/v2/a/referrers/sha256:x", routeReferrers, "a", "sha256:x", true},
		{"/v2/a/..", "", "", "", false},
		{"/v2/A/tags/list", "", "", "", false},
		{"/v2/a//b/tags/list", "", "", "", false},
		{"/v2/a/tags/list/", "", "", "", false},
	}
	for _, tt := range tests {
		rt, err := parseRoute(tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("parseRoute(%q) error %v, want ok=%v", tt.path, err, tt.ok)
			continue
		}
		if tt.ok && (rt.kind != tt.kind || rt.name != tt.name || rt.ref != tt.ref) {
			t.Errorf("parseRoute(%q) = %+v, want %s %s %s", tt.path, rt, tt.kind, tt.name, tt.ref)
		}
	}
}

func TestRequiredAccess(t *testing.T) {
	repo := func(op auth.Operation) []Access { return []Access{RepositoryAccess("a", op)} }
	tests := []struct {
		method, path string
		want         []Access
	}{
		{"GET", "/v2/", nil},
		{"GET", "/v2/_catalog", []Access{{Type: "registry", Name: "catalog", Action: ActionCatalog}}},
		{"GET", "/v2/a/manifests/x", repo(auth.OpPull)},
		{"HEAD", "/v2/a/blobs/sha256:x", repo(auth.OpPull)},
		{"PUT", "/v2/a/manifests/x", repo(auth.OpPush)},
		{"DELETE", "/v2/a/manifests/x", repo(auth.OpUntag)},
		{"DELETE", "/v2/a/manifests/sha256:" + strings.Repeat("0", 64), repo(auth.OpDeleteManifest)},
		{"DELETE", "/v2/a/blobs/sha256:x", repo(auth.OpDeleteBlob)},
		{"POST", "/v2/a/blobs/uploads/", repo(auth.OpPush)},
		{"PATCH", "/v2/a/blobs/uploads/u", repo(auth.OpPush)},
		{"PUT", "/v2/a/blobs/uploads/u", repo(auth.OpPush)},
		{"GET", "/v2/a/blobs/uploads/u", repo(auth.OpReadUpload)},
		{"DELETE", "/v2/a/blobs/uploads/u", repo(auth.OpCancelUpload)},
		{"GET", "/v2/a/tags/list", repo(auth.OpReadMetadata)},
		{"GET", "/v2/a/referrers/sha256:x", repo(auth.OpPull)},
		{"PATCH", "/v2/a/manifests/x", repo(auth.OpPush)},
	}
	for _, tt := range tests {
		rt, err := parseRoute(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(tt.method, tt.path, nil)
		got := requiredAccess(r, rt)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s %s: %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
	// The token-spelled actions are the operation table's, for the
	// challenge's scope.
	for _, tt := range []struct {
		op         auth.Operation
		action, or Action
	}{
		{auth.OpUntag, ActionMetadataWrite, ActionDelete},
		{auth.OpReadUpload, ActionPush, ActionPull},
		{auth.OpDeleteManifest, ActionDelete, ""},
	} {
		if a := RepositoryAccess("a", tt.op); a.Action != tt.action || a.Or != tt.or {
			t.Errorf("RepositoryAccess(%v) = %q or %q, want %q or %q", tt.op, a.Action, a.Or, tt.action, tt.or)
		}
	}
}
