package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// errAborted is what a stalled request body returns once the test lets go of
// it, after the server is dead.
var errAborted = errors.New("request body aborted by the crash test")

// stallTransport passes requests through until one matches; the body of a
// matching request is sent up to `after` bytes and then stalls until release
// is closed. The first stall calls stalled. The test thus knows, without any
// timing, that the server has received part of an upload when it kills it.
type stallTransport struct {
	base    http.RoundTripper
	match   func(*http.Request) bool
	after   int64
	stalled func()
	release <-chan struct{}
}

func (s *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || !s.match(req) {
		return s.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Body = &stallBody{rc: req.Body, left: s.after, stalled: s.stalled, release: s.release}
	return s.base.RoundTrip(r)
}

type stallBody struct {
	rc      io.ReadCloser
	left    int64
	stalled func()
	release <-chan struct{}
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.stalled()
		<-b.release
		return 0, errAborted
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *stallBody) Close() error { return b.rc.Close() }

// crashPush is one of the concurrent pushes of TestCrashDuringPushes.
type crashPush struct {
	repo  string
	img   v1.Image
	want  testutil.ImageDigests
	stall string // "", or the request that stalls: "layer" (a blob upload) or "manifest"
	err   error  // result of remote.Write
}

// TestCrashDuringPushes kills the server with SIGKILL while ten pushes are in
// flight, restarts it on the same data, and checks the promises of crash
// safety: every push that was acknowledged is whole (every blob reads back
// and hashes right), nothing of a push that was not acknowledged is visible
// as a manifest or as a partial blob, the blob store holds only complete
// blobs, and the interrupted pushes succeed when retried.
//
// Three pushes run to completion; the other seven stall on purpose halfway
// through a layer upload or a manifest PUT. The kill happens once the three
// are acknowledged and the seven are stalled, which the test knows from its
// own transport, not from timing.
//
// It runs on the defaults (the embedded database, blobs on the filesystem)
// and on PostgreSQL with blobs on S3 (a cluster of one node), where the
// bucket is checked instead of the data directory.
func TestCrashDuringPushes(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		srv := startRegistry(t)
		crashDuringPushes(t, srv, srv.CheckBlobStore)
	})
	t.Run("postgres+s3", func(t *testing.T) {
		c := startCluster(t, 1)
		crashDuringPushes(t, c.Nodes[0], c.CheckBucket)
	})
}

// crashDuringPushes is TestCrashDuringPushes on srv; checkStore checks that
// its blob store holds only complete blobs.
func crashDuringPushes(t *testing.T, srv *testutil.Server, checkStore func(testing.TB) int) {
	ctx := t.Context()
	const (
		pushes    = 10
		completes = 3
		layers    = 3
		layerSize = 3 << 19 // 1.5 MiB of random data: about 4.5 MiB per image
	)

	all := make([]*crashPush, pushes)
	for i := range all {
		p := &crashPush{repo: fmt.Sprintf("e2e/crash/image-%d", i)}
		p.img = testutil.RandomImage(t, layers, layerSize)
		p.want = testutil.DigestsOf(t, p.img)
		switch {
		case i < completes:
		case i%2 == 0:
			p.stall = "layer"
		default:
			p.stall = "manifest"
		}
		all[i] = p
	}

	// No retries: a request cut by the crash must fail its push, not be
	// replayed against the restarted server.
	noRetry := []remote.Option{
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
	release := make(chan struct{})
	reached := make(chan int, pushes) // a push finished, or stalled
	var wg sync.WaitGroup
	for i, p := range all {
		var once sync.Once
		signal := func() { once.Do(func() { reached <- i }) }
		opts := srv.RemoteOptions(ctx, noRetry...)
		if p.stall != "" {
			st := &stallTransport{base: http.DefaultTransport.(*http.Transport).Clone(), stalled: signal, release: release}
			if p.stall == "layer" {
				// Blob data goes in PATCH (streamed) or PUT (monolithic)
				// requests to the upload session; stall the layers, which
				// are far larger than `after`, not the small config.
				st.match = func(r *http.Request) bool {
					return (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/blobs/uploads/")
				}
				st.after = layerSize / 2
			} else {
				st.match = func(r *http.Request) bool {
					return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
				}
				st.after = 100
			}
			opts = append(opts, remote.WithTransport(st))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.err = remote.Write(srv.Ref(t, p.repo+":v1"), p.img, opts...)
			signal()
		}()
	}

	// Wait until every push has finished or stalled. The limit only turns a
	// hung server into a failure with a message instead of a test timeout.
	limit := time.After(5 * time.Minute)
	for range pushes {
		select {
		case <-reached:
		case <-limit:
			close(release)
			t.Fatal("pushes neither finished nor stalled within 5 minutes")
		}
	}
	srv.Kill()
	close(release)
	wg.Wait()

	var acked, cut []*crashPush
	for _, p := range all {
		switch {
		case p.err == nil:
			acked = append(acked, p)
		case p.stall == "":
			t.Errorf("push to %s failed before the crash: %v", p.repo, p.err)
		default:
			cut = append(cut, p)
		}
		if p.stall != "" && p.err == nil {
			t.Errorf("push to %s was meant to stall but succeeded", p.repo)
		}
	}
	t.Logf("killed the server with %d pushes acknowledged and %d in flight", len(acked), len(cut))

	// Right after the crash, before the server can tidy up: a blob is
	// renamed into place only once verified, so the store holds no partial
	// blob even now.
	n := checkStore(t)
	t.Logf("blob store after the crash: %d blobs, all complete", n)

	srv.Restart()
	opts := srv.RemoteOptions(ctx)
	for _, p := range acked {
		img, err := remote.Image(srv.Ref(t, p.repo+":v1"), opts...)
		if err != nil {
			t.Errorf("acknowledged push to %s lost: %v", p.repo, err)
			continue
		}
		verifyImage(t, img, p.want)
	}

	for _, p := range cut {
		pc := srv.Client(t, ctx, "repository:"+p.repo+":pull")
		x := do(t, pc, http.MethodGet, srv.URL+"/v2/"+p.repo+"/manifests/v1", nil, "Accept", "application/vnd.oci.image.manifest.v1+json")
		if x.resp.StatusCode != http.StatusNotFound {
			t.Errorf("manifest of interrupted push to %s: want 404\n%s", p.repo, x)
		}
		// Each blob of the interrupted push is either unknown or whole.
		for _, h := range append([]v1.Hash{p.want.Config}, p.want.Layers...) {
			x := do(t, pc, http.MethodGet, srv.URL+"/v2/"+p.repo+"/blobs/"+h.String(), nil)
			switch x.resp.StatusCode {
			case http.StatusNotFound:
			case http.StatusOK:
				if got := "sha256:" + sha256Hex(x.result); got != h.String() {
					t.Errorf("blob %s of interrupted push to %s serves %d bytes hashing to %s: a partial blob", h, p.repo, len(x.result), got)
				}
			default:
				x.result = x.result[:min(len(x.result), 512)]
				t.Errorf("blob %s of interrupted push to %s: want 200 or 404\n%s", h, p.repo, x)
			}
		}
	}

	// The interrupted pushes go through once retried: leftovers of the
	// crash (upload sessions, temporary files) do not get in the way.
	for _, p := range cut {
		if err := remote.Write(srv.Ref(t, p.repo+":v1"), p.img, opts...); err != nil {
			t.Errorf("retry push to %s after restart: %v", p.repo, err)
			continue
		}
		img, err := remote.Image(srv.Ref(t, p.repo+":v1"), opts...)
		if err != nil {
			t.Errorf("pull retried push to %s: %v", p.repo, err)
			continue
		}
		verifyImage(t, img, p.want)
	}

	srv.Stop()
	n = checkStore(t)
	t.Logf("blob store at the end: %d blobs, all complete", n)
}
