package e2e

// Hostile clients against a real `berth serve` process: slow-loris headers
// and bodies, slow but steady uploads, clients that vanish mid-upload, a
// SIGTERM during an upload, a body deadline that outlives the body, and
// malformed requests to /oauth2/token and /v2/ authentication.
//
// Time in these tests: the server is started with a short body idle timeout
// (BERTH_BODY_IDLE_TIMEOUT) and keeps its 10 s header timeout
// (internal/server). Tests assert only generous upper bounds on cut-offs
// (hostileCutoff, several times the configured timeouts), never that
// something takes at least some time; steps are ordered by observing the
// server (an upload's size, a closed listener), not by sleeping. The one
// deliberate wait is TestHostileSlowMetadataWrite's hold of the database
// lock, which must outlast the idle timeout for the test to mean anything;
// its assertion (a 201) holds however long the hold really is, up to
// berth's 10 s SQLite busy timeout.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	_ "modernc.org/sqlite"

	"github.com/berth-registry/berth/internal/testutil"
)

const (
	// hostileIdle is the body idle timeout the servers of these tests run with.
	hostileIdle = 2 * time.Second
	// hostileCutoff bounds how long berth may take to drop a stalled client:
	// the header timeout is 10 s and the body idle timeout hostileIdle, so
	// 30 s is a generous bound, not a measurement.
	hostileCutoff = 30 * time.Second
	// hostileHang bounds any single request: an answer later than this is a hang.
	hostileHang = 60 * time.Second
)

// startHostile starts berth with a short body idle timeout.
func startHostile(t *testing.T, extraEnv ...string) *testutil.Server {
	t.Helper()
	requireE2E(t)
	env := append([]string{"BERTH_BODY_IDLE_TIMEOUT=" + hostileIdle.String()}, extraEnv...)
	return testutil.StartServer(t, testutil.WithEnv(env...))
}

func basicHeader(srv *testutil.Server) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(srv.Username+":"+srv.Password))
}

// hreq sends one request with Basic credentials and reads the whole answer.
func hreq(t *testing.T, srv *testutil.Server, method, path string, body []byte, header ...string) exchange {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", basicHeader(srv))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	x := exchange{req: req, body: body}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	x.resp = resp
	if x.result, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	return x
}

// tryPatch sends a chunk and returns the answer's status, or the error of a
// connection the server closed before the chunk was sent.
func tryPatch(t *testing.T, srv *testutil.Server, loc string, chunk []byte, contentRange string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PATCH", srv.URL+loc, bytes.NewReader(chunk))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", basicHeader(srv))
	req.Header.Set("Content-Range", contentRange)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func wantStatus(t *testing.T, x exchange, status int) {
	t.Helper()
	if x.resp.StatusCode != status {
		t.Fatalf("want %d\n%s", status, x)
	}
}

// wantOCIError checks that x is an error with an OCI error body.
func wantOCIError(t *testing.T, x exchange, status int, code string) {
	t.Helper()
	if x.resp.StatusCode != status {
		t.Errorf("want %d %s\n%s", status, code, x)
		return
	}
	var e ociError
	if x.resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(x.result, &e) != nil || len(e.Errors) == 0 {
		t.Errorf("want an OCI error body\n%s", x)
		return
	}
	if code != "" && e.Errors[0].Code != code {
		t.Errorf("want code %s\n%s", code, x)
	}
}

// hostileSession opens an upload session in repo and returns its path.
func hostileSession(t *testing.T, srv *testutil.Server, repo string) string {
	t.Helper()
	x := hreq(t, srv, "POST", "/v2/"+repo+"/blobs/uploads/", nil)
	wantStatus(t, x, http.StatusAccepted)
	loc := x.resp.Header.Get("Location")
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		loc = u.RequestURI()
	}
	return loc
}

// uploadSize reads an upload's size from its status ("0-0" counts as 0:
// the tests never hold exactly one byte).
func uploadSize(t *testing.T, srv *testutil.Server, loc string) int64 {
	t.Helper()
	x := hreq(t, srv, "GET", loc, nil)
	wantStatus(t, x, http.StatusNoContent)
	_, end, _ := strings.Cut(x.resp.Header.Get("Range"), "-")
	n, err := strconv.ParseInt(end, 10, 64)
	if err != nil {
		t.Fatalf("Range %q\n%s", x.resp.Header.Get("Range"), x)
	}
	if n == 0 {
		return 0
	}
	return n + 1
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// rawRequest opens a TCP connection and writes a request head for method
// and path with Basic credentials and the given extra header lines; the
// caller writes the body.
func rawRequest(t *testing.T, srv *testutil.Server, method, path string, lines ...string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n", method, path, srv.Host, basicHeader(srv))
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitClosed reads from c until the server closes it or limit passes. It
// returns what the server sent and how long it took.
func waitClosed(c net.Conn, limit time.Duration) (got []byte, took time.Duration, closed bool) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return buf.Bytes(), time.Since(start), false
	}
	return buf.Bytes(), time.Since(start), true
}

// TestHostileSlowLoris: clients that send their headers a byte at a time, or
// send headers and then stall the body, are cut off within a bounded time
// while the server keeps answering everyone else. A stalled upload is never
// answered with a success.
func TestHostileSlowLoris(t *testing.T) {
	srv := startHostile(t)
	const loris = 8
	var wg sync.WaitGroup
	type result struct {
		took   time.Duration
		closed bool
		got    []byte
	}
	results := make([]result, loris)
	stop := make(chan struct{})
	for i := range loris {
		c, err := net.DialTimeout("tcp", srv.Host, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+srv.Host+"\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { // one header byte every 200 ms, until the server hangs up
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			got, took, closed := waitClosed(c, hostileCutoff)
			results[i] = result{took, closed, got}
		}()
	}
	// Meanwhile the server answers others.
	for range 3 {
		wantStatus(t, hreq(t, srv, "GET", "/v2/", nil), http.StatusOK)
	}
	// Stalled bodies: a monolithic upload and a chunk, each sending 10 of
	// the 1 MiB they announce.
	loc := hostileSession(t, srv, "e2e/loris")
	var bodies []net.Conn
	for _, path := range []string{"/v2/e2e/loris/blobs/uploads/?digest=" + digest.FromString("x").String(), loc} {
		method := "POST"
		if path == loc {
			method = "PATCH"
		}
		c := rawRequest(t, srv, method, path, "Content-Length: 1048576", "Content-Type: application/octet-stream")
		if _, err := c.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, c)
	}
	for i, c := range bodies {
		got, took, closed := waitClosed(c, hostileCutoff)
		if !closed {
			t.Errorf("stalled body %d: connection still open after %v", i, took)
			continue
		}
		t.Logf("stalled body %d: dropped after %v; the server sent %q", i, took.Round(time.Millisecond), truncate(got, 200))
		if len(got) > 0 {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err == nil && resp.StatusCode < 300 {
				t.Errorf("stalled body %d: a request whose body never arrived was answered %s", i, resp.Status)
			}
		}
	}
	wg.Wait()
	close(stop)
	for i, r := range results {
		if !r.closed {
			t.Errorf("slow-loris %d: connection still open after %v", i, r.took)
			continue
		}
		if bytes.HasPrefix(r.got, []byte("HTTP/1.1 200")) {
			t.Errorf("slow-loris %d: answered as if the request were complete: %q", i, r.got)
		}
	}
	t.Logf("slow-loris connections dropped after %v (bound %v)", results[0].took.Round(time.Millisecond), hostileCutoff)
	// The session survived its stalled chunk and is still usable.
	size := uploadSize(t, srv, loc)
	if size > 10 {
		t.Fatalf("upload holds %d bytes after a chunk that sent 10", size)
	}
	wantStatus(t, hreq(t, srv, "DELETE", loc, nil), http.StatusNoContent)
	wantStatus(t, hreq(t, srv, "GET", "/v2/", nil), http.StatusOK)
}

// slowReader yields chunk bytes every interval until total bytes are out.
type slowReader struct {
	data     []byte
	chunk    int
	interval time.Duration
	next     time.Time
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	if wait := time.Until(s.next); wait > 0 {
		time.Sleep(wait)
	}
	s.next = time.Now().Add(s.interval)
	n := min(len(p), s.chunk, len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

// TestHostileSlowSteadyUpload: an upload at 64 KiB/s for 5 s, through a
// server whose body idle timeout is 2 s, completes: the timeout cuts stalls,
// not slowness. Both a PATCH and a monolithic POST.
func TestHostileSlowSteadyUpload(t *testing.T) {
	srv := startHostile(t)
	data := randomBytes(t, 320<<10) // 16 KiB every 250 ms: 64 KiB/s for 5 s
	d := digest.FromBytes(data)
	slow := func() io.Reader { return &slowReader{data: data, chunk: 16 << 10, interval: 250 * time.Millisecond} }
	send := func(method, path string, body io.Reader, size int64) *http.Response {
		ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
		t.Cleanup(cancel)
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header.Set("Authorization", basicHeader(srv))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	loc := hostileSession(t, srv, "e2e/slow")
	start := time.Now()
	resp := send("PATCH", loc, slow(), -1) // chunked transfer encoding
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(data)-1) {
		t.Fatalf("slow PATCH: %s, Range %q", resp.Status, resp.Header.Get("Range"))
	}
	t.Logf("slow PATCH of %d KiB took %v", len(data)>>10, time.Since(start).Round(time.Millisecond))
	wantStatus(t, hreq(t, srv, "PUT", loc+"?digest="+d.String(), nil), http.StatusCreated)

	resp = send("POST", "/v2/e2e/slow2/blobs/uploads/?digest="+d.String(), slow(), int64(len(data)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow monolithic POST: %s", resp.Status)
	}
	for _, repo := range []string{"e2e/slow", "e2e/slow2"} {
		x := hreq(t, srv, "GET", "/v2/"+repo+"/blobs/"+d.String(), nil)
		if x.resp.StatusCode != 200 || !bytes.Equal(x.result, data) {
			t.Fatalf("%s: blob reads back %d bytes, status %d", repo, len(x.result), x.resp.StatusCode)
		}
	}
}

// continueUpload waits until no request holds the upload (a PATCH that
// continues it at its reported size is no longer refused as busy) and
// sends that PATCH with rest. It returns the size the upload had.
func continueUpload(t *testing.T, srv *testutil.Server, loc string, all []byte) int64 {
	t.Helper()
	deadline := time.Now().Add(hostileCutoff)
	for {
		size := uploadSize(t, srv, loc)
		if size > int64(len(all)) {
			t.Fatalf("upload holds %d bytes, more than the %d sent", size, len(all))
		}
		status, err := tryPatch(t, srv, loc, all[size:], fmt.Sprintf("%d-%d", size, len(all)-1))
		switch {
		case err != nil:
			// Refused while the dead client's request still holds the
			// session, the chunk's body was cut off by the server's close
			// before the answer could be read.
		case status == http.StatusAccepted:
			return size
		case status == http.StatusBadRequest, status == http.StatusRequestedRangeNotSatisfiable:
			// The dead client's request is still finishing.
		default:
			t.Fatalf("continue upload: %d", status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload still busy %v after its client went away: %d, %v", hostileCutoff, status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHostileDisconnectMidUpload: a client that vanishes halfway through a
// chunk leaves a session that can be resumed from what the server kept (a
// prefix of what was sent); one that vanishes halfway through a monolithic
// upload leaves no blob and no temporary file; an abandoned session can be
// cancelled; and the blob store holds only whole blobs.
func TestHostileDisconnectMidUpload(t *testing.T) {
	srv := startHostile(t)
	data := randomBytes(t, 1<<20)
	d := digest.FromBytes(data)
	const sent = 300 << 10

	t.Run("chunk", func(t *testing.T) {
		loc := hostileSession(t, srv, "e2e/cut")
		c := rawRequest(t, srv, "PATCH", loc, fmt.Sprintf("Content-Length: %d", len(data)), "Content-Range: 0-"+strconv.Itoa(len(data)-1))
		if _, err := c.Write(data[:sent]); err != nil {
			t.Fatal(err)
		}
		c.Close()
		wantStatus(t, hreq(t, srv, "HEAD", "/v2/e2e/cut/blobs/"+d.String(), nil), http.StatusNotFound)
		kept := continueUpload(t, srv, loc, data)
		t.Logf("the server kept %d of the %d bytes sent before the disconnect", kept, sent)
		wantStatus(t, hreq(t, srv, "PUT", loc+"?digest="+d.String(), nil), http.StatusCreated)
		x := hreq(t, srv, "GET", "/v2/e2e/cut/blobs/"+d.String(), nil)
		if !bytes.Equal(x.result, data) {
			t.Fatalf("resumed blob differs: %d bytes", len(x.result))
		}
	})

	t.Run("monolithic", func(t *testing.T) {
		other := randomBytes(t, 1<<20)
		od := digest.FromBytes(other)
		c := rawRequest(t, srv, "POST", "/v2/e2e/cut2/blobs/uploads/?digest="+od.String(), fmt.Sprintf("Content-Length: %d", len(other)))
		if _, err := c.Write(other[:sent]); err != nil {
			t.Fatal(err)
		}
		c.Close()
		tmp := filepath.Join(srv.DataDir, "tmp")
		deadline := time.Now().Add(hostileCutoff)
		for {
			entries, err := os.ReadDir(tmp)
			if err == nil && len(entries) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("temporary files still in %s %v after the client left: %v", tmp, hostileCutoff, entries)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wantStatus(t, hreq(t, srv, "HEAD", "/v2/e2e/cut2/blobs/"+od.String(), nil), http.StatusNotFound)
	})

	t.Run("abandoned session", func(t *testing.T) {
		loc := hostileSession(t, srv, "e2e/cut3")
		c := rawRequest(t, srv, "PATCH", loc, fmt.Sprintf("Content-Length: %d", len(data)))
		if _, err := c.Write(data[:sent]); err != nil {
			t.Fatal(err)
		}
		c.Close()
		deadline := time.Now().Add(hostileCutoff)
		for {
			x := hreq(t, srv, "DELETE", loc, nil)
			if x.resp.StatusCode == http.StatusNoContent {
				break
			}
			if x.resp.StatusCode != http.StatusBadRequest || time.Now().After(deadline) {
				t.Fatalf("cancel an abandoned session\n%s", x)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wantOCIError(t, hreq(t, srv, "GET", loc, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		id := loc[strings.LastIndex(loc, "/")+1:]
		if _, err := os.Stat(filepath.Join(srv.DataDir, "uploads", id)); !os.IsNotExist(err) {
			t.Errorf("cancelled session's directory is still there: %v", err)
		}
	})

	srv.Stop()
	if n := srv.CheckBlobStore(t); n != 1 {
		t.Errorf("blob store holds %d blobs, want only the resumed one", n)
	}
}

// TestHostileSIGTERMDuringUpload: SIGTERM while a chunk is streaming in. The
// server stops accepting connections, lets the chunk finish and answers it
// (202 with the full Range), then exits with status 0. After a restart the
// session holds the whole chunk and completes.
func TestHostileSIGTERMDuringUpload(t *testing.T) {
	srv := startHostile(t)
	data := randomBytes(t, 1<<20)
	d := digest.FromBytes(data)
	loc := hostileSession(t, srv, "e2e/term")
	c := rawRequest(t, srv, "PATCH", loc, fmt.Sprintf("Content-Length: %d", len(data)))
	// 600 KiB: the server reads 256 KiB blocks, so once the session holds
	// 256 KiB the PATCH is certainly in its handler.
	if _, err := c.Write(data[:600<<10]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hostileHang)
	for uploadSize(t, srv, loc) < 256<<10 {
		if time.Now().After(deadline) {
			t.Fatal("the PATCH never reached the upload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.Stop() // SIGTERM; fails the test unless berth exits 0
	}()
	// Shutdown has begun once the listener refuses connections.
	deadline = time.Now().Add(hostileHang)
	for {
		nc, err := net.DialTimeout("tcp", srv.Host, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("berth still accepts connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Write(data[600<<10:]); err != nil {
		t.Fatalf("the in-flight upload was cut by SIGTERM: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(hostileHang))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the in-flight PATCH after SIGTERM: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(data)-1) {
		t.Fatalf("in-flight PATCH after SIGTERM: %s, Range %q", resp.Status, resp.Header.Get("Range"))
	}
	<-stopped
	srv.Restart()
	if got := uploadSize(t, srv, loc); got != int64(len(data)) {
		t.Fatalf("after restart the session holds %d bytes, want %d", got, len(data))
	}
	wantStatus(t, hreq(t, srv, "PUT", loc+"?digest="+d.String(), nil), http.StatusCreated)
	x := hreq(t, srv, "GET", "/v2/e2e/term/blobs/"+d.String(), nil)
	if !bytes.Equal(x.result, data) {
		t.Fatalf("blob after restart differs: %d bytes", len(x.result))
	}
}

// TestHostileSlowMetadataWrite: a request whose body has fully arrived is
// answered however long the server then takes, even past the body idle
// timeout. (The idle timeout pushes the connection's read deadline forward on
// every body read; net/http clears it when the body ends, so a slow
// metadata write after the body must not be cut. This guards that.)
//
// The test holds SQLite's write lock from outside for twice the idle
// timeout, well inside berth's 10 s busy timeout: berth waits and answers 201.
func TestHostileSlowMetadataWrite(t *testing.T) {
	srv := startHostile(t)
	content := randomBytes(t, 4096)
	d := digest.FromBytes(content)
	// Create the repository first so the timed push is only a link.
	wantStatus(t, hreq(t, srv, "POST", "/v2/e2e/lock/blobs/uploads/?digest="+digest.FromString("x").String(), []byte("x")), http.StatusCreated)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(srv.DataDir, "berth.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		x   exchange
		err error
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/e2e/lock/blobs/uploads/?digest="+d.String(), bytes.NewReader(content))
		req.Header.Set("Authorization", basicHeader(srv))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{x: exchange{req: req, resp: resp, result: b}}
	}()
	time.Sleep(2 * hostileIdle)
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(hostileHang):
		t.Fatal("no answer to the push")
	}
	if a.err != nil {
		t.Fatalf("push whose metadata write waited %v: %v", 2*hostileIdle, a.err)
	}
	if a.x.resp.StatusCode != http.StatusCreated {
		t.Errorf("push whose metadata write waited %v (idle timeout %v): want 201\n%s", 2*hostileIdle, hostileIdle, a.x)
	}
	head := hreq(t, srv, "HEAD", "/v2/e2e/lock/blobs/"+d.String(), nil)
	if head.resp.StatusCode != http.StatusOK {
		t.Errorf("after that push the blob is not in the repository: HEAD answers %s", head.resp.Status)
	}
}

// TestHostileTokenEndpoint: malformed requests to /oauth2/token are refused
// with a JSON error (OAuth2 "error" plus the registry's "errors"), never a
// 5xx; odd but well-formed scopes are narrowed, not refused. The failed
// logins stay below the limiter's thresholds (5 per name, 50 per address).
func TestHostileTokenEndpoint(t *testing.T) {
	srv := startHostile(t)
	ep := srv.URL + "/oauth2/token"
	type tcase struct {
		name   string
		method string
		query  string
		body   string
		header []string
		basic  bool // owner credentials
		status int
	}
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	pw := url.QueryEscape(srv.Password)
	huge := strings.Repeat("repository:a/b:pull ", 2000)
	cases := []tcase{
		{name: "unknown service", method: "GET", query: "service=evil&scope=repository:a:pull", basic: true, status: 400},
		{name: "malformed basic", method: "GET", query: "service=berth", header: []string{"Authorization", "Basic !!!notbase64"}, status: 401},
		{name: "basic without colon", method: "GET", query: "service=berth", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon"))}, status: 401},
		{name: "unknown user", method: "GET", query: "service=berth", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("hostile-nobody:x"))}, status: 401},
		{name: "huge password", method: "GET", query: "service=berth", header: []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("hostile-huge:"+strings.Repeat("p", 40000)))}, status: 401},
		{name: "no credentials", method: "GET", query: "service=berth&scope=repository:a:pull", status: 401},
		{name: "scope garbage", method: "GET", query: "service=berth&scope=" + url.QueryEscape("repository:::") + "&scope=" + url.QueryEscape("repository:a:pull:extra") + "&scope=%00&scope=" + url.QueryEscape("registry:catalog:*") + "&scope=" + url.QueryEscape("repository:A/../b:push"), basic: true, status: 200},
		{name: "huge scope", method: "GET", query: "service=berth&scope=" + url.QueryEscape(huge), basic: true, status: 200},
		{name: "many scopes", method: "GET", query: "service=berth" + strings.Repeat("&scope=repository:x:pull", 500), basic: true, status: 200},
		{name: "PUT", method: "PUT", query: "service=berth", basic: true, status: 405},
		{name: "DELETE", method: "DELETE", status: 405},
		{name: "POST no grant", method: "POST", body: "service=berth", header: form, status: 400},
		{name: "POST unknown grant", method: "POST", body: "grant_type=client_credentials&service=berth", header: form, status: 400},
		{name: "POST bad escape", method: "POST", body: "grant_type=password&username=%zz", header: form, status: 400},
		{name: "POST JSON body", method: "POST", body: `{"grant_type":"password"}`, header: []string{"Content-Type", "application/json"}, status: 400},
		{name: "POST body over 64 KiB", method: "POST", body: "grant_type=password&username=owner&password=" + strings.Repeat("x", 70<<10), header: form, status: 413},
		{name: "POST empty username", method: "POST", body: "grant_type=password&username=&password=x&service=berth", header: form, status: 401},
		{name: "POST refresh garbage", method: "POST", body: "grant_type=refresh_token&refresh_token=a.b.c&service=berth", header: form, status: 401},
		{name: "POST refresh empty", method: "POST", body: "grant_type=refresh_token&service=berth", header: form, status: 401},
		{name: "POST refresh huge", method: "POST", body: "grant_type=refresh_token&service=berth&refresh_token=" + strings.Repeat("A", 60<<10), header: form, status: 401},
		{name: "POST password ok, odd scope", method: "POST", body: "grant_type=password&username=owner&password=" + pw + "&service=berth&scope=" + url.QueryEscape("repository:a:pull,push,*,evil") + "&access_type=offline", header: form, status: 200},
		{name: "POST service mismatch", method: "POST", body: "grant_type=password&username=owner&password=" + pw + "&service=other", header: form, status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := ep
			if c.query != "" {
				u += "?" + c.query
			}
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, c.method, u, body)
			if err != nil {
				t.Fatal(err)
			}
			if c.basic {
				req.Header.Set("Authorization", basicHeader(srv))
			}
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			x := exchange{req: req}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			x.resp = resp
			x.result, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("want %d\n%s", c.status, x)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("want JSON\n%s", x)
			}
			var out struct {
				Token  string `json:"token"`
				Error  string `json:"error"`
				Errors []struct{ Code, Message string }
			}
			if err := json.Unmarshal(x.result, &out); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, x)
			}
			if c.status == 200 && out.Token == "" {
				t.Fatalf("no token\n%s", x)
			}
			if c.status != 200 && (out.Error == "" || len(out.Errors) == 0 || out.Errors[0].Code == "") {
				t.Fatalf("error without an OAuth2 error and a registry error\n%s", x)
			}
			if c.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow\n%s", x)
			}
		})
	}
	// The owner still logs in: nothing above locked the address out.
	tok := hreq(t, srv, "GET", "/oauth2/token?service=berth&scope=repository:a:pull", nil)
	wantStatus(t, tok, http.StatusOK)
}

// TestHostileAuthorizationHeaders: /v2/ with Authorization headers that are
// garbage of every kind answers 401 with a Bearer challenge and an OCI
// error body; a header larger than the server accepts is refused at the
// HTTP level (431), and the server keeps serving.
func TestHostileAuthorizationHeaders(t *testing.T) {
	srv := startHostile(t)
	b64 := base64.RawURLEncoding.EncodeToString
	for _, h := range []string{
		"Bearer", "Bearer ", "Bearer a.b.c", "Bearer " + strings.Repeat("x", 30000),
		"Bearer " + b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"owner","access":[{"type":"repository","name":"*","actions":["*"]}]}`)) + ".",
		"Bearer " + b64([]byte(`{"alg":"EdDSA","kid":"../../etc/passwd"}`)) + "." + b64([]byte(`{}`)) + "." + b64([]byte("sig")),
		"Bearer " + b64([]byte(`{"alg":"EdDSA"`)) + ".x.y", "Basic", "Basic ", "Basic %%%", "Basic " + base64.StdEncoding.EncodeToString([]byte(":")),
		"Digest username=owner", "Negotiate YII=", "bearer\ttoken", "Bearer a.b.c, Basic eA==",
	} {
		ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/e2e/auth/tags/list", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("Authorization %q: %v", truncate([]byte(h), 60), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		x := exchange{req: req, resp: resp, result: body}
		wantOCIError(t, x, http.StatusUnauthorized, "UNAUTHORIZED")
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
			t.Errorf("Authorization %q: challenge %q", truncate([]byte(h), 60), resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Headers past MaxHeaderBytes (64 KiB).
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/v2/", nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("100 KiB header: %s, want 431", resp.Status)
		}
	}
	wantStatus(t, hreq(t, srv, "GET", "/v2/", nil), http.StatusOK)
}

// TestHostilePathsThroughTheServer: paths that the server's own routing
// (not just the registry handler) sees first: dot segments, /v2 without a
// slash, escaped slashes, and very long paths. The registry answers each
// with an OCI error or success, never a redirect out of /v2/ or a 5xx.
func TestHostilePathsThroughTheServer(t *testing.T) {
	srv := startHostile(t)
	for _, c := range []struct {
		path   string
		status int
		code   string
	}{
		{"/v2", 200, ""},
		{"/v2/../api/v1/users", 404, "NAME_UNKNOWN"},
		{"/v2/a/../../oauth2/token", 404, "NAME_UNKNOWN"},
		{"/v2/a/%2e%2e/b/tags/list", 400, "NAME_INVALID"},
		{"/v2/./a/tags/list", 400, "NAME_INVALID"},
		{"/v2/a%2Fb/tags/list", 404, "NAME_UNKNOWN"},
		{"/v2/" + strings.Repeat("a/", 20000) + "tags/list", 400, "NAME_INVALID"},
		{"/v2/a/tags/list%00", 404, "NAME_UNKNOWN"},
		{"/v2/a/manifests/" + strings.Repeat("x", 30000), 404, "MANIFEST_UNKNOWN"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), hostileHang)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+c.path, nil)
		req.Header.Set("Authorization", basicHeader(srv))
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", truncate([]byte(c.path), 80), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		x := exchange{req: req, resp: resp, result: body}
		if c.code == "" {
			if resp.StatusCode != c.status {
				t.Errorf("want %d\n%s", c.status, x)
			}
			continue
		}
		wantOCIError(t, x, c.status, c.code)
	}
}
