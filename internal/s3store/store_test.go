package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testutil"
)

// newStore returns a store on a fresh bucket of a real S3 gateway, with the
// smallest part size S3 allows so that multi-part paths run on small data.
func newStore(t *testing.T) *Store {
	t.Helper()
	srv := testutil.StartS3(t)
	bucket := srv.NewBucket()
	srv.SetEnv(t)
	cfg, err := ParseURL(srv.URL(bucket, "reg") + "&part-size=5MiB")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.RunBlobs(t, storagetest.Options{LargeSize: 12 << 20}, func(t *testing.T) storagetest.BlobStore {
		return newStore(t)
	})
}

// chunks splits b into pieces of the given sizes (the last takes the rest).
func chunks(b []byte, sizes ...int) [][]byte {
	var out [][]byte
	for _, n := range sizes {
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// A session is a value: each chunk may go through another Store (another
// node), with the state carried between them, as the database carries it.
func TestUploadAcrossNodes(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b, err := New(ctx, a.Config())
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Store{a, b}
	const mib = 1 << 20
	cases := []struct {
		name   string
		size   int
		chunks []int
	}{
		{"small chunks, one part", 300000, []int{1000, 50000, 1}},
		{"chunks that cross parts", 13 * mib, []int{3 * mib, 3 * mib, 1, 4*mib + 5}},
		{"one big chunk", 11 * mib, nil},
		{"exactly one part", 5 * mib, []int{5 * mib}},
		{"empty", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			content, d := storagetest.Random(t, c.size)
			st, err := a.StartUpload(ctx)
			if err != nil {
				t.Fatal(err)
			}
			parts := chunks(content, c.chunks...)
			last := parts[len(parts)-1]
			for i, p := range parts[:len(parts)-1] {
				want := st.Size + int64(len(p))
				st, err = nodes[i%2].Append(ctx, st, bytes.NewReader(p))
				if err != nil || st.Size != want {
					t.Fatalf("chunk %d: size %d, %v; want %d", i, st.Size, err, want)
				}
			}
			n, err := nodes[len(parts)%2].Commit(ctx, st, d, bytes.NewReader(last))
			if err != nil || n != int64(c.size) {
				t.Fatalf("Commit = %d, %v", n, err)
			}
			got := readAll(t, b, d)
			if !bytes.Equal(got, content) {
				t.Fatalf("committed blob differs: %d bytes, want %d", len(got), len(content))
			}
			assertNoUploadObjects(t, a)
		})
	}
}

// A body that breaks off part way keeps what arrived: the state says how
// much, and the client resumes from there.
func TestUploadBrokenChunkKeepsWhatArrived(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	content, d := storagetest.Random(t, 7<<20)
	st, _ := s.StartUpload(ctx)
	first := content[:6<<20]
	st, err := s.Append(ctx, st, &brokenReader{r: bytes.NewReader(first), after: 1 << 20})
	if err == nil {
		t.Fatal("Append of a broken body reported no error")
	}
	if st.Size != 1<<20 {
		t.Fatalf("after a body broken at 1 MiB the session holds %d bytes", st.Size)
	}
	st, err = s.Append(ctx, st, bytes.NewReader(content[st.Size:6<<20]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, st, d, bytes.NewReader(content[6<<20:])); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, d), content) {
		t.Fatal("resumed upload committed wrong content")
	}
}

func TestUploadDigestMismatchRemovesEverything(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1000, 12 << 20} {
		s := newStore(t)
		content, _ := storagetest.Random(t, size)
		_, wrong := storagetest.Random(t, 1)
		st, _ := s.StartUpload(ctx)
		st, err := s.Append(ctx, st, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, st, wrong, nil); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("Commit with a wrong digest: %v", err)
		}
		if _, err := s.Stat(ctx, wrong); !errors.Is(err, storage.ErrBlobNotFound) {
			t.Fatalf("blob exists after a refused commit: %v", err)
		}
		assertNoUploadObjects(t, s)
	}
}

func TestUploadSha512(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1000, 12 << 20} {
		s := newStore(t)
		content, _ := storagetest.Random(t, size)
		d := digest.SHA512.FromBytes(content)
		st, _ := s.StartUpload(ctx)
		st, err := s.Append(ctx, st, bytes.NewReader(content[:size/2]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, st, d, bytes.NewReader(content[size/2:])); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, s, d), content) {
			t.Fatal("sha512 upload committed wrong content")
		}
	}
}

func TestAbortRemovesEverything(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	content, _ := storagetest.Random(t, 7<<20)
	st, _ := s.StartUpload(ctx)
	st, err := s.Append(ctx, st, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if st.MultipartID == "" || st.TailSize == 0 {
		t.Fatalf("7 MiB with 5 MiB parts should leave a part and a tail: %+v", st)
	}
	if err := s.Abort(ctx, st); err != nil {
		t.Fatal(err)
	}
	assertNoUploadObjects(t, s)
}

func TestPurgeOrphans(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	content, _ := storagetest.Random(t, 6<<20)
	st, _ := s.StartUpload(ctx)
	if _, err := s.Append(ctx, st, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	// Nothing is older than a cutoff in the past.
	if n, err := s.PurgeOrphans(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PurgeOrphans(an hour ago) = %d, %v", n, err)
	}
	if n, err := s.PurgeOrphans(ctx, time.Now().Add(time.Minute)); err != nil || n == 0 {
		t.Fatalf("PurgeOrphans(now) = %d, %v", n, err)
	}
	assertNoUploadObjects(t, s)
}

func TestParseURL(t *testing.T) {
	good := []struct {
		in   string
		want Config
	}{
		{"s3://b", Config{Bucket: "b", PartSize: defaultPartSize, MaxAttempts: 5, RedirectTTL: 5 * time.Minute}},
		{"s3://b/p/q/?endpoint=http://127.0.0.1:9000/&region=eu&path-style=true&part-size=8MiB&redirect=true&redirect-ttl=1m&max-attempts=3",
			Config{Bucket: "b", Prefix: "p/q/", Endpoint: "http://127.0.0.1:9000", Region: "eu", PathStyle: true, PartSize: 8 << 20, MaxAttempts: 3, Redirect: true, RedirectTTL: time.Minute}},
	}
	for _, c := range good {
		got, err := ParseURL(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"", "file:///x", "s3://", "s3://b?endpoint=ftp://x", "s3://b?path-style=maybe",
		"s3://b?part-size=1MiB", "s3://b?bogus=1", "s3://key:secret@b", "s3://b?redirect-ttl=forever",
	} {
		if _, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) accepted", in)
		}
	}
}

type brokenReader struct {
	r     io.Reader
	after int
	n     int
}

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n >= b.after {
		return 0, errors.New("connection reset")
	}
	p = p[:min(len(p), b.after-b.n)]
	n, err := b.r.Read(p)
	b.n += n
	return n, err
}

func readAll(t *testing.T, s *Store, d digest.Digest) []byte {
	t.Helper()
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertNoUploadObjects checks that no session left objects or multipart
// uploads behind.
func assertNoUploadObjects(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	prefix := s.cfg.Prefix + "uploads/"
	objs, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Contents) != 0 {
		var keys []string
		for _, o := range objs.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		t.Fatalf("upload objects left behind: %v", keys)
	}
	mps, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(mps.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left behind", len(mps.Uploads))
	}
}

// A PUT that brings a whole blob with its digest goes straight to the blob's
// key; only content that arrived before its digest is known is copied into
// place from its staging object.
func TestMonolithicCommitIsNotCopied(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, c := range []struct {
		name       string
		size       int
		chunked    bool
		wantCopies int64
	}{
		{"monolithic, one part", 1000, false, 0},
		{"monolithic, several parts", 12 << 20, false, 0},
		{"chunked, several parts", 12 << 20, true, 1},
	} {
		content, d := storagetest.Random(t, c.size)
		st, err := s.StartUpload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		body := content
		if c.chunked {
			if st, err = s.Append(ctx, st, bytes.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			body = nil
		}
		before := s.copies.Load()
		if n, err := s.Commit(ctx, st, d, bytes.NewReader(body)); err != nil || n != int64(c.size) {
			t.Fatalf("%s: Commit = %d, %v", c.name, n, err)
		}
		if got := s.copies.Load() - before; got != c.wantCopies {
			t.Errorf("%s: %d server-side copies, want %d", c.name, got, c.wantCopies)
		}
		if !bytes.Equal(readAll(t, s, d), content) {
			t.Fatalf("%s: wrong content", c.name)
		}
		assertNoUploadObjects(t, s)
	}
	// A wrong digest on the direct path stores nothing and ends the session.
	content, _ := storagetest.Random(t, 12<<20)
	_, wrong := storagetest.Random(t, 1)
	st, _ := s.StartUpload(ctx)
	if _, err := s.Commit(ctx, st, wrong, bytes.NewReader(content)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Commit with a wrong digest: %v", err)
	}
	if _, err := s.Stat(ctx, wrong); !errors.Is(err, storage.ErrBlobNotFound) {
		t.Fatalf("blob stored under a wrong digest: %v", err)
	}
	assertNoUploadObjects(t, s)
}

// partGate is the HTTP client of a store under test: it records the
// payload hash header of every PUT, holds part uploads until want of them
// are being sent at once (or a while has passed, so a store that sends
// fewer fails the test instead of hanging it), and fails part failPart.
type partGate struct {
	next     s3.HTTPClient
	want     int
	failPart string

	mu       sync.Mutex
	active   int
	most     int
	released chan struct{}
	payloads map[string]bool
}

func (g *partGate) Do(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPut {
		return g.next.Do(r)
	}
	g.mu.Lock()
	g.payloads[r.Header.Get("X-Amz-Content-Sha256")] = true
	part := r.URL.Query().Get("partNumber")
	if part == "" {
		g.mu.Unlock()
		return g.next.Do(r)
	}
	g.active++
	g.most = max(g.most, g.active)
	if g.active >= g.want {
		select {
		case <-g.released:
		default:
			close(g.released)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.released:
	case <-time.After(5 * time.Second):
	}
	defer func() { g.mu.Lock(); g.active--; g.mu.Unlock() }()
	if part == g.failPart {
		return nil, errors.New("connection reset by the test")
	}
	return g.next.Do(r)
}

// A large push sends several parts at once, unsigned (berth verifies the
// digest itself); they complete in order, and a part that fails leaves
// nothing stored and no multipart upload behind.
func TestPushSendsPartsInParallel(t *testing.T) {
	base := newStore(t)
	cfg := base.Config()
	cfg.MaxAttempts = 1 // the failing part must not be retried
	const mib = 1 << 20
	data := make([]byte, 5*5*mib+12345) // six parts of 5 MiB
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	for i, tc := range []struct {
		name     string
		failPart string
	}{
		{"all parts", ""},
		{"part 4 fails", "4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data[0] = byte(i) // a blob not stored yet
			d := digest.FromBytes(data)
			ctx := context.Background()
			s, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			g := &partGate{want: partsInFlight, failPart: tc.failPart, released: make(chan struct{}), payloads: map[string]bool{}}
			s.client = s3.New(s.client.Options(), func(o *s3.Options) { g.next = o.HTTPClient; o.HTTPClient = g })
			n, err := s.Put(ctx, d, bytes.NewReader(data))
			if g.most < partsInFlight {
				t.Errorf("at most %d parts were sent at once, want %d", g.most, partsInFlight)
			}
			if len(g.payloads) != 1 || !g.payloads["UNSIGNED-PAYLOAD"] {
				t.Errorf("payload hashes sent: %v, want only UNSIGNED-PAYLOAD", g.payloads)
			}
			if tc.failPart != "" {
				if err == nil {
					t.Fatal("push succeeded although a part failed")
				}
				if _, err := s.Stat(ctx, d); !errors.Is(err, storage.ErrBlobNotFound) {
					t.Fatalf("after a failed push, Stat = %v, want ErrBlobNotFound", err)
				}
				mps, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &cfg.Bucket})
				if err != nil {
					t.Fatal(err)
				}
				if len(mps.Uploads) != 0 {
					t.Fatalf("%d multipart uploads left behind", len(mps.Uploads))
				}
				return
			}
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Put = %d, %v", n, err)
			}
			if got := readAll(t, s, d); !bytes.Equal(got, data) {
				t.Fatal("stored content differs from what was pushed (parts out of order?)")
			}
		})
	}
}

// largestWrite records what it is written and the largest single write.
type largestWrite struct {
	buf     bytes.Buffer
	largest int
}

func (w *largestWrite) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.buf.Write(p)
}

// io.Copy from a blob reads from where the reader was moved to, to the end,
// with reads larger than io.Copy's 32 KiB.
func TestBlobWriteToFromPosition(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	data := make([]byte, 8<<20+5)
	for i := range data {
		data[i] = byte(i * 13 / 7)
	}
	d := digest.FromBytes(data)
	if _, err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		read int   // bytes read before the copy
		seek int64 // then a seek from the start, if not negative
	}{
		{"whole", 0, -1},
		{"after a seek", 0, 1 << 20},
		{"after reads", 100, -1},
		{"after reads and a seek back", 70000, 3},
		{"at the end", 0, int64(len(data))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := s.Open(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := io.ReadFull(f, make([]byte, tc.read)); err != nil {
				t.Fatal(err)
			}
			from := int64(tc.read)
			if tc.seek >= 0 {
				if from, err = f.Seek(tc.seek, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
			var w largestWrite
			n, err := io.Copy(&w, f)
			if err != nil || n != int64(len(data))-from {
				t.Fatalf("copy = %d, %v; want %d bytes", n, err, int64(len(data))-from)
			}
			if !bytes.Equal(w.buf.Bytes(), data[from:]) {
				t.Fatal("copied content differs")
			}
			if n > 1<<20 && w.largest <= 32<<10 {
				t.Errorf("largest write %d bytes: the copy used io.Copy's small buffer", w.largest)
			}
		})
	}
}
