package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/server"
)

// live is a server running on a real listener, with its timeouts and
// connection handling (httptest.Server has neither), and its log.
type live struct {
	t    *testing.T
	addr string
	log  *syncBuffer
	srv  *server.Server
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startLive(t *testing.T, opts ...func(*config.Config)) *live {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	for _, o := range opts {
		o(&cfg)
	}
	buf := &syncBuffer{}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(buf, nil)), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return &live{t: t, addr: ln.Addr().String(), log: buf, srv: srv}
}

// client returns a client that opens a new connection for every request, so
// that each one is a newcomer to the server.
func (l *live) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func (l *live) get(path, authz string) (int, string) {
	l.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+l.addr+path, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := l.client().Do(req)
	if err != nil {
		l.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stuck opens a connection and sends the head of a request that declares a
// body, and none of the body.
func (l *live) stuck(head string) net.Conn {
	l.t.Helper()
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		l.t.Fatal(err)
	}
	return c
}

// answer reads the response on c and then waits for the server to close the
// connection. wait bounds how long a test waits for something that, when
// broken, never happens; it is no claim about speed.
func answer(c net.Conn, wait time.Duration) (*http.Response, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("no answer: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); err == nil {
		return resp, errors.New("the server sent more after the answer")
	} else if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
		return resp, nil
	} else {
		return resp, fmt.Errorf("connection still open after the answer: %w", err)
	}
}

func head(method, path, extra string, length int) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: registry.test\r\n%sContent-Length: %d\r\n\r\n", method, path, extra, length)
}

func TestRequestWhoseBodyNeverArrivesIsAnsweredAndClosed(t *testing.T) {
	l := startLive(t, func(c *config.Config) { c.BodyIdleTimeout = 300 * time.Millisecond })
	form := "Content-Type: application/x-www-form-urlencoded\r\n"
	cases := []struct {
		name   string
		head   string
		status int
	}{
		{"refused chunk upload", head("PATCH", "/v2/team/app/blobs/uploads/0123456789abcdef", "", 1000), 401},
		{"refused chunk upload waiting for 100-continue", head("PATCH", "/v2/team/app/blobs/uploads/0123456789abcdef", "Expect: 100-continue\r\n", 1000), 401},
		{"refused monolithic upload", head("POST", "/v2/team/app/blobs/uploads/?digest=sha256:"+strings.Repeat("a", 64), "", 1000), 401},
		{"refused manifest", head("PUT", "/v2/team/app/manifests/v1", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n", 1000), 401},
		{"refused large upload", head("PUT", "/v2/team/app/blobs/uploads/0123456789abcdef?digest=sha256:"+strings.Repeat("a", 64), "", 1<<30), 401},
		{"body on the base route", head("GET", "/v2/", "", 10), 401},
		{"refused management call", head("POST", "/api/v1/generateCredentials", "Content-Type: application/json\r\n", 100), 401},
		{"bad credentials", head("PATCH", "/v2/team/app/blobs/uploads/0123456789abcdef", "Authorization: Bearer not-a-token\r\n", 1000), 401},
		{"token form that never arrives", head("POST", "/oauth2/token", form, 100), 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := answer(l.stuck(tc.head), 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestEveryResponseForbidsSniffing(t *testing.T) {
	e := newEnv(t)
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	tok := bearer(e.accessToken("owner", ownerPassword, "repository:team/app:pull"))
	cases := []struct{ method, path, authz string }{
		{"GET", "/v2/", ""},
		{"GET", "/v2/", tok},
		{"GET", "/v2/team/app/manifests/v1", tok},
		{"GET", "/v2/team/app/manifests/nope", tok},
		{"GET", "/v2/team/app/tags/list", tok},
		{"GET", "/v2/..%2fetc/tags/list", tok},
		{"GET", "/oauth2/token?service=berth", ""},
		{"POST", "/oauth2/token", ""},
		{"GET", "/api/v1/users", ""},
		{"GET", "/api/v1/users", basic("owner", ownerPassword)},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/metrics", ""},
		{"GET", "/", ""},
		{"GET", "/no-such-page", ""},
	}
	// A range error on a blob is rewritten from net/http's plain-text answer.
	_, m, _ := e.do("GET", "/v2/team/app/manifests/v1", tok, nil)
	var manifest struct{ Config struct{ Digest string } }
	if err := json.Unmarshal([]byte(m), &manifest); err != nil || manifest.Config.Digest == "" {
		t.Fatalf("manifest %q: %v", m, err)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/v2/team/app/blobs/"+manifest.Config.Digest, nil)
	req.Header.Set("Authorization", tok)
	req.Header.Set("Range", "bytes=100000000-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("blob range error: %d with X-Content-Type-Options %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
	for _, tc := range cases {
		st, _, h := e.do(tc.method, tc.path, tc.authz, nil)
		if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s (authorized %v): %d with X-Content-Type-Options %q", tc.method, tc.path, tc.authz != "", st, got)
		}
	}
}

func TestSecondChunkOnBusyUploadIsRefusedWithoutItsBody(t *testing.T) {
	l := startLive(t)
	owner := basic("owner", ownerPassword)
	req, _ := http.NewRequest("POST", "http://"+l.addr+"/v2/team/app/blobs/uploads/", nil)
	req.Header.Set("Authorization", owner)
	resp, err := l.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %d %q", resp.StatusCode, loc)
	}
	if i := strings.Index(loc, "/v2/"); i > 0 {
		loc = loc[i:]
	}
	// The first chunk sends part of its body and keeps the upload busy;
	// empty chunks show when it holds the upload.
	first := l.stuck(head("PATCH", loc, "Authorization: "+owner+"\r\n", 1<<20))
	io.WriteString(first, "0123456789")
	// Waiting for that is bounded generously: on a loaded machine the
	// first chunk's handler may take seconds to be scheduled.
	busy := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		resp, err := answer(l.stuck(head("PATCH", loc, "Authorization: "+owner+"\r\nConnection: close\r\n", 0)), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if busy = resp.StatusCode != http.StatusAccepted; busy {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !busy {
		t.Fatal("the first chunk never took the upload")
	}
	second := l.stuck(head("PATCH", loc, "Authorization: "+owner+"\r\n", 100))
	resp2, err := answer(second, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp2.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp2.Header.Get("Range") == "" || resp2.Header.Get("Location") == "" {
		t.Errorf("second chunk: %d Range %q Location %q", resp2.StatusCode, resp2.Header.Get("Range"), resp2.Header.Get("Location"))
	}
}

func TestConnectionBoundKeepsGrantedWorkServed(t *testing.T) {
	const bound = 12
	l := startLive(t, func(c *config.Config) {
		c.MaxConnections = bound
		c.BodyIdleTimeout = time.Hour // nothing but the bound frees these
	})
	owner := basic("owner", ownerPassword)
	// A granted request whose body is still arriving must survive the flood.
	req, _ := http.NewRequest("POST", "http://"+l.addr+"/v2/team/app/blobs/uploads/", nil)
	req.Header.Set("Authorization", owner)
	resp, err := l.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if i := strings.Index(loc, "/v2/"); i >= 0 {
		loc = loc[i:]
	}
	chunk := strings.Repeat("x", 1000)
	upload := l.stuck(head("PATCH", loc, "Authorization: "+owner+"\r\n", 2*len(chunk)))
	io.WriteString(upload, chunk)

	// Flood: connections that send nothing, and requests whose body never
	// comes to routes that read it before any authentication.
	var flood []net.Conn
	for i := range 20 * bound {
		if i%2 == 0 {
			flood = append(flood, l.stuck(""))
		} else {
			flood = append(flood, l.stuck(head("POST", "/oauth2/token", "Content-Type: application/x-www-form-urlencoded\r\n", 100)))
		}
	}
	for i := range 3 {
		if st, body := l.get("/v2/", owner); st != http.StatusOK {
			t.Fatalf("authenticated GET /v2/ #%d while flooded: %d %s", i, st, body)
		}
		if st, body := l.get("/readyz", ""); st != http.StatusOK {
			t.Fatalf("GET /readyz #%d while flooded: %d %s", i, st, body)
		}
		if st, _ := l.get("/v2/", ""); st != http.StatusUnauthorized {
			t.Fatalf("anonymous GET /v2/ #%d while flooded: %d", i, st)
		}
	}
	// The upload that was granted before the flood goes on.
	io.WriteString(upload, chunk)
	upload.SetReadDeadline(time.Now().Add(20 * time.Second))
	r, err := http.ReadResponse(bufio.NewReader(upload), nil)
	if err != nil || r.StatusCode != http.StatusAccepted || r.Header.Get("Range") != fmt.Sprintf("0-%d", 2*len(chunk)-1) {
		t.Fatalf("upload granted before the flood: %v %+v", err, r)
	}

	// The server holds no more than the bound: most of the flood was closed.
	closed := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range flood {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if closed < len(flood)-bound {
		t.Errorf("%d of %d flooding connections closed; the bound is %d", closed, len(flood), bound)
	}
	_, metrics := l.get("/metrics", "")
	if !strings.Contains(metrics, fmt.Sprintf("berth_connections_max %d\n", bound)) || strings.Contains(metrics, "berth_connections_shed_total 0\n") || !strings.Contains(metrics, "berth_connections_shed_total") {
		t.Errorf("metrics do not show the bound and the connections closed:\n%s", metrics)
	}
	if !strings.Contains(l.log.String(), "connection limit reached") || !strings.Contains(l.log.String(), fmt.Sprintf("max_connections=%d", bound)) {
		t.Errorf("no log line about the bound:\n%s", l.log.String())
	}
}

func TestTokenFormTooLargeSaysSo(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		form   string
		status int
		want   string
	}{
		{"over the limit", "grant_type=password&service=berth&username=owner&password=" + strings.Repeat("x", 70<<10), http.StatusRequestEntityTooLarge, "larger than 64 KiB"},
		{"malformed", "grant_type=password&service=berth&username=%zz", http.StatusBadRequest, "must be an application/x-www-form-urlencoded form"},
	}
	for _, tt := range tests {
		st, body := e.doForm(tt.form)
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			Errors      []struct{ Code, Message string }
		}
		json.Unmarshal([]byte(body), &oe)
		if st != tt.status || oe.Error != "invalid_request" || !strings.Contains(oe.Description, tt.want) || len(oe.Errors) != 1 || oe.Errors[0].Code != "UNSUPPORTED" {
			t.Errorf("%s: %d %s", tt.name, st, body)
		}
	}
}
