package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
)

// Errors of upload sessions.
var (
	ErrUploadNotFound = errors.New("upload session not found")
	// ErrUploadConflict means the session's size was not the one expected:
	// another request (maybe on another node) appended to it meanwhile.
	ErrUploadConflict = errors.New("upload session changed meanwhile")
)

// Upload is an upload session as the database keeps it, so that any node
// can continue an upload another started.
type Upload struct {
	ID         string
	Repository string
	Owner      string // the identity that started it
	// State is the content store's own (a multipart upload's ID and parts,
	// the running hash), opaque here.
	State     []byte
	Size      int64
	StartedAt time.Time
	UpdatedAt time.Time
}

const uploadCols = `id, repository, owner, state, size, started_at, updated_at`

func scanUpload(row scanner) (Upload, error) {
	var u Upload
	var started, updated int64
	err := row.Scan(&u.ID, &u.Repository, &u.Owner, &u.State, &u.Size, &started, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrUploadNotFound
	}
	if err != nil {
		return u, fmt.Errorf("read upload session: %w", err)
	}
	u.StartedAt, u.UpdatedAt = time.UnixMilli(started), time.UnixMilli(updated)
	return u, nil
}

// errUploadExists ends CreateUpload's transaction when the session was
// created meanwhile (rolling back is what a failed insert needs on
// PostgreSQL).
var errUploadExists = errors.New("upload session exists")

// CreateUpload records a new upload session, unless its owner or its
// repository already has as many open sessions as limits allow (then it
// fails with a *storage.TooManyUploadsError and records nothing). Creating
// a session that exists does nothing. The count and the insert are one
// transaction under a lock per owner and per repository, so nodes racing
// for the last slot cannot both take it.
func (s *Store) CreateUpload(ctx context.Context, u Upload, limits storage.UploadLimits) error {
	if u.StartedAt.IsZero() {
		u.StartedAt = s.now()
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.StartedAt
	}
	if u.State == nil {
		u.State = []byte{}
	}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Always owner then repository, so two transactions cannot wait
		// for each other.
		for _, key := range []string{"berth upload owner " + u.Owner, "berth upload repository " + u.Repository} {
			if err := s.d.Lock(ctx, tx, key); err != nil {
				return fmt.Errorf("lock upload count: %w", err)
			}
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, u.ID).Scan(&one)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read upload session: %w", err)
		}
		byOwner, byRepo, err := countUploads(ctx, tx, u.Owner, u.Repository)
		if err != nil {
			return err
		}
		if l := limits.PerIdentity; l > 0 && byOwner >= l {
			return &storage.TooManyUploadsError{Scope: "identity", Name: u.Owner, Limit: l}
		}
		if l := limits.PerRepository; l > 0 && byRepo >= l {
			return &storage.TooManyUploadsError{Scope: "repository", Name: u.Repository, Limit: l}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO uploads(`+uploadCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Repository, u.Owner, u.State, u.Size, u.StartedAt.UnixMilli(), u.UpdatedAt.UnixMilli()); err != nil {
			if sqldb.IsUniqueViolation(err) {
				// Created meanwhile under another owner's lock: it exists.
				return errUploadExists
			}
			return fmt.Errorf("create upload session: %w", err)
		}
		return nil
	})
	if errors.Is(err, errUploadExists) {
		return nil
	}
	return err
}

// Upload returns upload session id.
func (s *Store) Upload(ctx context.Context, id string) (Upload, error) {
	return scanUpload(s.w.QueryRowContext(ctx, `SELECT `+uploadCols+` FROM uploads WHERE id = ?`, id))
}

// UpdateUpload records that session id grew from size to newSize with
// state, if it still has size; otherwise it fails with ErrUploadConflict
// (or ErrUploadNotFound) and changes nothing.
func (s *Store) UpdateUpload(ctx context.Context, id string, size, newSize int64, state []byte) error {
	if state == nil {
		state = []byte{}
	}
	res, err := s.w.ExecContext(ctx, `UPDATE uploads SET size = ?, state = ?, updated_at = ? WHERE id = ? AND size = ?`,
		newSize, state, s.now().UnixMilli(), id, size)
	if err != nil {
		return fmt.Errorf("update upload session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update upload session: %w", err)
	}
	if n == 1 {
		return nil
	}
	if _, err := s.Upload(ctx, id); err != nil {
		return err
	}
	return ErrUploadConflict
}

// DeleteUpload removes session id.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM uploads WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete upload session: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete upload session: %w", err)
	} else if n == 0 {
		return ErrUploadNotFound
	}
	return nil
}

// UploadsBefore lists the sessions last updated before cutoff, oldest
// first.
func (s *Store) UploadsBefore(ctx context.Context, cutoff time.Time) ([]Upload, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+uploadCols+` FROM uploads WHERE updated_at < ? ORDER BY updated_at, id`, cutoff.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list upload sessions: %w", err)
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// PurgeUpload removes session id if it was last updated before cutoff
// (and so has not been continued since a purge listed it), reporting
// whether it did.
func (s *Store) PurgeUpload(ctx context.Context, id string, cutoff time.Time) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM uploads WHERE id = ? AND updated_at < ?`, id, cutoff.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("purge upload session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("purge upload session: %w", err)
	}
	return n == 1, nil
}

// CountUploads returns how many sessions owner and repo have open.
func (s *Store) CountUploads(ctx context.Context, owner, repo string) (byOwner, byRepo int, err error) {
	return countUploads(ctx, s.r, owner, repo)
}

func countUploads(ctx context.Context, q querier, owner, repo string) (byOwner, byRepo int, err error) {
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM uploads WHERE owner = ?`, owner).Scan(&byOwner); err != nil {
		return 0, 0, fmt.Errorf("count upload sessions: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM uploads WHERE repository = ?`, repo).Scan(&byRepo); err != nil {
		return 0, 0, fmt.Errorf("count upload sessions: %w", err)
	}
	return byOwner, byRepo, nil
}

// UploadCounter is a storage.UploadCounter whose count is the sessions in
// the database, shared by every node.
type UploadCounter struct {
	s      *Store
	limits storage.UploadLimits
}

// UploadCounter returns a counter of the sessions in s, capped by limits.
func (s *Store) UploadCounter(limits storage.UploadLimits) *UploadCounter {
	return &UploadCounter{s: s, limits: limits}
}

// Open implements storage.UploadCounter: it records session u.
func (c *UploadCounter) Open(ctx context.Context, u storage.UploadInfo) error {
	return c.s.CreateUpload(ctx, Upload{ID: u.ID, Repository: u.Repository, Owner: u.Owner, Size: u.Size, StartedAt: u.StartedAt}, c.limits)
}

// Close implements storage.UploadCounter: it removes session id's record.
// The interface has no error to return; a record left behind by a failed
// delete is removed by the next purge of old sessions.
func (c *UploadCounter) Close(ctx context.Context, id string) {
	_ = c.s.DeleteUpload(context.WithoutCancel(ctx), id)
}

var _ storage.UploadCounter = (*UploadCounter)(nil)

// Errors of claims on upload sessions.
var (
	// ErrUploadBusy means another request holds an unexpired claim on the
	// session.
	ErrUploadBusy = errors.New("upload session claimed by another request")
	// ErrUploadClaimLost means the claim expired and the session was
	// claimed, changed or removed by another request since.
	ErrUploadClaimLost = errors.New("upload session claim lost")
)

// ClaimUpload takes session id for the request holding token for ttl, so
// that no other request (on any node) changes it meanwhile, and returns the
// session. A claim that was not released (its node died) expires after
// ttl. It fails with ErrUploadBusy if another token holds an unexpired
// claim, ErrUploadNotFound if there is no such session.
func (s *Store) ClaimUpload(ctx context.Context, id, token string, ttl time.Duration) (Upload, error) {
	now := s.now()
	res, err := s.w.ExecContext(ctx, `UPDATE uploads SET claim = ?, claimed_until = ?
		WHERE id = ? AND (claim = '' OR claim = ? OR claimed_until <= ?)`,
		token, now.Add(ttl).UnixMilli(), id, token, now.UnixMilli())
	if err != nil {
		return Upload{}, fmt.Errorf("claim upload session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Upload{}, fmt.Errorf("claim upload session: %w", err)
	}
	u, err := s.Upload(ctx, id)
	if err != nil {
		return Upload{}, err
	}
	if n == 0 {
		return Upload{}, ErrUploadBusy
	}
	return u, nil
}

// claimed runs a statement conditioned on token's claim on session id and
// fails with ErrUploadClaimLost if it changed nothing.
func (s *Store) claimed(ctx context.Context, what, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return ErrUploadClaimLost
	}
	return nil
}

// RenewUploadClaim extends token's claim on session id to ttl from now.
func (s *Store) RenewUploadClaim(ctx context.Context, id, token string, ttl time.Duration) error {
	return s.claimed(ctx, "renew upload claim", `UPDATE uploads SET claimed_until = ? WHERE id = ? AND claim = ?`,
		s.now().Add(ttl).UnixMilli(), id, token)
}

// SaveClaimedUpload records that session id grew from size to newSize
// with state and releases token's claim on it, if token still holds the
// claim and the session still has size; otherwise it fails with
// ErrUploadClaimLost and changes nothing.
func (s *Store) SaveClaimedUpload(ctx context.Context, id, token string, size, newSize int64, state []byte) error {
	if state == nil {
		state = []byte{}
	}
	return s.claimed(ctx, "save upload session", `UPDATE uploads SET size = ?, state = ?, updated_at = ?, claim = '', claimed_until = 0
		WHERE id = ? AND claim = ? AND size = ?`, newSize, state, s.now().UnixMilli(), id, token, size)
}

// ReleaseUploadClaim gives up token's claim on session id, if it holds it.
func (s *Store) ReleaseUploadClaim(ctx context.Context, id, token string) error {
	err := s.claimed(ctx, "release upload claim", `UPDATE uploads SET claim = '', claimed_until = 0 WHERE id = ? AND claim = ?`, id, token)
	if errors.Is(err, ErrUploadClaimLost) {
		return nil
	}
	return err
}

// DeleteClaimedUpload removes session id if token holds its claim.
func (s *Store) DeleteClaimedUpload(ctx context.Context, id, token string) error {
	return s.claimed(ctx, "delete upload session", `DELETE FROM uploads WHERE id = ? AND claim = ?`, id, token)
}
