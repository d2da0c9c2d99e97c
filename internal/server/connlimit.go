package server

import (
	"container/list"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter bounds the connections the server holds, so that clients that
// open connections and send nothing (or declare a body and never send it)
// cannot use up the process's file descriptors.
//
// At the bound, a newcomer is not left waiting in the kernel's queue behind
// the connections that hold the slots: room is made by closing one of them,
// the least useful first. First the connection that has gone longest
// without anything granted: a fresh one that has sent nothing yet, an idle
// one whose last request was refused, or one whose request in progress has
// not been granted (its body crawling in); then an idle connection whose last
// request was granted, which only costs its client a reconnect, the one
// untouched longest. Ungranted connections go oldest first whatever their
// kind, so that a flood of clients that reconnect as soon as they are closed
// cannot have every newcomer closed before it has sent its request and been
// granted. A connection with a granted request in progress is never closed:
// when such connections alone hold every slot, the newcomer waits until one
// of them finishes or goes idle.
type connLimiter struct {
	net.Listener
	max      int
	log      *slog.Logger
	logEvery time.Duration

	mu      sync.Mutex
	changed *sync.Cond // a connection closed or changed kind
	kinds   [kindBusy]list.List
	open    int
	closed  bool
	// placements counts placeLocked calls, ordering connections across
	// kinds by when they were placed.
	placements uint64
	// shed and waited count what happened at the bound since the last log
	// line; logged is when that was. shedTotal counts since the start.
	shed, waited int
	logged       time.Time
	shedTotal    int64
}

// counts returns how many connections are open and how many were closed to
// make room since the start (metrics).
func (l *connLimiter) counts() (open int, shed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.shedTotal
}

// connKind is how expendable a connection is; lower goes first.
type connKind int

const (
	kindQuiet connKind = iota // no request in progress, none granted
	kindStuck                 // a request in progress, not (yet) granted
	kindIdle                  // idle after a granted request
	kindBusy                  // a granted request in progress: never shed
)

// limitedConn is a connection the limiter counts.
type limitedConn struct {
	net.Conn
	l *connLimiter

	// Guarded by l.mu.
	state  http.ConnState
	authed bool          // the request since the last StateActive was granted
	elem   *list.Element // in l.kinds[kind], nil when busy or closed
	kind   connKind
	placed uint64 // when it was put into its kind's list (l.placements)
	gone   bool
}

func newConnLimiter(ln net.Listener, bound int, log *slog.Logger) *connLimiter {
	l := &connLimiter{Listener: ln, max: bound, log: log, logEvery: time.Minute}
	l.changed = sync.NewCond(&l.mu)
	return l
}

// Accept returns the next connection, first making room for it if the
// server holds as many as it may.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	waited := false
	for l.open >= l.max && !l.closed {
		if v := l.victimLocked(); v != nil {
			l.dropLocked(v)
			v.Conn.Close()
			l.shed++
			l.shedTotal++
			l.noteLocked()
			continue
		}
		if !waited {
			waited = true
			l.waited++
			l.noteLocked()
		}
		l.changed.Wait()
	}
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	lc := &limitedConn{Conn: c, l: l, state: http.StateNew}
	l.open++
	l.placeLocked(lc)
	return lc, nil
}

// Close stops Accept, including one waiting for room.
func (l *connLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.changed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// victimLocked returns the connection to close to make room, or nil: the
// oldest of the ungranted kinds (quiet and stuck), else the oldest idle one.
func (l *connLimiter) victimLocked() *limitedConn {
	var v *limitedConn
	for _, k := range []connKind{kindQuiet, kindStuck} {
		if e := l.kinds[k].Front(); e != nil {
			if c := e.Value.(*limitedConn); v == nil || c.placed < v.placed {
				v = c
			}
		}
	}
	if v != nil {
		return v
	}
	if e := l.kinds[kindIdle].Front(); e != nil {
		return e.Value.(*limitedConn)
	}
	return nil
}

// noteLocked logs what happens at the bound, at most once per logEvery.
func (l *connLimiter) noteLocked() {
	now := time.Now()
	if now.Sub(l.logged) < l.logEvery {
		return
	}
	// The counts cover the time since the previous line (the first line:
	// since the start).
	l.log.Warn("connection limit reached: closing idle and unauthenticated connections to serve new ones (see maxConnections)",
		"max_connections", l.max, "closed", l.shed, "waits_behind_busy", l.waited)
	l.logged, l.shed, l.waited = now, 0, 0
}

func (c *limitedConn) kindLocked() connKind {
	switch {
	case c.state == http.StateHijacked:
		return kindBusy
	case c.state == http.StateActive && c.authed:
		return kindBusy
	case c.state == http.StateActive:
		return kindStuck
	case c.authed:
		return kindIdle
	}
	return kindQuiet
}

// placeLocked puts c at the back of the list of its kind: the newest.
func (l *connLimiter) placeLocked(c *limitedConn) {
	if c.elem != nil {
		l.kinds[c.kind].Remove(c.elem)
		c.elem = nil
	}
	c.kind = c.kindLocked()
	if c.kind != kindBusy {
		c.elem = l.kinds[c.kind].PushBack(c)
		l.placements++
		c.placed = l.placements
	}
	l.changed.Broadcast()
}

// dropLocked stops counting c.
func (l *connLimiter) dropLocked(c *limitedConn) {
	if c.gone {
		return
	}
	c.gone = true
	if c.elem != nil {
		l.kinds[c.kind].Remove(c.elem)
		c.elem = nil
	}
	l.open--
	l.changed.Broadcast()
}

func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.dropLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// ReadFrom lets net/http send files with sendfile through the wrapper, as
// on the bare connection: without it, net/http sees no io.ReaderFrom and
// copies every blob download through a 32 KiB buffer.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides every method but Write, so that io.Copy cannot come back
// to a ReadFrom.
type writerOnly struct{ io.Writer }

// setState follows net/http's view of the connection (http.Server.ConnState).
func (l *connLimiter) setState(nc net.Conn, st http.ConnState) {
	c := limited(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.gone {
		return
	}
	if st == http.StateActive && c.state != http.StateActive {
		c.authed = false // a new request: it has proved nothing yet
	}
	c.state = st
	l.placeLocked(c)
}

// granted marks the connection behind ctx as serving a request that was
// authenticated and granted what it asked, which the limiter never closes to
// make room. Requests on connections the limiter does not count are ignored.
func granted(ctx context.Context) {
	c, _ := ctx.Value(connKey{}).(*limitedConn)
	if c == nil {
		return
	}
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.gone || c.authed {
		return
	}
	c.authed = true
	l.placeLocked(c)
}

type connKey struct{}

// connContext puts the limiter's connection into each request's context
// (http.Server.ConnContext).
func connContext(ctx context.Context, nc net.Conn) context.Context {
	if c := limited(nc); c != nil {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// limited finds the limiter's connection under nc (a TLS connection wraps it).
func limited(nc net.Conn) *limitedConn {
	for {
		switch c := nc.(type) {
		case *limitedConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}
