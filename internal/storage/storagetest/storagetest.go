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
