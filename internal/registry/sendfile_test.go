package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// readFromRecorder is a ResponseWriter that, like net/http's, takes bodies
// through io.ReaderFrom, and records what it was handed: net/http sends
// with sendfile only when the reader it gets is (a limit on) an *os.File.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	got []io.Reader
}

func (w *readFromRecorder) ReadFrom(r io.Reader) (int64, error) {
	w.got = append(w.got, r)
	return io.Copy(w.ResponseRecorder, r)
}

func fileUnder(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// The content-store interface returns io.ReadSeekCloser; a blob from the
// filesystem store must still reach the connection as an *os.File, whole
// and in ranges, or every pull loses sendfile.
func TestFilesystemBlobsKeepSendfile(t *testing.T) {
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
	rg := New(Options{Blobs: blobs, Meta: md, Authorizer: openAuthz{}})
	for _, size := range []int{1000, verifyOnServeMax + 1} { // hashed before serving, and not
		content := make([]byte, size)
		rand.Read(content)
		d := digest.FromBytes(content)
		req := httptest.NewRequest("POST", "/v2/r/blobs/uploads/?digest="+d.String(), bytes.NewReader(content))
		w := httptest.NewRecorder()
		rg.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			t.Fatalf("push: %d %s", w.Code, w.Body)
		}
		for _, rng := range []string{"", "bytes=10-99"} {
			req := httptest.NewRequest("GET", "/v2/r/blobs/"+d.String(), nil)
			if rng != "" {
				req.Header.Set("Range", rng)
			}
			w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
			rg.ServeHTTP(w, req)
			if w.Code != http.StatusOK && w.Code != http.StatusPartialContent {
				t.Fatalf("GET %d bytes (Range %q): %d %s", size, rng, w.Code, w.Body)
			}
			if len(w.got) != 1 || !fileUnder(w.got[0]) {
				t.Fatalf("GET %d bytes (Range %q): the body was written from %T, not an *os.File: no sendfile", size, rng, w.got)
			}
		}
	}
}

// objectBlobs is a filesystem store whose blobs open as something other
// than a file, as an object store's do, recording the largest read.
type objectBlobs struct {
	*storage.FS
	largestRead int
}

type objectBlob struct {
	io.ReadSeekCloser
	b *objectBlobs
}

func (o *objectBlob) Read(p []byte) (int, error) {
	o.b.largestRead = max(o.b.largestRead, len(p))
	return o.ReadSeekCloser.Read(p)
}

func (o *objectBlobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	f, err := o.FS.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return &objectBlob{ReadSeekCloser: f, b: o}, nil
}

// A large blob that cannot go out with sendfile is relayed with large
// reads, whole and in ranges, not net/http's 32 KiB.
func TestRelayedBlobsUseLargeReads(t *testing.T) {
	dir := t.TempDir()
	fs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	blobs := &objectBlobs{FS: fs}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	rg := New(Options{Blobs: blobs, Meta: md, Authorizer: openAuthz{}})
	content := make([]byte, 3*copyBufSize+12345)
	rand.Read(content)
	d := digest.FromBytes(content)
	req := httptest.NewRequest("POST", "/v2/r/blobs/uploads/?digest="+d.String(), bytes.NewReader(content))
	w := httptest.NewRecorder()
	rg.ServeHTTP(w, req)
	if w.Code != http.StatusCreated {
		t.Fatalf("push: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		rng  string
		want []byte
	}{
		{"", content},
		{"bytes=10-2100000", content[10:2100001]},
		{"bytes=1000000-", content[1000000:]},
	} {
		blobs.largestRead = 0
		req := httptest.NewRequest("GET", "/v2/r/blobs/"+d.String(), nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
		rg.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusPartialContent {
			t.Fatalf("GET (Range %q): %d %s", tc.rng, w.Code, w.Body)
		}
		if !bytes.Equal(w.Body.Bytes(), tc.want) {
			t.Fatalf("GET (Range %q): %d bytes, not the %d expected", tc.rng, w.Body.Len(), len(tc.want))
		}
		if blobs.largestRead < copyBufSize {
			t.Errorf("GET (Range %q): largest read %d bytes, want %d", tc.rng, blobs.largestRead, copyBufSize)
		}
	}
}
