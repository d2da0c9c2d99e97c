package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestHostileConnectionFloodUnderLowFileLimit: berth runs with a limit of
// 512 open files, and 600 connections that declare a body they never send
// are opened against it. berth must keep answering GET /v2/
// and /readyz and serve an authenticated push, closing the flooding
// connections it holds beyond the bound it derived from the limit, and say
// so in its log.
func TestHostileConnectionFloodUnderLowFileLimit(t *testing.T) {
	requireE2E(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit (util-linux) to start berth with a low open-file limit")
	}
	srv := startWithFileLimit(t, prlimit, 512)
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	// What the issue saw: requests that declare a body and never send it,
	// to a route that reads it before any authentication and to one that
	// refuses it.
	heads := []string{
		"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
		"PATCH /v2/flood/app/blobs/uploads/0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
	}
	for i := range 600 {
		c, err := net.DialTimeout("tcp", srv.Host, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		flood = append(flood, c)
		// A write may fail on a connection closed already to make room:
		// that is the point.
		io.WriteString(c, heads[i%len(heads)])
	}

	client := &http.Client{Timeout: hostileHang, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string, authz bool) int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if authz {
			req.SetBasicAuth(testutil.OwnerUsername, srv.password)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s while flooded: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/v2/", false); st != http.StatusUnauthorized {
		t.Errorf("anonymous GET /v2/ while flooded: %d", st)
	}
	if st := get("/readyz", false); st != http.StatusOK {
		t.Errorf("GET /readyz while flooded: %d", st)
	}
	if st := get("/v2/", true); st != http.StatusOK {
		t.Errorf("authenticated GET /v2/ while flooded: %d", st)
	}
	ref, err := name.ParseReference(srv.Host+"/flood/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := testutil.RandomImage(t, 2, 64<<10)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: testutil.OwnerUsername, Password: srv.password}),
		remote.WithTransport(&http.Transport{DisableKeepAlives: true})); err != nil {
		t.Errorf("push while flooded: %v", err)
	}

	log := srv.log.Bytes()
	want := fmt.Sprintf("max_connections=%d", (512-64)/2)
	if !strings.Contains(string(log), want) || !strings.Contains(string(log), "connection limit reached") {
		t.Errorf("the log does not show the bound (%s) being reached:\n%s", want, tail(log, 4000))
	}
}

// limitedServer is a `berth serve` process started under prlimit.
type limitedServer struct {
	Host, URL string
	password  string
	log       *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// startWithFileLimit starts berth with a hard and soft limit of files open
// files (testutil's servers inherit the test's limit, which the Go runtime
// of the server would raise to the hard limit).
func startWithFileLimit(t *testing.T, prlimit string, files int) *limitedServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	s := &limitedServer{Host: host, URL: "http://" + host, password: testutil.RandomString(16), log: &lockedBuffer{}}
	cmd := exec.Command(prlimit, fmt.Sprintf("--nofile=%d:%d", files, files), testutil.BerthBinary(t), "serve",
		"--addr", host, "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "BERTH_OWNER_PASSWORD="+s.password,
		// Bodies that never come stay stuck for the whole test.
		"BERTH_BODY_IDLE_TIMEOUT=1h")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	for deadline := time.Now().Add(hostileHang); ; {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth did not start: %v\n%s", err, s.log.Bytes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
