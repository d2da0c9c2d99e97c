package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testutil"
)

// newMeta opens a metadata store in a fresh embedded database.
func newMeta(t *testing.T) *meta.Store {
	t.Helper()
	md, err := meta.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	return md
}

// newBlobs is the registry's content store on s with its sessions and
// content references in a fresh embedded database.
func newBlobs(t *testing.T, s *Store, limits storage.UploadLimits) *Blobs {
	md := newMeta(t)
	return NewBlobs(s, NewDBSessions(md, limits), md, BlobsOptions{})
}

func TestBlobsConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Options{LargeSize: 12 << 20}, func(t *testing.T) storagetest.Store {
		return newBlobs(t, newStore(t), storage.UploadLimits{})
	})
}

// Two nodes (two stores on one bucket, two connections to one PostgreSQL
// database) serve the requests of one upload in turn; a node that died
// holding the session blocks it only until its claim expires, and its
// late save is refused.
func TestBlobsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b, err := New(ctx, a.Config())
	if err != nil {
		t.Fatal(err)
	}
	url := testutil.StartPostgres(t).NewDatabase()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	var tables []*meta.Store
	for range 2 {
		db, err := sqldb.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		md, err := meta.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { md.Close() })
		md.SetClock(now)
		tables = append(tables, md)
	}
	nodes := []*Blobs{
		NewBlobs(a, NewDBSessions(tables[0], storage.UploadLimits{}), tables[0], BlobsOptions{Now: now}),
		NewBlobs(b, NewDBSessions(tables[1], storage.UploadLimits{}), tables[1], BlobsOptions{Now: now}),
	}

	content, d := storagetest.Random(t, 13<<20)
	u, err := nodes[0].StartUpload(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	chunks := chunks(content, 3<<20, 1, 4<<20, 2<<20)
	off := int64(0)
	for i, c := range chunks[:len(chunks)-1] {
		n, err := nodes[(i+1)%2].Append(ctx, u.ID, off, bytes.NewReader(c))
		off += int64(len(c))
		if err != nil || n != off {
			t.Fatalf("chunk %d on node %d = %d, %v; want %d", i, (i+1)%2, n, err, off)
		}
		if info, err := nodes[i%2].Upload(ctx, u.ID); err != nil || info.Size != off {
			t.Fatalf("status on the other node = %+v, %v; want size %d", info, err, off)
		}
	}

	// A node dies while writing: its claim stays in the table.
	if _, err := tables[0].ClaimUpload(ctx, u.ID, "dead node", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Append(ctx, u.ID, off, bytes.NewReader(chunks[len(chunks)-1])); !errors.Is(err, storage.ErrUploadBusy) {
		t.Fatalf("Append while another node holds the session: %v, want ErrUploadBusy", err)
	}
	if info, err := nodes[1].Upload(ctx, u.ID); err != nil || info.Size != off {
		t.Fatalf("status while busy = %+v, %v; want size %d", info, err, off)
	}
	clock.Add(int64(31 * time.Second))
	n, err := nodes[1].Commit(ctx, u.ID, d, bytes.NewReader(chunks[len(chunks)-1]))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("Commit on node 1 after the claim expired = %d, %v", n, err)
	}
	if got := readAll(t, a, d); !bytes.Equal(got, content) {
		t.Fatal("blob committed across nodes differs")
	}
	if _, err := nodes[0].Upload(ctx, u.ID); !errors.Is(err, storage.ErrUploadNotFound) {
		t.Fatalf("status after commit on the other node = %v, want ErrUploadNotFound", err)
	}
	assertNoUploadObjects(t, a)
}

// A claim is renewed while a slow request runs, so that a live request is
// never taken over.
func TestBlobsClaimRenewed(t *testing.T) {
	ctx := context.Background()
	md := newMeta(t)
	s := NewBlobs(newStore(t), NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{ClaimTTL: 1500 * time.Millisecond})
	u, err := s.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	r := &gatedReader{data: []byte("first bytes"), gate: release, started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, u.ID, 0, r)
		done <- err
	}()
	<-r.started
	// Several claim lifetimes pass while the request is still reading.
	for range 4 {
		time.Sleep(time.Second)
		if _, err := md.ClaimUpload(ctx, u.ID, "other", time.Second); !errors.Is(err, meta.ErrUploadBusy) {
			t.Fatalf("a live request's session was claimed by another: %v", err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Upload(ctx, u.ID); info.Size != int64(len("first bytes")) {
		t.Fatalf("size = %d", info.Size)
	}
}

// The caps on open sessions are counted in the database.
func TestBlobsUploadCaps(t *testing.T) {
	ctx := context.Background()
	s := newBlobs(t, newStore(t), storage.UploadLimits{PerIdentity: 2})
	var ids []string
	for range 2 {
		u, err := s.StartUpload(ctx, "r", "alice")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	var many *storage.TooManyUploadsError
	if _, err := s.StartUpload(ctx, "r", "alice"); !errors.As(err, &many) {
		t.Fatalf("third session = %v, want TooManyUploadsError", err)
	}
	if err := s.Cancel(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartUpload(ctx, "r", "alice"); err != nil {
		t.Fatalf("session after a cancel = %v", err)
	}
}

type gatedReader struct {
	data    []byte
	gate    chan struct{}
	started chan struct{}
	sent    bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if !g.sent {
		g.sent = true
		close(g.started)
		return copy(p, g.data), nil
	}
	<-g.gate
	return 0, io.EOF
}

// A push that arrives while garbage collection (on any node) is deleting
// its content waits for the deletion to end, then stores the content
// again, instead of finding the doomed object and linking it.
func TestPushWaitsForCollection(t *testing.T) {
	ctx := context.Background()
	md := newMeta(t)
	s := NewBlobs(newStore(t), NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{})
	content, d := storagetest.Random(t, 1000)
	if _, err := s.Store.Put(ctx, d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	// blocked runs push while a collection holds its mark on the
	// content, checks that it waits, then lets the collection finish.
	blocked := func(name string, push func() error, finish func(mark time.Time)) {
		t.Helper()
		mark, ok, err := md.MarkContentDeleting(ctx, d, time.Now().Add(time.Hour))
		if err != nil || !ok {
			t.Fatalf("mark = %v, %v", ok, err)
		}
		done := make(chan error, 1)
		go func() { done <- push() }()
		select {
		case err := <-done:
			t.Fatalf("%s went ahead while the content was being deleted: %v", name, err)
		case <-time.After(300 * time.Millisecond):
		}
		finish(mark)
		if err := <-done; err != nil {
			t.Fatalf("%s after the collection: %v", name, err)
		}
	}
	// The collection deletes the object: the push stores it again.
	blocked("monolithic push", func() error {
		_, err := s.PutSized(ctx, d, 1000, bytes.NewReader(content))
		return err
	}, func(mark time.Time) {
		if err := s.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := md.ForgetContent(ctx, d, mark); err != nil {
			t.Fatal(err)
		}
	})
	if got := readAll(t, s.Store, d); !bytes.Equal(got, content) {
		t.Fatal("the push did not store the content again")
	}
	// The collection spares the object (found it young): the mount
	// goes ahead and finds it.
	blocked("mount", func() error { return s.Touch(ctx, d) }, func(mark time.Time) {
		if err := md.ForgetContent(ctx, d, mark); err != nil {
			t.Fatal(err)
		}
	})
}

// A request whose claim was taken over while it still wrote (its node
// stalled past the claim's expiry) can neither save its state nor change
// the objects the new holder's state describes: the upload commits the
// bytes the new holder saved.
func TestStalledWriterCannotCorruptUpload(t *testing.T) {
	ctx := context.Background()
	md := newMeta(t)
	st := newStore(t)
	// A's claim would be renewed only after a minute: the test takes its
	// session over before that.
	a := NewBlobs(st, NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{ClaimTTL: 3 * time.Minute})
	b := NewBlobs(st, NewDBSessions(md, storage.UploadLimits{}), md, BlobsOptions{})
	content, d := storagetest.Random(t, 1600)
	u, err := a.StartUpload(ctx, "r", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, u.ID, 0, bytes.NewReader(content[:100])); err != nil {
		t.Fatal(err)
	}
	stalled := &gatedReader{data: bytes.Repeat([]byte("x"), 500), gate: make(chan struct{}), started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := a.Append(ctx, u.ID, 100, stalled)
		done <- err
	}()
	<-stalled.started
	// A's claim expires; B takes the session over and appends.
	if _, err := md.DB().ExecContext(ctx, `UPDATE uploads SET claimed_until = 0 WHERE id = ?`, u.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Append(ctx, u.ID, 100, bytes.NewReader(content[100:600])); err != nil || n != 600 {
		t.Fatalf("takeover Append = %d, %v", n, err)
	}
	close(stalled.gate) // A goes on writing, too late
	if err := <-done; !errors.Is(err, storage.ErrUploadBusy) {
		t.Fatalf("stalled Append = %v, want ErrUploadBusy", err)
	}
	if n, err := b.Commit(ctx, u.ID, d, bytes.NewReader(content[600:])); err != nil || n != 1600 {
		t.Fatalf("Commit = %d, %v", n, err)
	}
	if got := readAll(t, st, d); !bytes.Equal(got, content) {
		t.Fatal("the stalled writer changed the committed content")
	}
}
