// Package storagetest is the conformance suite every content store passes,
// as Distribution's storage driver test suites are for its drivers: the same
// tests, run against the filesystem and against S3, so that the registry can
// rely on one behaviour whichever store is configured.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// BlobStore is what the suite exercises: blobs by digest.
type BlobStore interface {
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
	Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error)
	Delete(ctx context.Context, d digest.Digest) error
	Walk(ctx context.Context, fn func(storage.BlobInfo) error) error
}

// Options describe the store under test.
type Options struct {
	// LargeSize is a blob size that takes the store's multi-part path
	// (more than one S3 part); 0 means 3 MiB.
	LargeSize int
}

// Random returns n random bytes and their sha256 digest.
func Random(t testing.TB, n int) ([]byte, digest.Digest) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, digest.FromBytes(b)
}

// failingReader returns its content, then an error instead of EOF: a client
// that went away part way through its body.
type failingReader struct{ r io.Reader }

var errBrokenBody = errors.New("connection reset by client")

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBrokenBody
	}
	return n, err
}

// RunBlobs runs the blob tests against the store newStore returns; each
// subtest gets a fresh, empty store.
func RunBlobs(t *testing.T, opts Options, newStore func(t *testing.T) BlobStore) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 3 << 20
	}
	ctx := context.Background()

	t.Run("PutStatOpen", func(t *testing.T) {
		for _, size := range []int{0, 1, 4096, opts.LargeSize} {
			s := newStore(t)
			b, d := Random(t, size)
			n, err := s.Put(ctx, d, bytes.NewReader(b))
			if err != nil || n != int64(size) {
				t.Fatalf("Put(%d bytes) = %d, %v", size, n, err)
			}
			if got, err := s.Stat(ctx, d); err != nil || got != int64(size) {
				t.Fatalf("Stat = %d, %v; want %d", got, err, size)
			}
			assertContent(t, s, d, b)
		}
	})

	t.Run("Sha512", func(t *testing.T) {
		s := newStore(t)
		b, _ := Random(t, 10000)
		d := digest.SHA512.FromBytes(b)
		if _, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("Seek", func(t *testing.T) {
		s := newStore(t)
		b, d := Random(t, 100000)
		if _, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		f, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// What http.ServeContent does: size from the end, back to the
		// start, then ranges.
		if end, err := f.Seek(0, io.SeekEnd); err != nil || end != int64(len(b)) {
			t.Fatalf("Seek(0, End) = %d, %v", end, err)
		}
		for _, r := range []struct{ off, n int }{{0, 10}, {5000, 1000}, {99990, 10}, {10, 5}, {0, 100000}} {
			if _, err := f.Seek(int64(r.off), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, r.n)
			if _, err := io.ReadFull(f, got); err != nil {
				t.Fatalf("read %d at %d: %v", r.n, r.off, err)
			}
			if !bytes.Equal(got, b[r.off:r.off+r.n]) {
				t.Fatalf("read %d at %d: wrong bytes", r.n, r.off)
			}
		}
		if n, err := f.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("read at the end = %d, %v; want 0, EOF", n, err)
		}
	})

	t.Run("WrongDigestStoresNothing", func(t *testing.T) {
		for _, size := range []int{100, opts.LargeSize} {
			s := newStore(t)
			b, _ := Random(t, size)
			_, claimed := Random(t, 10)
			if _, err := s.Put(ctx, claimed, bytes.NewReader(b)); !errors.Is(err, storage.ErrDigestMismatch) {
				t.Fatalf("Put with a wrong digest: %v, want ErrDigestMismatch", err)
			}
			if _, err := s.Stat(ctx, claimed); !errors.Is(err, storage.ErrBlobNotFound) {
				t.Fatalf("Stat after a refused Put: %v, want ErrBlobNotFound", err)
			}
			assertWalk(t, s, nil)
		}
	})

	t.Run("BrokenBodyStoresNothing", func(t *testing.T) {
		for _, size := range []int{100, opts.LargeSize} {
			s := newStore(t)
			b, d := Random(t, size)
			if _, err := s.Put(ctx, d, &failingReader{bytes.NewReader(b)}); err == nil {
				t.Fatal("Put of a body that broke off succeeded")
			}
			if _, err := s.Stat(ctx, d); !errors.Is(err, storage.ErrBlobNotFound) {
				t.Fatalf("Stat after a broken Put: %v, want ErrBlobNotFound", err)
			}
		}
	})

	t.Run("PutAgainVerifies", func(t *testing.T) {
		s := newStore(t)
		b, d := Random(t, 5000)
		if _, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil || n != 5000 {
			t.Fatalf("second Put = %d, %v", n, err)
		}
		// A claimed digest proves nothing: other bytes under a stored
		// digest are refused, and the stored blob is unharmed.
		other, _ := Random(t, 5000)
		if _, err := s.Put(ctx, d, bytes.NewReader(other)); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("Put of other bytes under a stored digest: %v", err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("Missing", func(t *testing.T) {
		s := newStore(t)
		_, d := Random(t, 10)
		if _, err := s.Stat(ctx, d); !errors.Is(err, storage.ErrBlobNotFound) {
			t.Errorf("Stat: %v", err)
		}
		if _, err := s.Open(ctx, d); !errors.Is(err, storage.ErrBlobNotFound) {
			t.Errorf("Open: %v", err)
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Errorf("Delete of a missing blob: %v", err)
		}
	})

	t.Run("BadDigests", func(t *testing.T) {
		s := newStore(t)
		for _, d := range []digest.Digest{"md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:short", "sha256:../../etc/passwd", ""} {
			if _, err := s.Stat(ctx, d); err == nil {
				t.Errorf("Stat(%q) succeeded", d)
			}
			if _, err := s.Put(ctx, d, bytes.NewReader(nil)); err == nil {
				t.Errorf("Put(%q) succeeded", d)
			}
		}
	})

	t.Run("DeleteAndWalk", func(t *testing.T) {
		s := newStore(t)
		want := map[digest.Digest]int64{}
		var ds []digest.Digest
		for i := range 5 {
			b, d := Random(t, 100+i)
			if _, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			want[d] = int64(len(b))
			ds = append(ds, d)
		}
		assertWalk(t, s, want)
		if err := s.Delete(ctx, ds[0]); err != nil {
			t.Fatal(err)
		}
		delete(want, ds[0])
		if _, err := s.Stat(ctx, ds[0]); !errors.Is(err, storage.ErrBlobNotFound) {
			t.Fatalf("Stat after Delete: %v", err)
		}
		assertWalk(t, s, want)
	})
}

func assertContent(t *testing.T, s BlobStore, d digest.Digest, want []byte) {
	t.Helper()
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("content of %s: %d bytes, want %d (or different bytes)", d, len(got), len(want))
	}
}

func assertWalk(t *testing.T, s BlobStore, want map[digest.Digest]int64) {
	t.Helper()
	got := map[digest.Digest]int64{}
	if err := s.Walk(context.Background(), func(b storage.BlobInfo) error {
		got[b.Digest] = b.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Walk found %d blobs, want %d: %v", len(got), len(want), got)
	}
	for d, n := range want {
		if got[d] != n {
			t.Fatalf("Walk: %s has size %d, want %d", d, got[d], n)
		}
	}
}

// Store is the whole content-store interface the registry uses: blobs, and
// upload sessions addressed by id.
type Store interface {
	BlobStore
	StartUpload(ctx context.Context, repo, owner string) (storage.UploadInfo, error)
	Upload(ctx context.Context, id string) (storage.UploadInfo, error)
	Append(ctx context.Context, id string, start int64, r io.Reader) (int64, error)
	Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error)
	Cancel(ctx context.Context, id string) error
}

// Run runs the blob tests and the upload session tests.
func Run(t *testing.T, opts Options, newStore func(t *testing.T) Store) {
	t.Run("Blobs", func(t *testing.T) {
		RunBlobs(t, opts, func(t *testing.T) BlobStore { return newStore(t) })
	})
	t.Run("Uploads", func(t *testing.T) { RunUploads(t, opts, newStore) })
}

// blockingReader hands out its content, then blocks until release is
// closed (a client sending slowly), after telling started once.
type blockingReader struct {
	r       io.Reader
	started chan struct{}
	release chan struct{}
	once    bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.once {
		b.once = true
		close(b.started)
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		<-b.release
	}
	return n, err
}

// RunUploads runs the upload session tests against the store newStore
// returns; each subtest gets a fresh, empty store.
func RunUploads(t *testing.T, opts Options, newStore func(t *testing.T) Store) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 3 << 20
	}
	ctx := context.Background()

	start := func(t *testing.T, s Store) storage.UploadInfo {
		t.Helper()
		u, err := s.StartUpload(ctx, "library/app", "alice")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	size := func(t *testing.T, s Store, id string) int64 {
		t.Helper()
		u, err := s.Upload(ctx, id)
		if err != nil {
			t.Fatalf("Upload(%s): %v", id, err)
		}
		return u.Size
	}

	t.Run("Chunked", func(t *testing.T) {
		third := opts.LargeSize / 3
		for _, c := range []struct {
			name   string
			size   int
			chunks []int // the last chunk goes with Commit
		}{
			{"small", 10000, []int{1, 4000, 999}},
			{"large", opts.LargeSize + 1000, []int{third, third + 7, third}},
			{"one chunk then an empty commit", 5000, []int{5000}},
		} {
			t.Run(c.name, func(t *testing.T) {
				s := newStore(t)
				u := start(t, s)
				got, err := s.Upload(ctx, u.ID)
				if err != nil || got.Size != 0 || got.Repository != "library/app" || got.Owner != "alice" || got.ID != u.ID {
					t.Fatalf("Upload of a new session = %+v, %v", got, err)
				}
				b, d := Random(t, c.size)
				off := 0
				for i, n := range c.chunks {
					from := int64(off)
					if i == 1 {
						from = -1 // a PATCH without Content-Range
					}
					n, err := s.Append(ctx, u.ID, from, bytes.NewReader(b[off:off+n]))
					off += c.chunks[i]
					if err != nil || n != int64(off) {
						t.Fatalf("Append chunk %d = %d, %v; want %d", i, n, err, off)
					}
					if got := size(t, s, u.ID); got != int64(off) {
						t.Fatalf("size after chunk %d = %d, want %d", i, got, off)
					}
				}
				var last io.Reader
				if off < len(b) {
					last = bytes.NewReader(b[off:])
				}
				if n, err := s.Commit(ctx, u.ID, d, last); err != nil || n != int64(c.size) {
					t.Fatalf("Commit = %d, %v", n, err)
				}
				assertContent(t, s, d, b)
				if _, err := s.Upload(ctx, u.ID); !errors.Is(err, storage.ErrUploadNotFound) {
					t.Fatalf("Upload after Commit: %v, want ErrUploadNotFound", err)
				}
			})
		}
	})

	t.Run("Monolithic", func(t *testing.T) {
		for _, n := range []int{0, 100, opts.LargeSize} {
			s := newStore(t)
			u := start(t, s)
			b, d := Random(t, n)
			if got, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b)); err != nil || got != int64(n) {
				t.Fatalf("Commit of %d bytes = %d, %v", n, got, err)
			}
			assertContent(t, s, d, b)
		}
	})

	t.Run("Sha512", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		b, _ := Random(t, 20000)
		d := digest.SHA512.FromBytes(b)
		if _, err := s.Append(ctx, u.ID, 0, bytes.NewReader(b[:5000])); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b[5000:])); err != nil {
			t.Fatal(err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("AlreadyStored", func(t *testing.T) {
		s := newStore(t)
		b, d := Random(t, 3000)
		if _, err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		u := start(t, s)
		if n, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b)); err != nil || n != 3000 {
			t.Fatalf("Commit of a stored blob = %d, %v", n, err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("RangeMismatch", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		b, d := Random(t, 300)
		if _, err := s.Append(ctx, u.ID, 0, bytes.NewReader(b[:100])); err != nil {
			t.Fatal(err)
		}
		for _, from := range []int64{0, 50, 101, 1 << 40} {
			n, err := s.Append(ctx, u.ID, from, bytes.NewReader(b[100:]))
			if !errors.Is(err, storage.ErrRangeMismatch) || n != 100 {
				t.Fatalf("Append at %d of a 100-byte upload = %d, %v; want 100, ErrRangeMismatch", from, n, err)
			}
		}
		if _, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b[100:])); err != nil {
			t.Fatalf("Commit after refused chunks: %v", err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("WrongDigestEndsSession", func(t *testing.T) {
		for _, n := range []int{100, opts.LargeSize} {
			s := newStore(t)
			u := start(t, s)
			b, _ := Random(t, n)
			_, claimed := Random(t, 10)
			if _, err := s.Append(ctx, u.ID, 0, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Commit(ctx, u.ID, claimed, nil); !errors.Is(err, storage.ErrDigestMismatch) {
				t.Fatalf("Commit with a wrong digest: %v, want ErrDigestMismatch", err)
			}
			if _, err := s.Stat(ctx, claimed); !errors.Is(err, storage.ErrBlobNotFound) {
				t.Fatalf("Stat after a refused Commit: %v", err)
			}
			if _, err := s.Upload(ctx, u.ID); !errors.Is(err, storage.ErrUploadNotFound) {
				t.Fatalf("Upload after a refused Commit: %v, want ErrUploadNotFound", err)
			}
			assertWalk(t, s, nil)
		}
	})

	t.Run("BadDigestKeepsSession", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		if _, err := s.Commit(ctx, u.ID, "md5:d41d8cd98f00b204e9800998ecf8427e", nil); !errors.Is(err, storage.ErrUnsupportedAlgo) {
			t.Fatalf("Commit with an md5 digest: %v, want ErrUnsupportedAlgo", err)
		}
		if _, err := s.Upload(ctx, u.ID); err != nil {
			t.Fatalf("Upload after an unsupported digest: %v", err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		b, _ := Random(t, opts.LargeSize)
		if _, err := s.Append(ctx, u.ID, 0, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := s.Cancel(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Upload(ctx, u.ID); !errors.Is(err, storage.ErrUploadNotFound) {
			t.Fatalf("Upload after Cancel: %v", err)
		}
		if _, err := s.Append(ctx, u.ID, -1, bytes.NewReader(b)); !errors.Is(err, storage.ErrUploadNotFound) {
			t.Fatalf("Append after Cancel: %v", err)
		}
		if err := s.Cancel(ctx, u.ID); !errors.Is(err, storage.ErrUploadNotFound) {
			t.Fatalf("second Cancel: %v", err)
		}
		assertWalk(t, s, nil)
	})

	t.Run("UnknownIDs", func(t *testing.T) {
		s := newStore(t)
		_, d := Random(t, 10)
		for _, id := range []string{"", "nope", "../../../etc", "00000000000000000000000000000000", "0000000000000000000000000000000g"} {
			if _, err := s.Upload(ctx, id); !errors.Is(err, storage.ErrUploadNotFound) {
				t.Errorf("Upload(%q): %v", id, err)
			}
			if _, err := s.Append(ctx, id, -1, bytes.NewReader([]byte("x"))); !errors.Is(err, storage.ErrUploadNotFound) {
				t.Errorf("Append(%q): %v", id, err)
			}
			if _, err := s.Commit(ctx, id, d, nil); !errors.Is(err, storage.ErrUploadNotFound) {
				t.Errorf("Commit(%q): %v", id, err)
			}
			if err := s.Cancel(ctx, id); !errors.Is(err, storage.ErrUploadNotFound) {
				t.Errorf("Cancel(%q): %v", id, err)
			}
		}
	})

	t.Run("OneWriterAtATime", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		b, d := Random(t, 2000)
		slow := &blockingReader{r: bytes.NewReader(b[:1000]), started: make(chan struct{}), release: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			_, err := s.Append(ctx, u.ID, 0, slow)
			done <- err
		}()
		<-slow.started
		// While the first request writes, a second is refused at once
		// without reading its body; the session is unharmed.
		if _, err := s.Append(ctx, u.ID, -1, bytes.NewReader(b[1000:])); !errors.Is(err, storage.ErrUploadBusy) {
			t.Errorf("concurrent Append: %v, want ErrUploadBusy", err)
		}
		if _, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b[1000:])); !errors.Is(err, storage.ErrUploadBusy) {
			t.Errorf("concurrent Commit: %v, want ErrUploadBusy", err)
		}
		close(slow.release)
		if err := <-done; err != nil {
			t.Fatalf("first Append: %v", err)
		}
		if n, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b[1000:])); err != nil || n != 2000 {
			t.Fatalf("Commit after the first Append = %d, %v", n, err)
		}
		assertContent(t, s, d, b)
	})

	t.Run("BrokenChunkKeepsWhatArrived", func(t *testing.T) {
		s := newStore(t)
		u := start(t, s)
		b, d := Random(t, opts.LargeSize)
		cut := opts.LargeSize / 2
		if _, err := s.Append(ctx, u.ID, 0, &failingReader{bytes.NewReader(b[:cut])}); err == nil {
			t.Fatal("Append of a chunk that broke off succeeded")
		}
		// The client asks where the upload stands and goes on from there.
		got := size(t, s, u.ID)
		if got != int64(cut) {
			t.Fatalf("size after a broken chunk = %d, want the %d bytes that arrived", got, cut)
		}
		if _, err := s.Commit(ctx, u.ID, d, bytes.NewReader(b[got:])); err != nil {
			t.Fatalf("Commit after resuming: %v", err)
		}
		assertContent(t, s, d, b)
	})
}
