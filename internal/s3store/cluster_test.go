package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testutil"
)

// Two registry nodes, each with its own S3 client and its own connections
// to one PostgreSQL database, behind a load balancer that sends each
// request to the next node: the chunks of one upload land on both nodes in
// turn, and the blob commits with the right digest; a chunk sent while
// another is still being written, wherever it lands, is refused.
func TestUploadThroughLoadBalancer(t *testing.T) {
	ctx := context.Background()
	first := newStore(t)
	url := testutil.StartPostgres(t).NewDatabase()
	var mu sync.Mutex
	served := map[string]map[int]int{} // method -> node -> requests
	var backends []string
	var tables []*meta.Store
	for i := range 2 {
		st := first
		if i > 0 {
			var err error
			if st, err = New(ctx, first.Config()); err != nil {
				t.Fatal(err)
			}
		}
		db, err := sqldb.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		md, err := meta.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { md.Close() })
		tables = append(tables, md)
		reg := registry.New(registry.Options{Blobs: NewBlobs(st, NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{}), Meta: md, Authorizer: testutil.AllowAll{}})
		node := i
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				w.Write([]byte("ready\n"))
				return
			}
			mu.Lock()
			if served[r.Method] == nil {
				served[r.Method] = map[int]int{}
			}
			served[r.Method][node]++
			mu.Unlock()
			reg.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, strings.TrimPrefix(srv.URL, "http://"))
	}
	lb := testutil.StartLoadBalancer(t, backends...)
	base := "http://" + lb.Host

	send := func(method, url string, body []byte, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	abs := func(loc string) string {
		if strings.HasPrefix(loc, "/") {
			return base + loc
		}
		return loc
	}

	content, d := storagetest.Random(t, 14<<20)
	resp := send("POST", base+"/v2/app/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	loc := abs(resp.Header.Get("Location"))
	const chunk = 3 << 20
	for off := 0; off < len(content); off += chunk {
		end := min(off+chunk, len(content))
		resp := send("PATCH", loc, content[off:end], "Content-Range", fmt.Sprintf("%d-%d", off, end-1), "Content-Type", "application/octet-stream")
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
			t.Fatalf("chunk at %d: %s, Range %q", off, resp.Status, resp.Header.Get("Range"))
		}
		loc = abs(resp.Header.Get("Location"))
	}
	// Either node tells where the upload stands.
	for range 2 {
		if resp := send("GET", loc, nil); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(content)-1) {
			t.Fatalf("status: %s, Range %q", resp.Status, resp.Header.Get("Range"))
		}
	}
	if resp := send("PUT", loc+"?digest="+d.String(), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("final PUT: %s", resp.Status)
	}
	mu.Lock()
	patches := served["PATCH"]
	mu.Unlock()
	if patches[0] == 0 || patches[1] == 0 {
		t.Fatalf("PATCHes per node = %v: the chunks did not reach both nodes", patches)
	}
	for range 2 { // from each node
		req, _ := http.NewRequest("GET", base+"/v2/app/blobs/"+d.String(), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || digest.FromBytes(got) != d {
			t.Fatalf("GET blob: %s, %d bytes not hashing to %s", resp.Status, len(got), d)
		}
	}

	// A chunk while another chunk of the same upload is still arriving
	// (on whichever node) is refused at once, as out of order.
	resp = send("POST", base+"/v2/app/blobs/uploads/", nil)
	loc = abs(resp.Header.Get("Location"))
	pr, pw := io.Pipe()
	slow, _ := http.NewRequest("PATCH", loc, pr)
	slow.Header.Set("Content-Type", "application/octet-stream")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(slow)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	pw.Write(content[:1<<20])
	// Wait until the first request holds the session.
	id := loc[strings.LastIndex(loc, "/")+1:]
	for claim := ""; claim == ""; {
		if err := tables[0].DB().QueryRowContext(ctx, `SELECT claim FROM uploads WHERE id = $1`, id).Scan(&claim); err != nil {
			t.Fatal(err)
		}
		if claim == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range 2 {
		if resp := send("PATCH", loc, content[:100], "Content-Type", "application/octet-stream"); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("concurrent chunk = %s, want 416", resp.Status)
		}
	}
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("slow chunk = %v", resp)
	}
}

// With a redirect, a GET of a large blob is answered 307 to a pre-signed
// URL only once the object has the size recorded at push: an object of
// another size is refused and quarantined instead of handed out.
func TestRedirectChecksSize(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	md := newMeta(t)
	blobs := NewBlobs(st, NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{})
	reg := registry.New(registry.Options{Blobs: blobs, Meta: md, Authorizer: testutil.AllowAll{},
		Redirect: func(ctx context.Context, d digest.Digest) (string, error) { return st.PresignGet(ctx, d, time.Minute) }})
	srv := httptest.NewServer(reg)
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	content, d := storagetest.Random(t, 2<<20)
	resp, err := client.Post(srv.URL+"/v2/app/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %v, %v", resp, err)
	}
	resp.Body.Close()
	get := func() *http.Response {
		t.Helper()
		resp, err := client.Get(srv.URL + "/v2/app/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("GET = %s, want 307", resp.Status)
	}
	// The object loses its end.
	if err := st.putObject(ctx, st.blobKey(d), content[:1<<20]); err != nil {
		t.Fatal(err)
	}
	if resp := get(); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of a truncated object = %s, want 404 (no redirect to it)", resp.Status)
	}
	if q, err := blobs.Quarantined(ctx); err != nil || len(q) != 1 || q[0].Digest != d {
		t.Fatalf("quarantined = %+v, %v", q, err)
	}
}

// A monolithic push of a blob whose stored object has another size than
// the push declares writes the object again, which repairs it.
func TestPushRepairsObjectOfWrongSize(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	blobs := newBlobs(t, st, storage.UploadLimits{})
	content, d := storagetest.Random(t, 3<<20)
	if _, err := blobs.PutSized(ctx, d, int64(len(content)), bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := st.putObject(ctx, st.blobKey(d), content[:1000]); err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.PutSized(ctx, d, int64(len(content)), bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, st, d); !bytes.Equal(got, content) {
		t.Fatalf("after the push the object holds %d bytes, want %d", len(got), len(content))
	}
	// The same through an upload session, for a blob within one part.
	small, sd := storagetest.Random(t, 5000)
	if _, err := blobs.Put(ctx, sd, bytes.NewReader(small)); err != nil {
		t.Fatal(err)
	}
	if err := st.putObject(ctx, st.blobKey(sd), small[:10]); err != nil {
		t.Fatal(err)
	}
	u, err := blobs.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Commit(ctx, u.ID, sd, bytes.NewReader(small)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, st, sd); !bytes.Equal(got, small) {
		t.Fatalf("after the chunked push the object holds %d bytes, want %d", len(got), len(small))
	}
}

// A small blob, hashed before it is served, is read from the object store
// once: what was read for the check is what is sent.
func TestSmallBlobReadOnce(t *testing.T) {
	ctx := context.Background()
	gw := testutil.StartS3(t)
	gw.SetEnv(t)
	target, err := neturl.Parse(gw.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			gets.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer counting.Close()
	bucket := gw.NewBucket()
	cfg, err := ParseURL("s3://" + bucket + "/reg?endpoint=" + counting.URL + "&region=" + gw.Region + "&path-style=true")
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	md := newMeta(t)
	reg := registry.New(registry.Options{Blobs: NewBlobs(st, NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{}), Meta: md, Authorizer: testutil.AllowAll{}})
	content, d := storagetest.Random(t, 100000)
	w := httptest.NewRecorder()
	reg.ServeHTTP(w, httptest.NewRequest("POST", "/v2/app/blobs/uploads/?digest="+d.String(), bytes.NewReader(content)))
	if w.Code != http.StatusCreated {
		t.Fatalf("push: %d %s", w.Code, w.Body)
	}
	gets.Store(0)
	w = httptest.NewRecorder()
	reg.ServeHTTP(w, httptest.NewRequest("GET", "/v2/app/blobs/"+d.String(), nil))
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), content) {
		t.Fatalf("GET: %d, %d bytes", w.Code, w.Body.Len())
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("GET of a small blob made %d GETs of the object, want 1", n)
	}
}
