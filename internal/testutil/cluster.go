package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
//
// It skips the test, saying why, while berth serve refuses PostgreSQL
// (ErrDatabaseNotSupported): a cluster needs every part of berth in the
// shared database.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	pg := StartPostgres(t)
	gw := StartS3(t)
	c := &Cluster{PG: pg, S3: gw, Bucket: gw.NewBucket(), Database: pg.NewDatabase()}
	c.Storage = gw.URL(c.Bucket, "registry")
	// The probe gets a database and prefix of its own: if it serves, it
	// creates an owner there, with a password of its own.
	if why := PostgresServingRefused(t, pg.NewDatabase(), gw.URL(c.Bucket, "probe"), gw.Env()); why != "" {
		t.Skipf("berth serve refuses PostgreSQL, so no cluster can run yet: %s", why)
	}
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

// PostgresServingRefused starts `berth serve` on database and storage and
// returns the reason it gives for refusing the database, or "" if it
// serves (it is then stopped again).
func PostgresServingRefused(t testing.TB, database, storage string, env []string) string {
	t.Helper()
	bin := BerthBinary(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", t.TempDir(), "--database", database, "--storage", storage)
	cmd.Env = append(append(cleanEnv("BERTH_"), env...), "BERTH_OWNER_PASSWORD="+RandomString(16))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-done:
			if msg := out.String(); strings.Contains(msg, "not supported for every part yet") {
				return lastLine(msg)
			}
			t.Fatalf("berth serve --database %s exited at start (%v):\n%s", database, err, out.String())
		default:
		}
		if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(stopTimeout):
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-done
				}
				return ""
			}
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Fatalf("berth serve --database %s neither served nor exited within %v:\n%s", database, startTimeout, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
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
