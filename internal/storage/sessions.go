package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrTooManyUploads means a cap on open upload sessions was reached; the
// error is a *TooManyUploadsError that says which.
var ErrTooManyUploads = errors.New("too many open upload sessions")

// TooManyUploadsError says which cap refused a new upload session.
type TooManyUploadsError struct {
	// Scope is "identity" or "repository".
	Scope string
	// Name is the identity or repository at its cap.
	Name  string
	Limit int
}

func (e *TooManyUploadsError) Error() string {
	return fmt.Sprintf("%s %q has %d open upload sessions, the most allowed", e.Scope, e.Name, e.Limit)
}

func (e *TooManyUploadsError) Unwrap() error { return ErrTooManyUploads }

// UploadCounter counts open upload sessions, so that no identity or
// repository can hold an unbounded number of them. FS calls Open before it
// creates a session and Close when one ends (completed, cancelled, refused
// or expired); Close of a session not counted does nothing. Counting sits
// behind this interface so that several nodes can share one count, kept in
// their shared database, instead of each keeping its own.
type UploadCounter interface {
	// Open counts session u, or refuses it with a *TooManyUploadsError.
	Open(ctx context.Context, u UploadInfo) error
	// Close stops counting session id.
	Close(ctx context.Context, id string)
}

// UploadLimits cap open upload sessions. Zero means no cap.
type UploadLimits struct {
	PerIdentity   int
	PerRepository int
}

// SessionCounter is the UploadCounter of a single node, kept in memory and
// started from the sessions on disk.
type SessionCounter struct {
	limits UploadLimits

	mu     sync.Mutex
	open   map[string]UploadInfo // by session ID
	byName map[string]int        // by identity
	byRepo map[string]int
}

// NewSessionCounter returns a counter with limits that counts existing
// (the sessions on disk at start, see FS.Uploads) as open, even beyond the
// caps: a restart must not let an identity open more.
func NewSessionCounter(limits UploadLimits, existing []UploadInfo) *SessionCounter {
	c := &SessionCounter{limits: limits, open: map[string]UploadInfo{}, byName: map[string]int{}, byRepo: map[string]int{}}
	for _, u := range existing {
		c.add(u)
	}
	return c
}

// Open implements UploadCounter.
func (c *SessionCounter) Open(_ context.Context, u UploadInfo) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.open[u.ID]; ok {
		return nil
	}
	if l := c.limits.PerIdentity; l > 0 && c.byName[u.Owner] >= l {
		return &TooManyUploadsError{Scope: "identity", Name: u.Owner, Limit: l}
	}
	if l := c.limits.PerRepository; l > 0 && c.byRepo[u.Repository] >= l {
		return &TooManyUploadsError{Scope: "repository", Name: u.Repository, Limit: l}
	}
	c.add(u)
	return nil
}

func (c *SessionCounter) add(u UploadInfo) {
	c.open[u.ID] = u
	c.byName[u.Owner]++
	c.byRepo[u.Repository]++
}

// Close implements UploadCounter.
func (c *SessionCounter) Close(_ context.Context, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.open[id]
	if !ok {
		return
	}
	delete(c.open, id)
	decrement(c.byName, u.Owner)
	decrement(c.byRepo, u.Repository)
}

// Count returns how many sessions are open.
func (c *SessionCounter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

func decrement(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}
