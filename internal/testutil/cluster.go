package testutil

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// Cluster is several berth nodes that share one PostgreSQL database and one
// S3 bucket, behind a load balancer that sends each request to the next
// node: the deployment of docs/deploy.md, on loopback.
type Cluster struct {
	Nodes    []*Server
	LB       *LoadBalancer
	PG       *Postgres
	S3       *S3Server
	Bucket   string
	Database string // the nodes' --database
	Storage  string // the nodes' --storage

	// Front is the load balancer seen as a registry: its Host and URL,
	// with the owner's credentials, for clients and for the helpers of
	// Server (Ref, RemoteOptions, Client). It has no process of its own:
	// do not Stop, Kill or Restart it.
	Front *Server
}

// StartCluster starts PostgreSQL, an S3 gateway with a fresh bucket, n
// berth nodes on them (one after the other, so that the first creates the
// schema and the owner) and HAProxy in front of them. Options apply to
// every node. Everything stops when the test ends.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	pg := StartPostgres(t)
	gw := StartS3(t)
	c := &Cluster{PG: pg, S3: gw, Bucket: gw.NewBucket(), Database: pg.NewDatabase()}
	c.Storage = gw.URL(c.Bucket, "registry")
	password := RandomString(16)
	for range n {
		nodeOpts := append([]Option{
			WithArgs("--database", c.Database, "--storage", c.Storage),
			WithEnv(gw.Env()...),
			WithPassword(password),
		}, opts...)
		c.Nodes = append(c.Nodes, StartServer(t, nodeOpts...))
	}
	hosts := make([]string, n)
	for i, node := range c.Nodes {
		hosts[i] = node.Host
	}
	c.LB = StartLoadBalancer(t, hosts...)
	c.Front = (&Server{Kind: KindBerth, URL: "http://" + c.LB.Host, Host: c.LB.Host, t: t}).As(OwnerUsername, password)
	return c
}

// As returns s seen with other credentials (a token's name and password),
// for the client helpers of Server. It has no process of its own: do not
// Stop, Kill or Restart it.
func (s *Server) As(username, password string) *Server {
	return &Server{Kind: s.Kind, URL: s.URL, Host: s.Host, DataDir: s.DataDir, Username: username, Password: password, t: s.t}
}

// CheckBucket checks every blob object in the cluster's bucket as
// CheckBlobStore checks a data directory, through the gateway's own files
// (one file per object), and returns the number of blobs.
func (c *Cluster) CheckBucket(t testing.TB) int {
	t.Helper()
	view := &Server{Kind: KindBerth, DataDir: filepath.Join(c.S3.Dir, c.Bucket, "registry"), t: t}
	return view.CheckBlobStore(t)
}

// Others returns the nodes other than node i (counted from 0).
func (c *Cluster) Others(i int) []*Server {
	var rest []*Server
	for j, n := range c.Nodes {
		if j != i {
			rest = append(rest, n)
		}
	}
	return rest
}

// WaitReady polls GET /readyz on every running node until each answers
// 200, failing the test after timeout: after an outage of the database, a
// node that never becomes ready is a failure, and the limit only bounds how long
// it may take to say so.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) {
	c.Front.t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	for i, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/readyz", nil)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				c.Front.t.Fatalf("node %d (%s) not ready within %v: %v %v", i+1, n.Host, timeout, err, statusOf(resp))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return fmt.Sprint(resp.StatusCode)
}
