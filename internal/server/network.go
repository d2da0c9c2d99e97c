package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// networkDenied records a refusal by the network rules: counted, and
// audited through the denial folder, so that a flood of refusals costs a
// map update each, never a wait for the audit log's writer.
func (s *Server) networkDenied(r *http.Request, d *netrule.Denied) {
	s.networkDenials.Add(1)
	ev := audit.Event{Kind: audit.KindNetwork, Result: audit.ResultFailure, Reason: d.Error(),
		CallerIP: d.Addr, UserAgent: r.UserAgent()}
	if d.Token != "" {
		ev.Identity, ev.IdentityKind = d.Token, "token"
	}
	s.denials.add(ev)
}

// denialFolder folds identical refusals before they reach the audit log:
// the first of a kind is recorded at once, the ones after it within
// foldEvery are counted and recorded as one event with that count (which
// the log folds further, into a record a minute). A refused request thus
// never waits for the log's queue, however many arrive.
type denialFolder struct {
	rec     func(audit.Event)
	mu      sync.Mutex
	pending map[denialKey]*audit.Event // Count: refusals not yet recorded
	stop    chan struct{}
	done    chan struct{}
}

type denialKey struct{ ip, identity, reason, agent string }

const (
	foldEvery      = 250 * time.Millisecond
	maxFoldPending = 4096
)

func newDenialFolder(rec func(audit.Event)) *denialFolder {
	f := &denialFolder{rec: rec, pending: map[denialKey]*audit.Event{}, stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *denialFolder) add(ev audit.Event) {
	k := denialKey{ev.CallerIP, ev.Identity, ev.Reason, ev.UserAgent}
	f.mu.Lock()
	if p := f.pending[k]; p != nil {
		p.Count++
		f.mu.Unlock()
		return
	}
	var full map[denialKey]*audit.Event
	if len(f.pending) >= maxFoldPending {
		full, f.pending = f.pending, map[denialKey]*audit.Event{}
	}
	held := ev
	held.Time = time.Now()
	held.Count = 0
	f.pending[k] = &held
	f.mu.Unlock()
	f.record(full)
	f.rec(ev)
}

// record writes what was counted.
func (f *denialFolder) record(m map[denialKey]*audit.Event) {
	for _, ev := range m {
		if ev.Count > 0 {
			f.rec(*ev)
		}
	}
}

func (f *denialFolder) flush() {
	f.mu.Lock()
	m := f.pending
	f.pending = map[denialKey]*audit.Event{}
	f.mu.Unlock()
	f.record(m)
}

func (f *denialFolder) loop() {
	defer close(f.done)
	t := time.NewTicker(foldEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			f.flush()
			return
		case <-t.C:
			f.flush()
		}
	}
}

// close records what is counted and stops.
func (f *denialFolder) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// FlushDenials hands the refusals counted so far to the audit log (tests).
func (s *Server) FlushDenials() { s.denials.flush() }

// networkRegistryError is the OCI error for a /v2/ request the rules refused.
func networkRegistryError(err error) *registry.Error {
	var d *netrule.Denied
	if errors.As(err, &d) {
		return &registry.Error{Code: registry.CodeDenied, Message: d.Error()}
	}
	if errors.Is(err, identity.ErrUnavailable) {
		return &registry.Error{Code: registry.CodeUnavailable, Message: err.Error(),
			Header: http.Header{"Retry-After": {strconv.Itoa(int(tokenauth.UnavailableRetryAfter.Seconds()))}}}
	}
	return &registry.Error{Code: registry.CodeInternal, Message: err.Error()}
}

// adminElsewhere answers, on the registry's address, what only the admin
// listener serves.
func adminElsewhere(w http.ResponseWriter, r *http.Request) {
	msg := "not found: the management API and the portal are served on the registry's admin address (--admin-addr), not on this one"
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":"NotFound","message":"` + msg + `"}}` + "\n"))
		return
	}
	http.Error(w, msg, http.StatusNotFound)
}

// AdminHandler returns the admin listener's handler, or nil when the
// management API and the portal are served by Handler (for tests).
func (s *Server) AdminHandler() http.Handler { return s.adminHandler }

// Rules returns the network rules (for tests and embedding).
func (s *Server) Rules() *netrule.Service { return s.rules }
