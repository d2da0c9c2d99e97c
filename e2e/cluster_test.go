package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-registry/berth/internal/testutil"
)

// startCluster starts a cluster of n berth nodes on PostgreSQL and S3
// behind HAProxy (testutil.StartCluster), for berth only.
func startCluster(t *testing.T, n int) *testutil.Cluster {
	t.Helper()
	requireE2E(t)
	if r := os.Getenv("BERTH_E2E_REGISTRY"); r != "" && r != testutil.KindBerth {
		t.Skip("a cluster of berth nodes on PostgreSQL and S3 is berth's only")
	}
	return testutil.StartCluster(t, n, testutil.WithArgs("--login-failure-threshold", "1000"))
}

// bearer asks node's token endpoint, with Basic credentials, for a token of
// scope, as a client does after the challenge of GET /v2/. It returns the
// status and, on 200, the token.
func bearer(t *testing.T, node *testutil.Server, user, pass, scope string) (int, string) {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {scope}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, node.URL+"/oauth2/token?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token endpoint of %s: %v", node.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token endpoint of %s: %v", node.Host, err)
	}
	if body.Token == "" {
		body.Token = body.AccessToken
	}
	return resp.StatusCode, body.Token
}

// withBearer sends GET path to node with the bearer token and returns the
// status.
func withBearer(t *testing.T, node *testutil.Server, tok, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, node.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, node.Host, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pushWithRetries pushes img to ref the way a client that retries does:
// the whole push again after a failure, up to attempts times. It returns
// how many attempts failed.
func pushWithRetries(t *testing.T, srv *testutil.Server, ref string, p *crashPush, attempts int) (int, error) {
	var err error
	for i := range attempts {
		if err = remote.Write(srv.Ref(t, ref), p.img, srv.RemoteOptions(t.Context())...); err == nil {
			return i, nil
		}
	}
	return attempts, err
}

// TestCluster runs three berth nodes on one PostgreSQL database and one S3
// bucket behind a load balancer that sends each request to the next node,
// as docs/deploy.md describes: real clients push and pull through it (the
// chunks of one upload land on different nodes), identity changes made on
// one node hold on the others at their next request, garbage collection on
// one node and a kill -9 of another lose nothing acknowledged, and an
// outage of PostgreSQL turns credential checks into 503 (never a stale
// allow) until it is back. The subtests share the cluster and run in order.
func TestCluster(t *testing.T) {
	c := startCluster(t, 3)
	ctx := t.Context()
	front := c.Front
	cli := newBerthCLI(t, c.Nodes[0])
	cli2 := newBerthCLI(t, c.Nodes[1])

	t.Run("Docker", func(t *testing.T) {
		d := testutil.StartDockerd(t)
		d.Login(front)
		ref := front.Host + "/cluster/docker:v1"
		id := strings.TrimSpace(d.MustRun("import", testutil.RootfsTarball(t, 4<<20), ref))
		out := d.MustRun("push", ref)
		m := pushDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		for i, node := range c.Nodes {
			desc, err := remote.Head(node.Ref(t, "cluster/docker:v1"), node.RemoteOptions(ctx)...)
			if err != nil || desc.Digest.String() != m[1] {
				t.Errorf("node %d: HEAD = %v, %v; want %s", i+1, desc, err, m[1])
			}
		}
		d.MustRun("rmi", ref)
		d.MustRun("pull", ref)
		if got := strings.TrimSpace(d.MustRun("image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Errorf("pulled image ID = %s, want %s", got, id)
		}
	})

	t.Run("PodmanAndSkopeo", func(t *testing.T) {
		pm := testutil.NewPodman(t)
		sk := testutil.NewSkopeo(t)
		pm.Login(front)
		sk.Login(front)
		img := testutil.RandomImage(t, 3, 2<<20)
		want := testutil.DigestsOf(t, img)
		dir := testutil.WriteOCILayout(t, img, "v1")

		ref := front.Host + "/cluster/skopeo:v1"
		sk.MustRun("copy", "--dest-tls-verify=false", "oci:"+dir+":v1", "docker://"+ref)
		id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "--tls-verify=false", ref))
		if id != want.Config.Hex {
			t.Errorf("podman pulled image ID %q, want %s", id, want.Config.Hex)
		}
		copied := front.Host + "/cluster/podman:v1"
		pm.MustRun("tag", id, copied)
		pm.MustRun("push", "--tls-verify=false", copied)
		back := t.TempDir() + "/back"
		sk.MustRun("copy", "--src-tls-verify=false", "docker://"+copied, "oci:"+back+":v1")
		got := testutil.DigestsOf(t, testutil.ReadOCILayout(t, back, "v1"))
		if got.Config != want.Config || !equalHashes(got.DiffIDs, want.DiffIDs) {
			t.Errorf("copied back config %s, diff IDs %v; want %s, %v", got.Config, got.DiffIDs, want.Config, want.DiffIDs)
		}
	})

	t.Run("ChunksOnEveryNode", func(t *testing.T) {
		// Seven chunks, the POST and the PUT: nine requests in turn over
		// three nodes, so every node takes part of the one upload.
		hc := front.Client(t, ctx, "repository:cluster/chunks:pull,push")
		content := randomBytes(t, 7<<20+5)
		d := blobUpload(t, front, hc, "cluster/chunks", content, 1<<20)
		for i, node := range c.Nodes {
			nc := node.Client(t, ctx, "repository:cluster/chunks:pull")
			x := do(t, nc, http.MethodGet, node.URL+"/v2/cluster/chunks/blobs/"+d.String(), nil)
			if x.resp.StatusCode != http.StatusOK || "sha256:"+sha256Hex(x.result) != d.String() {
				t.Errorf("node %d: GET blob %s: %s, %d bytes", i+1, d, x.resp.Status, len(x.result))
			}
		}
	})

	t.Run("DisabledTokenRefusedEverywhere", func(t *testing.T) {
		tok := cli.createToken("cluster-revoke", "--repository", "cluster/revoke", "content/read", "content/write")
		pw := tok.password["password1"]
		const scope = "repository:cluster/revoke:pull"
		const path = "/v2/cluster/revoke/manifests/v1"
		status, issued := bearer(t, c.Nodes[1], tok.name, pw, scope)
		if status != http.StatusOK {
			t.Fatalf("token from node 2 before the change: %d", status)
		}
		// A token issued by one node is good on another: the signing
		// keys are shared. 404: the repository has no such manifest.
		if got := withBearer(t, c.Nodes[2], issued, path); got != http.StatusNotFound {
			t.Fatalf("node 3 with node 2's token before the change: %d, want 404", got)
		}

		cli.must("token", "update", "-n", tok.name, "--status", "disabled")
		for i, node := range c.Others(0) {
			if got := withBearer(t, node, issued, path); got != http.StatusUnauthorized {
				t.Errorf("node %d, the issued token, right after the change on node 1: %d, want 401", i+2, got)
			}
			if got, _ := bearer(t, node, tok.name, pw, scope); got != http.StatusUnauthorized {
				t.Errorf("node %d, a new login, right after the change on node 1: %d, want 401", i+2, got)
			}
		}
	})

	t.Run("ShrunkScopeMapDeniesEverywhere", func(t *testing.T) {
		cli.must("scope-map", "create", "-n", "cluster-shrink", "--repository", "cluster/shrink", "content/read", "content/write")
		tok := cli.createToken("cluster-shrink", "--scope-map", "cluster-shrink")
		as := c.Nodes[2].As(tok.name, tok.password["password1"])
		img := testutil.RandomImage(t, 1, 64<<10)
		if err := remote.Write(as.Ref(t, "cluster/shrink:v1"), img, as.RemoteOptions(ctx)...); err != nil {
			t.Fatalf("push through node 3 before the change: %v", err)
		}
		cli2.must("scope-map", "update", "-n", "cluster-shrink", "--remove-repository", "cluster/shrink", "content/write")
		err := remote.Write(as.Ref(t, "cluster/shrink:v2"), testutil.RandomImage(t, 1, 64<<10), as.RemoteOptions(ctx)...)
		var terr *transport.Error
		if !errors.As(err, &terr) || (terr.StatusCode != http.StatusForbidden && terr.StatusCode != http.StatusUnauthorized) {
			t.Fatalf("push through node 3 after the scope map lost content/write on node 2: %v, want denied", err)
		}
		if got := ownerManifest(t, c.Nodes[0], "cluster/shrink:v2"); got != "" {
			t.Errorf("the denied push left a manifest %s", got)
		}
		if _, err := remote.Image(as.Ref(t, "cluster/shrink:v1"), as.RemoteOptions(ctx)...); err != nil {
			t.Errorf("pull, which the scope map still grants, through node 3: %v", err)
		}
	})

	t.Run("GarbageCollectionDuringPushes", func(t *testing.T) {
		// Garbage for the collection to find: an image whose only tag is
		// deleted.
		old := testutil.RandomImage(t, 2, 256<<10)
		oldRef := front.Ref(t, "cluster/gc/old:v1")
		if err := remote.Write(oldRef, old, front.RemoteOptions(ctx)...); err != nil {
			t.Fatal(err)
		}
		if err := remote.Delete(front.Digest(t, "cluster/gc/old", testutil.DigestsOf(t, old).Manifest.String()), front.RemoteOptions(ctx)...); err != nil {
			t.Fatal(err)
		}

		const pushes = 8
		all := make([]*crashPush, pushes)
		for i := range all {
			all[i] = &crashPush{repo: fmt.Sprintf("cluster/gc/image-%d", i), img: testutil.RandomImage(t, 2, 512<<10)}
			all[i].want = testutil.DigestsOf(t, all[i].img)
		}
		done := make(chan struct{})
		gcErr := make(chan error, 1)
		runs := 0
		go func() {
			// At least one run, and more while the pushes last.
			for {
				if _, _, err := cli.run("gc", "--grace-period", "1m"); err != nil {
					gcErr <- err
					return
				}
				runs++
				select {
				case <-done:
					gcErr <- nil
					return
				default:
				}
			}
		}()
		var wg sync.WaitGroup
		for i, p := range all {
			node := c.Nodes[1+i%2] // nodes 2 and 3; node 1 collects
			wg.Go(func() { p.err = remote.Write(node.Ref(t, p.repo+":v1"), p.img, node.RemoteOptions(ctx)...) })
		}
		wg.Wait()
		close(done)
		if err := <-gcErr; err != nil {
			t.Fatalf("gc on node 1: %v", err)
		}
		t.Logf("%d collections ran on node 1 during %d pushes", runs, pushes)
		for _, p := range all {
			if p.err != nil {
				t.Errorf("push to %s during the collection: %v", p.repo, p.err)
				continue
			}
			for i, node := range c.Nodes {
				img, err := remote.Image(node.Ref(t, p.repo+":v1"), node.RemoteOptions(ctx)...)
				if err != nil {
					t.Errorf("node %d: %s lost: %v", i+1, p.repo, err)
					continue
				}
				verifyImage(t, img, p.want)
			}
		}
	})

	t.Run("KillNodeDuringPushes", func(t *testing.T) {
		const (
			pushes  = 12
			workers = 3
			killAt  = 3 // acknowledged pushes before the kill
		)
		all := make([]*crashPush, pushes)
		for i := range all {
			all[i] = &crashPush{repo: fmt.Sprintf("cluster/kill/image-%d", i), img: testutil.RandomImage(t, 3, 1<<20)}
			all[i].want = testutil.DigestsOf(t, all[i].img)
		}
		queue := make(chan *crashPush, pushes)
		for _, p := range all {
			queue <- p
		}
		close(queue)
		acked := make(chan struct{}, pushes)
		var failed atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for p := range queue {
					n, err := pushWithRetries(t, front, p.repo+":v1", p, 5)
					failed.Add(int64(n))
					if p.err = err; err == nil {
						acked <- struct{}{}
					}
				}
			})
		}
		for range killAt {
			<-acked
		}
		c.Nodes[1].Kill()
		wg.Wait()
		for _, p := range all {
			if p.err != nil {
				t.Errorf("push to %s, retried, did not complete with node 2 dead: %v", p.repo, p.err)
			}
		}
		t.Logf("killed node 2 after %d of %d pushes; %d whole pushes failed and were retried (requests cut by the kill are retried by HAProxy and the client first)", killAt, pushes, failed.Load())
		c.Nodes[1].Restart()
		for _, p := range all {
			if p.err != nil {
				continue
			}
			for i, node := range c.Nodes {
				img, err := remote.Image(node.Ref(t, p.repo+":v1"), node.RemoteOptions(ctx)...)
				if err != nil {
					t.Errorf("node %d: acknowledged push to %s lost: %v", i+1, p.repo, err)
					continue
				}
				verifyImage(t, img, p.want)
			}
		}
		t.Logf("bucket: %d blobs, all complete", c.CheckBucket(t))
	})

	t.Run("DatabaseOutage", func(t *testing.T) {
		tok := cli.createToken("cluster-outage", "--repository", "cluster/outage", "content/read")
		pw := tok.password["password1"]
		const scope = "repository:cluster/outage:pull"
		const path = "/v2/cluster/outage/manifests/v1"
		status, issued := bearer(t, c.Nodes[0], tok.name, pw, scope)
		if status != http.StatusOK {
			t.Fatalf("token before the outage: %d", status)
		}

		c.PG.Stop()
		for i, node := range c.Nodes {
			if got, _ := bearer(t, node, tok.name, pw, scope); got != http.StatusServiceUnavailable {
				t.Errorf("node %d, a login while PostgreSQL is down: %d, want 503", i+1, got)
			}
			if got := withBearer(t, node, issued, path); got != http.StatusServiceUnavailable {
				t.Errorf("node %d, an issued token while PostgreSQL is down: %d, want 503", i+1, got)
			}
		}
		time.Sleep(3 * time.Second) // an outage of a few seconds, not a blip
		for i, node := range c.Nodes {
			if got := withBearer(t, node, issued, path); got != http.StatusServiceUnavailable {
				t.Errorf("node %d, an issued token seconds into the outage: %d, want 503", i+1, got)
			}
		}
		c.PG.Start()
		c.WaitReady(ctx, 2*time.Minute)
		for i, node := range c.Nodes {
			// A node may answer 503 a little longer while it reconnects;
			// the limit only bounds how long it may take to recover.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				got, _ := bearer(t, node, tok.name, pw, scope)
				if got == http.StatusOK {
					break
				}
				if got != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("node %d, a login after the outage: %d, want 200", i+1, got)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := withBearer(t, node, issued, path); got != http.StatusNotFound {
				t.Errorf("node %d, the issued token after the outage: %d, want 404 (no such manifest)", i+1, got)
			}
		}
	})
}
