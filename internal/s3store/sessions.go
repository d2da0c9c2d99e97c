package s3store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/meta"
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
	// Create adds a new session, or refuses it with a
	// *storage.TooManyUploadsError.
	Create(ctx context.Context, s Session) error
	// Get returns session id, or storage.ErrUploadNotFound.
	Get(ctx context.Context, id string) (Session, error)
	// Claim takes session id for the holder of token for ttl. It fails
	// with storage.ErrUploadBusy if another unexpired claim holds it,
	// storage.ErrUploadNotFound if there is no such session.
	Claim(ctx context.Context, id, token string, ttl time.Duration) (Session, error)
	// Renew extends token's claim to ttl from now, or fails with
	// ErrClaimLost.
	Renew(ctx context.Context, id, token string, ttl time.Duration) error
	// Save stores st as session id's state if token still holds the claim
	// and the stored size is prev, and releases the claim; otherwise it
	// fails with ErrClaimLost.
	Save(ctx context.Context, id, token string, prev int64, st UploadState) error
	// Release gives up token's claim, leaving the state as it is.
	Release(ctx context.Context, id, token string) error
	// Delete removes session id if token holds its claim.
	Delete(ctx context.Context, id, token string) error
	// List returns every session last updated before cutoff.
	List(ctx context.Context, cutoff time.Time) ([]Session, error)
}

// UploadTable is what DBSessions needs of the metadata store: its upload
// session table, shared by every node.
type UploadTable interface {
	CreateUpload(ctx context.Context, u meta.Upload, limits storage.UploadLimits) error
	Upload(ctx context.Context, id string) (meta.Upload, error)
	ClaimUpload(ctx context.Context, id, token string, ttl time.Duration) (meta.Upload, error)
	RenewUploadClaim(ctx context.Context, id, token string, ttl time.Duration) error
	SaveClaimedUpload(ctx context.Context, id, token string, size, newSize int64, state []byte) error
	ReleaseUploadClaim(ctx context.Context, id, token string) error
	DeleteClaimedUpload(ctx context.Context, id, token string) error
	UploadsBefore(ctx context.Context, cutoff time.Time) ([]meta.Upload, error)
}

// DBSessions keeps sessions in the metadata database, where the caps on
// open sessions are counted too.
type DBSessions struct {
	db     UploadTable
	limits storage.UploadLimits
}

// NewDBSessions returns the sessions in db, capped by limits.
func NewDBSessions(db UploadTable, limits storage.UploadLimits) *DBSessions {
	return &DBSessions{db: db, limits: limits}
}

func sessionOf(u meta.Upload) (Session, error) {
	var st UploadState
	if err := json.Unmarshal(u.State, &st); err != nil {
		return Session{}, fmt.Errorf("upload %s: bad state: %w", u.ID, err)
	}
	return Session{
		Info:      storage.UploadInfo{ID: u.ID, Repository: u.Repository, Owner: u.Owner, Size: st.Size, StartedAt: u.StartedAt},
		State:     st,
		UpdatedAt: u.UpdatedAt,
	}, nil
}

func dbErr(err error) error {
	switch {
	case errors.Is(err, meta.ErrUploadNotFound):
		return storage.ErrUploadNotFound
	case errors.Is(err, meta.ErrUploadBusy):
		return storage.ErrUploadBusy
	case errors.Is(err, meta.ErrUploadClaimLost):
		return ErrClaimLost
	}
	return err
}

// Create implements Sessions.
func (d *DBSessions) Create(ctx context.Context, s Session) error {
	b, err := json.Marshal(s.State)
	if err != nil {
		return err
	}
	return d.db.CreateUpload(ctx, meta.Upload{ID: s.Info.ID, Repository: s.Info.Repository, Owner: s.Info.Owner, State: b,
		StartedAt: s.Info.StartedAt, UpdatedAt: s.UpdatedAt}, d.limits)
}

// Get implements Sessions.
func (d *DBSessions) Get(ctx context.Context, id string) (Session, error) {
	u, err := d.db.Upload(ctx, id)
	if err != nil {
		return Session{}, dbErr(err)
	}
	return sessionOf(u)
}

// Claim implements Sessions.
func (d *DBSessions) Claim(ctx context.Context, id, token string, ttl time.Duration) (Session, error) {
	u, err := d.db.ClaimUpload(ctx, id, token, ttl)
	if err != nil {
		return Session{}, dbErr(err)
	}
	s, err := sessionOf(u)
	if err != nil {
		_ = d.db.ReleaseUploadClaim(context.WithoutCancel(ctx), id, token)
	}
	return s, err
}

// Renew implements Sessions.
func (d *DBSessions) Renew(ctx context.Context, id, token string, ttl time.Duration) error {
	return dbErr(d.db.RenewUploadClaim(ctx, id, token, ttl))
}

// Save implements Sessions.
func (d *DBSessions) Save(ctx context.Context, id, token string, prev int64, st UploadState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return dbErr(d.db.SaveClaimedUpload(ctx, id, token, prev, st.Size, b))
}

// Release implements Sessions.
func (d *DBSessions) Release(ctx context.Context, id, token string) error {
	return dbErr(d.db.ReleaseUploadClaim(ctx, id, token))
}

// Delete implements Sessions.
func (d *DBSessions) Delete(ctx context.Context, id, token string) error {
	return dbErr(d.db.DeleteClaimedUpload(ctx, id, token))
}

// List implements Sessions. A session whose state does not parse is
// listed with its size unknown (0), so that the purge removes it.
func (d *DBSessions) List(ctx context.Context, cutoff time.Time) ([]Session, error) {
	us, err := d.db.UploadsBefore(ctx, cutoff)
	if err != nil {
		return nil, err
	}
	out := make([]Session, 0, len(us))
	for _, u := range us {
		s, err := sessionOf(u)
		if err != nil {
			s = Session{Info: storage.UploadInfo{ID: u.ID, Repository: u.Repository, Owner: u.Owner, StartedAt: u.StartedAt}, UpdatedAt: u.UpdatedAt}
		}
		out = append(out, s)
	}
	return out, nil
}
