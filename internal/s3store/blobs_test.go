package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

func TestBlobsConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Options{LargeSize: 12 << 20}, func(t *testing.T) storagetest.Store {
		return NewBlobs(newStore(t), NewMemorySessions(), BlobsOptions{})
	})
}

// clock is a settable time for session claims.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Two nodes (two stores on one bucket) share one session table: each
// request of an upload may reach either, one at a time; a node that died
// holding a session blocks it only until its claim expires.
func TestBlobsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	b, err := New(ctx, a.Config())
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	table := NewMemorySessions()
	table.Now = clk.Now
	nodes := []*Blobs{NewBlobs(a, table, BlobsOptions{}), NewBlobs(b, table, BlobsOptions{})}
	for _, n := range nodes {
		n.now = clk.Now
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
	}

	// A node dies while writing: its claim stays in the table.
	if _, err := table.Claim(ctx, u.ID, "dead node", clk.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Append(ctx, u.ID, off, bytes.NewReader(chunks[len(chunks)-1])); !errors.Is(err, storage.ErrUploadBusy) {
		t.Fatalf("Append while another node holds the session: %v, want ErrUploadBusy", err)
	}
	if info, err := nodes[1].Upload(ctx, u.ID); err != nil || info.Size != off {
		t.Fatalf("status while busy = %+v, %v; want size %d", info, err, off)
	}
	clk.add(31 * time.Second)
	// The dead node's claim has expired; its late save must not land.
	n, err := nodes[1].Commit(ctx, u.ID, d, bytes.NewReader(chunks[len(chunks)-1]))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("Commit on node 1 = %d, %v", n, err)
	}
	if err := table.Save(ctx, u.ID, "dead node", off, UploadState{}, clk.Now()); err == nil {
		t.Fatal("a save by an expired claim succeeded")
	}
	if got := readAll(t, a, d); !bytes.Equal(got, content) {
		t.Fatal("blob committed across nodes differs")
	}
	assertNoUploadObjects(t, a)
}

// A claim is renewed while a slow request runs, so that a live request is
// never taken over.
func TestBlobsClaimRenewed(t *testing.T) {
	ctx := context.Background()
	table := NewMemorySessions()
	s := NewBlobs(newStore(t), table, BlobsOptions{ClaimTTL: 1500 * time.Millisecond})
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
		if _, err := table.Claim(ctx, u.ID, "other", time.Now().Add(time.Second)); !errors.Is(err, storage.ErrUploadBusy) {
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
