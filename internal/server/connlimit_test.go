package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestDefaultMaxConnections(t *testing.T) {
	tests := []struct {
		limit uint64
		known bool
		want  int
	}{
		{512, true, 224},
		{1024, true, 480},
		{1 << 20, true, (1<<20 - 64) / 2},
		{1 << 63, true, (1<<22 - 64) / 2}, // unlimited
		{40, true, 16},
		{0, false, 4096},
	}
	for _, tt := range tests {
		if got := defaultMaxConnections(tt.limit, tt.known); got != tt.want {
			t.Errorf("limit %d (known %v): %d, want %d", tt.limit, tt.known, got, tt.want)
		}
	}
}

// pipeListener hands out the server ends of pipes whose client ends the test
// keeps.
type pipeListener struct {
	conns chan net.Conn
}

func (p *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-p.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (p *pipeListener) Close() error   { return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// dial makes a connection and returns the client's end.
func (p *pipeListener) dial() net.Conn {
	server, client := net.Pipe()
	p.conns <- server
	return client
}

// closedByServer reports whether the server closed the connection whose
// client end is c (a pipe reports that at once, without waiting).
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}

func TestConnLimiterShedsTheLeastUsefulFirst(t *testing.T) {
	pl := &pipeListener{conns: make(chan net.Conn, 1)}
	l := newConnLimiter(pl, 3, slog.New(slog.DiscardHandler))
	accept := func() *limitedConn {
		t.Helper()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*limitedConn)
	}
	grant := func(c *limitedConn) { granted(context.WithValue(context.Background(), connKey{}, c)) }

	busyClient := pl.dial()
	busy := accept()
	l.setState(busy, http.StateActive)
	grant(busy)
	idleClient := pl.dial()
	idle := accept()
	l.setState(idle, http.StateActive)
	grant(idle)
	l.setState(idle, http.StateIdle)
	stuckClient := pl.dial()
	stuck := accept()
	l.setState(stuck, http.StateActive)

	// At the bound: the ungranted request in progress goes first...
	freshClient := pl.dial()
	accept()
	if !closedByServer(stuckClient) || closedByServer(idleClient) || closedByServer(busyClient) {
		t.Fatal("the first newcomer did not replace the ungranted request")
	}
	// ... then a connection that has sent nothing, before an idle one of a
	// granted client ...
	pl.dial()
	second := accept()
	if !closedByServer(freshClient) || closedByServer(idleClient) || closedByServer(busyClient) {
		t.Fatal("the second newcomer did not replace the connection that sent nothing")
	}
	// ... then, when nothing else is left, the idle one ...
	l.setState(second, http.StateActive)
	grant(second)
	pl.dial()
	third := accept()
	if !closedByServer(idleClient) || closedByServer(busyClient) {
		t.Fatal("the third newcomer did not replace the idle connection")
	}
	// ... and never a granted request in progress: with only those left, a
	// newcomer waits for one of them to finish.
	l.setState(third, http.StateActive)
	grant(third)
	accepted := make(chan *limitedConn)
	go func() {
		c, _ := l.Accept()
		accepted <- c.(*limitedConn)
	}()
	pl.dial()
	if closedByServer(busyClient) {
		t.Fatal("a granted request in progress was closed to make room")
	}
	l.setState(busy, http.StateIdle)
	<-accepted
	if !closedByServer(busyClient) {
		t.Fatal("the connection that went idle was not closed for the waiting newcomer")
	}
	if open, shed := l.counts(); open != 3 || shed != 4 {
		t.Errorf("open %d, shed %d; want 3 and 4", open, shed)
	}
}

// TestConnLimiterSparesTheNewcomer: when clients that are closed reconnect at
// once with a request that is never granted (a form body that never comes),
// the newcomer that has not sent its request yet is not the one closed to make
// room for the next: ungranted connections go oldest first, whatever their
// kind, so an honest client's fresh connection lives long enough to be granted.
func TestConnLimiterSparesTheNewcomer(t *testing.T) {
	pl := &pipeListener{conns: make(chan net.Conn, 1)}
	l := newConnLimiter(pl, 3, slog.New(slog.DiscardHandler))
	accept := func() *limitedConn {
		t.Helper()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*limitedConn)
	}
	var stuckClients []net.Conn
	for range 2 {
		stuckClients = append(stuckClients, pl.dial())
		l.setState(accept(), http.StateActive)
	}
	freshClient := pl.dial()
	accept() // has sent nothing yet
	for i, sc := range stuckClients {
		pl.dial() // an attacker reconnecting
		l.setState(accept(), http.StateActive)
		if !closedByServer(sc) {
			t.Fatalf("newcomer %d did not replace the oldest ungranted request", i+1)
		}
		if closedByServer(freshClient) {
			t.Fatalf("newcomer %d replaced the connection that had just arrived", i+1)
		}
	}
	// Older than every other ungranted connection now, it goes next.
	pl.dial()
	accept()
	if !closedByServer(freshClient) {
		t.Fatal("the oldest ungranted connection was not replaced")
	}
}

// readFromListener hands out TCP connections that record what net/http's
// sendfile path (io.ReaderFrom) is handed.
type readFromListener struct {
	net.Listener
	got chan io.Reader
}

func (l *readFromListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readFromConn{TCPConn: c.(*net.TCPConn), got: l.got}, nil
}

type readFromConn struct {
	*net.TCPConn
	got chan io.Reader
}

func (c *readFromConn) ReadFrom(r io.Reader) (int64, error) {
	select {
	case c.got <- r:
	default:
	}
	return c.TCPConn.ReadFrom(r)
}

// TestConnLimiterKeepsSendfile: a file served through a connection the
// limiter holds reaches the socket's ReadFrom as the file, which is what
// lets the kernel send it (sendfile) instead of a copy through user space.
func TestConnLimiterKeepsSendfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	content := bytes.Repeat([]byte("berth"), 100_000)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &readFromListener{Listener: ln, got: make(chan io.Reader, 1)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		// As http.ServeContent, which the registry's blob GET uses, does.
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		io.CopyN(w, f, int64(len(content)))
	})}
	go srv.Serve(newConnLimiter(rl, 4, slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { srv.Close() })

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, content) {
		t.Fatalf("GET: %v, %d bytes of %d", err, len(body), len(content))
	}
	select {
	case r := <-rl.got:
		if lr, ok := r.(*io.LimitedReader); ok {
			r = lr.R
		}
		if _, ok := r.(*os.File); !ok {
			t.Errorf("the socket's ReadFrom got %T, not the file: no sendfile", r)
		}
	default:
		t.Error("the socket's ReadFrom was never called: net/http copied the file through a buffer (no sendfile)")
	}
}
