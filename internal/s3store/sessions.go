package s3store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/storage"
)

// Session is one upload session as the session table keeps it: who
// started it, and the store's state of it.
type Session struct {
	Info  storage.UploadInfo
	State UploadState
	// UpdatedAt is when the session last received bytes (or started).
	UpdatedAt time.Time
}

// ErrClaimLost means a request's claim on a session expired and another
// request took the session meanwhile: what the first wrote is discarded.
var ErrClaimLost = errors.New("upload session claim lost")

// Sessions keeps the state of upload sessions where every node sees it.
// A request that changes a session first claims it: a claim is exclusive
// until it expires (so a node killed mid-request blocks its session only
// for a while), and a state is saved only by the claim's holder and only
// over the state it started from (compare-and-set on the size).
type Sessions interface {
	// Create adds a new session.
	Create(ctx context.Context, s Session) error
	// Get returns session id, or storage.ErrUploadNotFound.
	Get(ctx context.Context, id string) (Session, error)
	// Claim takes session id for the holder of token until until. It
	// fails with storage.ErrUploadBusy if another unexpired claim holds it,
	// storage.ErrUploadNotFound if there is no such session.
	Claim(ctx context.Context, id, token string, until time.Time) (Session, error)
	// Renew extends token's claim, or fails with ErrClaimLost.
	Renew(ctx context.Context, id, token string, until time.Time) error
	// Save stores st as session id's state if token still holds the claim
	// and the stored size is prev, and releases the claim; otherwise it
	// fails with ErrClaimLost.
	Save(ctx context.Context, id, token string, prev int64, st UploadState, now time.Time) error
	// Release gives up token's claim, leaving the state as it is.
	Release(ctx context.Context, id, token string) error
	// Delete removes session id if token holds its claim.
	Delete(ctx context.Context, id, token string) error
	// List returns every session.
	List(ctx context.Context) ([]Session, error)
}

// MemorySessions keeps sessions in this process: the session table of a
// single node. A cluster keeps them in its shared database instead.
type MemorySessions struct {
	mu sync.Mutex
	m  map[string]*memSession
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

type memSession struct {
	s         Session
	token     string
	busyUntil time.Time
}

// NewMemorySessions returns an empty session table.
func NewMemorySessions() *MemorySessions { return &MemorySessions{m: map[string]*memSession{}} }

func (m *MemorySessions) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Create implements Sessions.
func (m *MemorySessions) Create(_ context.Context, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[s.Info.ID]; ok {
		return fmt.Errorf("upload %s exists", s.Info.ID)
	}
	m.m[s.Info.ID] = &memSession{s: s}
	return nil
}

// Get implements Sessions.
func (m *MemorySessions) Get(_ context.Context, id string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[id]
	if !ok {
		return Session{}, storage.ErrUploadNotFound
	}
	return e.s, nil
}

// Claim implements Sessions.
func (m *MemorySessions) Claim(_ context.Context, id, token string, until time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[id]
	if !ok {
		return Session{}, storage.ErrUploadNotFound
	}
	if e.token != "" && e.token != token && m.now().Before(e.busyUntil) {
		return Session{}, storage.ErrUploadBusy
	}
	e.token, e.busyUntil = token, until
	return e.s, nil
}

func (m *MemorySessions) held(id, token string) (*memSession, error) {
	e, ok := m.m[id]
	if !ok || e.token != token {
		return nil, ErrClaimLost
	}
	return e, nil
}

// Renew implements Sessions.
func (m *MemorySessions) Renew(_ context.Context, id, token string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.held(id, token)
	if err != nil {
		return err
	}
	e.busyUntil = until
	return nil
}

// Save implements Sessions.
func (m *MemorySessions) Save(_ context.Context, id, token string, prev int64, st UploadState, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.held(id, token)
	if err != nil {
		return err
	}
	if e.s.State.Size != prev {
		return ErrClaimLost
	}
	e.s.State, e.s.Info.Size, e.s.UpdatedAt = st, st.Size, now
	e.token = ""
	return nil
}

// Release implements Sessions.
func (m *MemorySessions) Release(_ context.Context, id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, err := m.held(id, token); err == nil {
		e.token = ""
	}
	return nil
}

// Delete implements Sessions.
func (m *MemorySessions) Delete(_ context.Context, id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.held(id, token); err != nil {
		return err
	}
	delete(m.m, id)
	return nil
}

// List implements Sessions.
func (m *MemorySessions) List(context.Context) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Session, 0, len(m.m))
	for _, e := range m.m {
		out = append(out, e.s)
	}
	return out, nil
}
