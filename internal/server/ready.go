package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

// recentWriteFailure is how long a write that failed for want of space (or
// on read-only storage) keeps /readyz saying that writes fail, when its own
// probe cannot tell: a 4 KiB probe may fit where a layer does not.
const recentWriteFailure = time.Minute

// writeFailures remembers the last write of each part that failed because its
// storage is full or read-only.
type writeFailures struct {
	mu   sync.Mutex
	last map[string]writeFailure
}

type writeFailure struct {
	at    time.Time
	cause error
	err   error
}

// record is told of a write of part that failed with err.
func (f *writeFailures) record(part string, err error) {
	cause := storage.Unwritable(err)
	if part == "database" {
		cause = meta.Unwritable(err)
	}
	if cause == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		f.last = map[string]writeFailure{}
	}
	f.last[part] = writeFailure{at: time.Now(), cause: cause, err: err}
}

func (f *writeFailures) recent(part string) (writeFailure, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.last[part]
	return w, ok && time.Since(w.at) < recentWriteFailure
}

// A readiness check's status.
const (
	checkOK          = "ok"
	checkWritesFail  = "writes failing"
	checkUnreachable = "unreachable"
)

type check struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

type readiness struct {
	// Status is "ready", "degraded" (reads work, writes fail) or "not ready".
	Status string           `json:"status"`
	Checks map[string]check `json:"checks"`
}

// readyParts are the parts /readyz checks, in the order it lists them.
var readyParts = []string{"storage", "database", "changes", "encryption"}

// ready answers /readyz: 503 "not ready" when a part cannot be reached, and
// 200 "degraded" when everything can be read but a part cannot be written
// (full or read-only storage), since pulls still work and a load balancer
// must not take them away. ?format=json (or Accept: application/json) gives
// the same as JSON.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var probe func(context.Context) error
	if p, ok := s.blobs.(writeProber); ok {
		probe = p.PingWrite
	}
	// A write through the embedded database would queue behind its single
	// writer; a write to the directory that holds it (and its journal)
	// tells whether the journal can grow. A database server's disk is out
	// of reach: its failed writes show through s.writes.
	var dbProbe func(context.Context) error
	if s.meta.Database().Engine() == sqldb.SQLite {
		dbProbe = func(context.Context) error { return storage.ProbeWrite(s.cfg.Data) }
	}
	res := readiness{Status: "ready", Checks: map[string]check{
		"storage":  s.checkPart(ctx, "storage", s.blobs.Ping, probe, storage.Unwritable),
		"database": s.checkPart(ctx, "database", s.meta.Ping, dbProbe, meta.Unwritable),
	}}
	// With several nodes on PostgreSQL, a node that cannot confirm its
	// identities are current refuses every credential check.
	if s.identity.Following() {
		c := check{Status: checkOK}
		if err := s.identity.Current(); err != nil {
			c = check{Status: checkUnreachable, Error: err.Error()}
		}
		res.Checks["changes"] = c
	}
	// Without its key, content is refused: not ready, so that a load
	// balancer sends clients to a node that has it.
	if s.enc != nil {
		c := check{Status: checkOK}
		if err := s.enc.Keyring().Check(ctx); err != nil {
			s.log.Warn("not ready", "part", "encryption", "err", err)
			c = check{Status: checkUnreachable, Error: "the encryption key is unavailable (see the log)"}
		}
		res.Checks["encryption"] = c
	}
	status := http.StatusOK
	for _, c := range res.Checks {
		switch {
		case c.Status == checkUnreachable:
			res.Status, status = "not ready", http.StatusServiceUnavailable
		case c.Status == checkWritesFail && res.Status == "ready":
			res.Status = "degraded"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(res)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	var b strings.Builder
	b.WriteString(res.Status + "\n")
	for _, p := range readyParts {
		c, ok := res.Checks[p]
		if !ok {
			continue
		}
		b.WriteString(p + ": " + c.Status)
		if c.Error != "" {
			b.WriteString(": " + c.Error)
		}
		b.WriteString("\n")
	}
	w.Write([]byte(b.String()))
}

// checkPart checks one part: that it answers (ping), that it takes a write
// (probe, if it has one) and that no write failed lately for want of space.
// What it shows is the cause, never the raw error (paths of the data
// directory); the raw error goes to the log.
func (s *Server) checkPart(ctx context.Context, part string, ping, probe func(context.Context) error, unwritable func(error) error) check {
	if err := ping(ctx); err != nil {
		s.log.Warn("not ready", "part", part, "err", err)
		return check{Status: checkUnreachable}
	}
	if probe != nil {
		if err := probe(ctx); err != nil {
			s.log.Warn("writes failing", "part", part, "err", err)
			if cause := unwritable(err); cause != nil {
				return check{Status: checkWritesFail, Error: describe(cause, err)}
			}
			return check{Status: checkWritesFail, Error: "a test write failed (see the log)"}
		}
	}
	if f, ok := s.writes.recent(part); ok {
		return check{Status: checkWritesFail, Error: describe(f.cause, f.err) + " (a write failed at " + f.at.UTC().Format(time.RFC3339) + ")"}
	}
	return check{Status: checkOK}
}

// describe names a write failure's cause and, when the system gave one, its
// error number's text ("no space left on device", "disk quota exceeded").
func describe(cause, err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return cause.Error() + " (" + errno.Error() + ")"
	}
	return cause.Error()
}
