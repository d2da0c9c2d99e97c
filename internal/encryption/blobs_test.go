package encryption_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testutil"
)

// env is an encrypted store's parts: its key file, database and keyring.
type env struct {
	keyPath string
	db      *sqldb.DB
	md      *meta.Store
	keys    *encryption.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{keyPath: filepath.Join(dir, "kek")}
	if err := encryption.GenerateKeyFile(e.keyPath); err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	e.md, e.db = md, md.Database()
	e.keys = e.openKeyring(t)
	return e
}

func (e *env) openKeyring(t *testing.T) *encryption.Keyring {
	t.Helper()
	ctx := context.Background()
	if err := encryption.Migrate(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	p, err := encryption.OpenKeyFile(e.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	k, err := encryption.OpenKeyring(ctx, e.db, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testStore gives the suite its Delete.
type testStore struct {
	*encryption.Blobs
	inner encryption.Inner
}

func (s testStore) Delete(ctx context.Context, d digest.Digest) error {
	if del, ok := s.inner.(interface {
		Delete(context.Context, digest.Digest) error
	}); ok {
		return del.Delete(ctx, d)
	}
	_, err := s.DeleteIfUntouched(d, time.Now().Add(time.Hour))
	return err
}

// newFS is an encrypted filesystem store and the directory it is in.
func newFS(t *testing.T) (*env, string, testStore) {
	t.Helper()
	e := newEnv(t)
	root := t.TempDir()
	fs, err := storage.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return e, root, testStore{encryption.NewBlobs(fs, e.keys), fs}
}

func TestConformanceFS(t *testing.T) {
	storagetest.Run(t, storagetest.Options{}, func(t *testing.T) storagetest.Store {
		_, _, s := newFS(t)
		return s
	})
}

func newS3(t *testing.T, e *env) *s3store.Blobs {
	t.Helper()
	srv := testutil.StartS3(t)
	bucket := srv.NewBucket()
	srv.SetEnv(t)
	cfg, err := s3store.ParseURL(srv.URL(bucket, "reg") + "&part-size=5MiB")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s3store.NewBlobs(st, s3store.NewDBSessions(e.md, storage.UploadLimits{}), e.md, s3store.BlobsOptions{})
}

func TestConformanceS3(t *testing.T) {
	storagetest.Run(t, storagetest.Options{LargeSize: 12 << 20}, func(t *testing.T) storagetest.Store {
		e := newEnv(t)
		inner := newS3(t, e)
		return testStore{encryption.NewBlobs(inner, e.keys), inner}
	})
}

func put(t *testing.T, s storagetest.BlobStore, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func blobFile(root string, d digest.Digest) string {
	return filepath.Join(root, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

func readAll(s storagetest.BlobStore, d digest.Digest) ([]byte, error) {
	f, err := s.Open(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// The file on disk is ciphertext: no run of the content appears in it,
// and it starts with the header.
func TestStoredFormIsCiphertext(t *testing.T) {
	_, root, s := newFS(t)
	content := bytes.Repeat([]byte("plaintext layer content "), 10000)
	d := put(t, s, content)
	raw, err := os.ReadFile(blobFile(root, d))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("BERTHENC")) || bytes.Contains(raw, []byte("plaintext layer")) {
		t.Fatalf("stored file is not sealed (%d bytes, starts %q)", len(raw), raw[:16])
	}
	if int64(len(raw)) != encryption.CipherSize(int64(len(content)), encryption.SegmentSize) {
		t.Fatalf("stored size %d, want %d", len(raw), encryption.CipherSize(int64(len(content)), encryption.SegmentSize))
	}
	if n, err := s.Stat(context.Background(), d); err != nil || n != int64(len(content)) {
		t.Fatalf("Stat = %d, %v; want the content's size %d", n, err, len(content))
	}
}

// Every way of changing the stored form is detected when it is read: a
// flipped bit, a blob cut short at a segment boundary, segments swapped,
// another blob's object put in its place.
func TestTamperedCiphertextIsDetected(t *testing.T) {
	seg := encryption.SegmentSize
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		change func(raw, other []byte) []byte
	}{
		{"flipped bit in the first segment", func(raw, _ []byte) []byte { raw[40] ^= 1; return raw }},
		{"flipped bit in the tag of the last segment", func(raw, _ []byte) []byte { raw[len(raw)-1] ^= 0x80; return raw }},
		{"flipped bit in the salt", func(raw, _ []byte) []byte { raw[20] ^= 1; return raw }},
		{"cut at a segment boundary", func(raw, _ []byte) []byte { return raw[:32+2*(seg+16)] }},
		{"segments swapped", func(raw, _ []byte) []byte {
			a, b := raw[32:32+seg+16], raw[32+seg+16:32+2*(seg+16)]
			out := append([]byte(nil), raw[:32]...)
			out = append(out, b...)
			out = append(out, a...)
			return append(out, raw[32+2*(seg+16):]...)
		}},
		{"another blob's object", func(_, other []byte) []byte { return other }},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, root, s := newFS(t)
			content, _ := storagetest.Random(t, 3*seg+100)
			other, _ := storagetest.Random(t, 3*seg+100)
			d := put(t, s, content)
			od := put(t, s, other)
			raw, err := os.ReadFile(blobFile(root, d))
			if err != nil {
				t.Fatal(err)
			}
			oraw, err := os.ReadFile(blobFile(root, od))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blobFile(root, d), c.change(raw, oraw), 0o640); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(s, d)
			if err == nil {
				t.Fatalf("read of a changed object succeeded (%d bytes, equal: %v)", len(got), bytes.Equal(got, content))
			}
			if !errors.Is(err, encryption.ErrTampered) {
				t.Fatalf("read of a changed object: %v, want ErrTampered", err)
			}
			// fsck's reader fails the same way.
			rc, _, err := s.ReadBlob(ctx, d)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if !errors.Is(err, encryption.ErrTampered) {
				t.Fatalf("ReadBlob of a changed object: %v, want ErrTampered", err)
			}
		})
	}
}

// Reads at every offset that matters (segment boundaries, the last byte)
// return the content's bytes, whatever the content's size.
func TestRangesAcrossSegments(t *testing.T) {
	seg := encryption.SegmentSize
	_, _, s := newFS(t)
	for _, size := range []int{0, 1, seg - 1, seg, seg + 1, 2 * seg, 3*seg + 7} {
		content, _ := storagetest.Random(t, size)
		d := put(t, s, content)
		f, err := s.Open(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int{0, 1, seg - 1, seg, seg + 1, 2*seg - 3, size - 1, size} {
			if off < 0 || off > size {
				continue
			}
			for _, n := range []int{1, 5, seg + 2} {
				n = min(n, size-off)
				if _, err := f.Seek(int64(off), io.SeekStart); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, n)
				if _, err := io.ReadFull(f, got); err != nil {
					t.Fatalf("size %d: read %d at %d: %v", size, n, off, err)
				}
				if !bytes.Equal(got, content[off:off+n]) {
					t.Fatalf("size %d: read %d at %d: wrong bytes", size, n, off)
				}
			}
		}
		f.Close()
	}
}

// Without its key the store refuses content (ErrKeyUnavailable) and
// changes nothing; with the key back it serves again.
func TestKeyUnavailableThenBack(t *testing.T) {
	ctx := context.Background()
	e, _, s := newFS(t)
	content, _ := storagetest.Random(t, 100000)
	d := put(t, s, content)
	u, err := s.StartUpload(ctx, "library/app", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, u.ID, 0, bytes.NewReader(content[:1000])); err != nil {
		t.Fatal(err)
	}

	hidden := e.keyPath + ".away"
	if err := os.Rename(e.keyPath, hidden); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Check(ctx); !errors.Is(err, encryption.ErrKeyUnavailable) {
		t.Fatalf("Check without the key file: %v", err)
	}
	if _, err := s.Open(ctx, d); !errors.Is(err, storage.ErrKeyUnavailable) {
		t.Fatalf("Open without the key: %v, want ErrKeyUnavailable", err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, storage.ErrKeyUnavailable) {
		t.Fatalf("Stat without the key: %v", err)
	}
	other, od := storagetest.Random(t, 500)
	if _, err := s.Put(ctx, od, bytes.NewReader(other)); !errors.Is(err, storage.ErrKeyUnavailable) {
		t.Fatalf("Put without the key: %v", err)
	}
	if _, err := s.Commit(ctx, u.ID, d, bytes.NewReader(content[1000:])); !errors.Is(err, storage.ErrKeyUnavailable) {
		t.Fatalf("Commit without the key: %v", err)
	}

	if err := os.Rename(hidden, e.keyPath); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Check(ctx); err != nil {
		t.Fatalf("Check with the key back: %v", err)
	}
	if got, err := readAll(s, d); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read with the key back: %v", err)
	}
	// The session survived: it commits now.
	if n, err := s.Commit(ctx, u.ID, d, bytes.NewReader(content[1000:])); err != nil || n != int64(len(content)) {
		t.Fatalf("Commit with the key back = %d, %v", n, err)
	}
}

// A key file holding another key is refused: its keys would unwrap
// nothing, and wrapping new data keys with it would split the registry.
func TestWrongKeyIsUnavailable(t *testing.T) {
	ctx := context.Background()
	e, _, s := newFS(t)
	d := put(t, s, []byte("content"))
	other := filepath.Join(t.TempDir(), "other")
	if err := encryption.GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	p, err := encryption.OpenKeyFile(other)
	if err != nil {
		t.Fatal(err)
	}
	k, err := encryption.OpenKeyring(ctx, e.db, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Err(); !errors.Is(err, encryption.ErrKeyUnavailable) {
		t.Fatalf("keyring with another key: %v, want ErrKeyUnavailable", err)
	}
	if _, err := k.DataKey(ctx, d, false); !errors.Is(err, encryption.ErrKeyUnavailable) {
		t.Fatalf("DataKey with another key: %v", err)
	}
}

// Content stored before encryption was turned on reads as it is.
func TestPlaintextFromBeforeReads(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	root := t.TempDir()
	fs, err := storage.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := storagetest.Random(t, 200000)
	d := put(t, fsDeleter{fs}, content)
	s := encryption.NewBlobs(fs, e.keys)
	if n, err := s.Stat(ctx, d); err != nil || n != int64(len(content)) {
		t.Fatalf("Stat of plaintext = %d, %v", n, err)
	}
	f, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(*os.File); !ok {
		t.Errorf("plaintext opens as %T, want *os.File (sendfile)", f)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read plaintext: %v", err)
	}
}

type fsDeleter struct{ *storage.FS }

func (f fsDeleter) Delete(context.Context, digest.Digest) error { return nil }

// newPostgresEnv is an env on a fresh PostgreSQL database.
func newPostgresEnv(t *testing.T, url string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{keyPath: filepath.Join(dir, "kek")}
	if err := encryption.GenerateKeyFile(e.keyPath); err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	e.md, e.db = md, db
	e.keys = e.openKeyring(t)
	return e
}

// The suite passes over S3 with the data keys (and the upload sessions) in
// PostgreSQL, as a cluster runs; a rotation there rewraps every data key.
func TestConformanceS3Postgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	storagetest.Run(t, storagetest.Options{LargeSize: 12 << 20}, func(t *testing.T) storagetest.Store {
		e := newPostgresEnv(t, pg.NewDatabase())
		inner := newS3(t, e)
		return testStore{encryption.NewBlobs(inner, e.keys), inner}
	})
	t.Run("Rotate", func(t *testing.T) {
		ctx := context.Background()
		e := newPostgresEnv(t, pg.NewDatabase())
		inner := newS3(t, e)
		s := testStore{encryption.NewBlobs(inner, e.keys), inner}
		want := map[digest.Digest][]byte{}
		for range 5 {
			b, _ := storagetest.Random(t, 100000)
			want[put(t, s, b)] = b
		}
		if _, err := e.keys.Rotate(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if n, err := e.keys.Rewrap(ctx); err != nil || n != len(want) {
			t.Fatalf("Rewrap = %d, %v", n, err)
		}
		for d, b := range want {
			got, err := readAll(s, d)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("read %s after rotation: %v", d, err)
			}
		}
	})
}
