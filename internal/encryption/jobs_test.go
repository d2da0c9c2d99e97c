package encryption_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

// Rotation rewraps every data key with the new version while reads go on,
// without rewriting content: afterwards the old version can be removed
// from the key file and everything still reads.
func TestRotateOnlineThenOldVersionRemoved(t *testing.T) {
	ctx := context.Background()
	e, root, s := newFS(t)
	contents := map[digest.Digest][]byte{}
	for range 20 {
		b, _ := storagetest.Random(t, 70000)
		contents[put(t, s, b)] = b
	}
	before := map[digest.Digest][]byte{}
	for d := range contents {
		raw, err := os.ReadFile(blobFile(root, d))
		if err != nil {
			t.Fatal(err)
		}
		before[d] = raw
	}

	stop := make(chan struct{})
	var reads, failures atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for d, want := range contents {
				got, err := readAll(s, d)
				if err != nil || !bytes.Equal(got, want) {
					failures.Add(1)
				}
				reads.Add(1)
			}
		}
	}()
	v, err := e.keys.Rotate(ctx, 0)
	if err != nil || v != 2 {
		t.Fatalf("Rotate = %d, %v; want version 2", v, err)
	}
	n, err := e.keys.Rewrap(ctx)
	if err != nil || n != len(contents) {
		t.Fatalf("Rewrap = %d, %v; want %d", n, err, len(contents))
	}
	close(stop)
	wg.Wait()
	if failures.Load() > 0 || reads.Load() == 0 {
		t.Fatalf("%d of %d reads during rotation failed", failures.Load(), reads.Load())
	}
	st, err := e.keys.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 2 || st.Rewrapping != 0 || len(st.Versions) != 2 || st.Versions[1].DataKeys != int64(len(contents)) || st.Versions[0].DataKeys != 0 {
		t.Fatalf("status after rotation: %+v", st)
	}
	for d, raw := range before {
		now, err := os.ReadFile(blobFile(root, d))
		if err != nil || !bytes.Equal(now, raw) {
			t.Fatalf("rotation rewrote the content of %s", d)
		}
	}

	// Version 1 leaves the file; a fresh keyring (a restarted node) reads
	// everything with version 2 alone.
	kf, err := os.ReadFile(e.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(kf), "\n") {
		if !strings.HasPrefix(line, "1 ") {
			kept = append(kept, line)
		}
	}
	if err := os.WriteFile(e.keyPath, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := storage.OpenFS(root)
	if err != nil {
		t.Fatal(err)
	}
	fresh := encryption.NewBlobs(fs, e.openKeyring(t))
	if err := fresh.Keyring().Err(); err != nil {
		t.Fatalf("keyring with version 2 alone: %v", err)
	}
	for d, want := range contents {
		got, err := readAll(testStore{fresh, fs}, d)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s after version 1 was removed: %v", d, err)
		}
	}
	// A rotation to a version that is not newer is refused.
	if _, err := e.keys.Rotate(ctx, 2); err == nil {
		t.Fatal("rotation to the current version succeeded")
	}
}

// Content stored before encryption was on is encrypted in the background,
// resumably; it reads the same before, during and after.
func TestEncryptExisting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	root := t.TempDir()
	fs, err := storage.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[digest.Digest][]byte{}
	for range 6 {
		b, _ := storagetest.Random(t, 150000)
		contents[put(t, fsDeleter{fs}, b)] = b
	}
	// A run that fails at the third blob goes on from there the next time.
	flaky := &failingFS{FS: fs, failAt: 3}
	s := encryption.NewBlobs(flaky, e.keys)
	if err := s.EncryptExisting(ctx); err == nil {
		t.Fatal("EncryptExisting over a failing store succeeded")
	}
	st, err := e.keys.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Existing == nil || st.Existing.Done || st.Existing.Checked != 2 {
		t.Fatalf("progress after a failure at the third blob: %+v", st.Existing)
	}
	flaky.failAt, flaky.opens = 0, 0
	if err := s.EncryptExisting(ctx); err != nil {
		t.Fatal(err)
	}
	if flaky.opens != len(contents)-2 {
		t.Fatalf("the second run opened %d blobs, want the %d left", flaky.opens, len(contents)-2)
	}
	st, err = e.keys.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Existing == nil || !st.Existing.Done || st.Existing.Encrypted != int64(len(contents)) || st.Existing.Bytes != int64(150000*len(contents)) {
		t.Fatalf("progress after encrypting: %+v", st.Existing)
	}
	for d, want := range contents {
		raw, err := os.ReadFile(blobFile(root, d))
		if err != nil || !bytes.HasPrefix(raw, []byte("BERTHENC")) {
			t.Fatalf("%s not sealed: %v", d, err)
		}
		got, err := readAll(testStore{s, fs}, d)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s after encrypting: %v", d, err)
		}
	}
}

// failingFS fails the failAt-th Open (none if 0) and counts them.
type failingFS struct {
	*storage.FS
	failAt, opens int
}

func (f *failingFS) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	f.opens++
	if f.opens == f.failAt {
		return nil, errors.New("disk on fire")
	}
	return f.FS.Open(ctx, d)
}
