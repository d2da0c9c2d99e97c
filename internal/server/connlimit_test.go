package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
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
