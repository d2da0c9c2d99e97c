package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob content on storage that several nodes share (S3) is collected with
// its bookkeeping here, since no node can lock the others' pushes: a push
// records that it refers to a blob's content (ReferenceContent) before it
// looks whether the content is stored, and garbage collection first marks
// the content as being deleted in the database (MarkContentDeleting, only
// if no repository links it and no push referred to it since the cutoff),
// then deletes the object, then forgets the mark (ForgetContent). A push
// that meets the mark waits for the deletion to finish and then stores the
// content again, so no push can link content that a collection is about
// to delete.

// ContentDeleteWindow is how long after marking content a collection may
// still delete its object; a mark twice this old belongs to a collection
// that died, and pushes take the content back.
const ContentDeleteWindow = time.Minute

// ErrContentDeleting means garbage collection is deleting the content:
// retry once it is done.
var ErrContentDeleting = errors.New("blob content is being deleted by garbage collection")

// ReferenceContent records that a push refers to blob d's content now, so
// that garbage collection spares it for its grace period. It fails with
// ErrContentDeleting while a collection deletes the content.
func (s *Store) ReferenceContent(ctx context.Context, d digest.Digest) error {
	now := s.now()
	// One statement, so a collection's mark and a push's reference are
	// ordered by the row: whichever comes second sees the first.
	res, err := s.w.ExecContext(ctx, `INSERT INTO blobs(digest, referenced_at, deleting_at) VALUES (?, ?, 0)
		ON CONFLICT(digest) DO UPDATE SET referenced_at = excluded.referenced_at, deleting_at = 0
		WHERE blobs.deleting_at = 0 OR blobs.deleting_at < ?`,
		d.String(), now.UnixMilli(), now.Add(-2*ContentDeleteWindow).UnixMilli())
	if err != nil {
		return fmt.Errorf("reference blob content: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("reference blob content: %w", err)
	}
	if n == 0 {
		return ErrContentDeleting
	}
	return nil
}

// MarkContentDeleting marks blob d's content as being deleted, if no
// repository links it and no push referred to it at or after cutoff, and
// reports whether it did; the caller then has ContentDeleteWindow to
// delete the content, and calls ForgetContent with the returned mark.
func (s *Store) MarkContentDeleting(ctx context.Context, d digest.Digest, cutoff time.Time) (time.Time, bool, error) {
	mark := s.now()
	if mark.UnixMilli() <= 0 {
		mark = time.UnixMilli(1) // 0 means not marked
	}
	res, err := s.w.ExecContext(ctx, `UPDATE blobs SET deleting_at = ?
		WHERE digest = ? AND deleting_at = 0 AND referenced_at < ?
		AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = ?)`,
		mark.UnixMilli(), d.String(), cutoff.UnixMilli(), d.String())
	if err != nil {
		return mark, false, fmt.Errorf("mark blob content: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return mark, false, fmt.Errorf("mark blob content: %w", err)
	} else if n == 1 {
		return mark, true, nil
	}
	// Content no push has referred to since the table exists (or stray
	// objects): mark it with a new row, unless a push adds one first.
	res, err = s.w.ExecContext(ctx, `INSERT INTO blobs(digest, referenced_at, deleting_at)
		SELECT ?, 0, ? WHERE NOT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = ?)
		ON CONFLICT(digest) DO NOTHING`, d.String(), mark.UnixMilli(), d.String())
	if err != nil {
		return mark, false, fmt.Errorf("mark blob content: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mark, false, fmt.Errorf("mark blob content: %w", err)
	}
	return mark, n == 1, nil
}

// ForgetContent removes the mark a collection made on blob d's content
// once it deleted the content, unless a push has taken the content back.
func (s *Store) ForgetContent(ctx context.Context, d digest.Digest, mark time.Time) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM blobs WHERE digest = ? AND deleting_at = ?`, d.String(), mark.UnixMilli()); err != nil {
		return fmt.Errorf("forget blob content: %w", err)
	}
	return nil
}
