package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int32  `json:"n"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}

// UploadState is everything about an upload session in progress. The store
// keeps none of it: the caller stores it (in the metadata database) after
// every call and passes it back, so any node continues any session. Two
// calls must not work on one session at the same time; the caller orders
// them (a compare-and-set on Size).
//
// Bytes that do not fill a part yet (S3 parts are at least 5 MiB, chunks
// from clients are often smaller) wait in a tail object, read back and sent
// on as the start of the next part.
type UploadState struct {
	ID          string `json:"id"`
	MultipartID string `json:"multipart,omitempty"`
	Parts       []Part `json:"parts,omitempty"`
	// Size is how many bytes the session holds: its parts and its tail.
	Size     int64 `json:"size"`
	TailSize int64 `json:"tail,omitempty"`
	// Tail names the tail object. Every write of a tail makes a new one,
	// never overwriting another: a request whose claim on the session ran
	// out while it still wrote must not change a tail that the state saved
	// by the request that took over describes (the running hash vouches
	// for what was read, not for what the objects hold).
	Tail string `json:"tailObj,omitempty"`
	// Hash is the running sha256 state over all Size bytes
	// (encoding.BinaryMarshaler form), so the digest is known at commit
	// without reading the content back.
	Hash []byte `json:"hash"`
}

func (s *Store) uploadKey(id, name string) string {
	return s.cfg.Prefix + "uploads/" + id + "/" + name
}

func (st UploadState) tailKey(s *Store) string {
	return s.uploadKey(st.ID, "tail."+st.Tail)
}

// StartUpload begins a session. It costs no request to the object store: a
// session that never receives a byte leaves nothing there.
func (s *Store) StartUpload(context.Context) (UploadState, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return UploadState{}, fmt.Errorf("make upload id: %w", err)
	}
	st := UploadState{ID: hex.EncodeToString(b[:])}
	h, err := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return UploadState{}, err
	}
	st.Hash = h
	return st, nil
}

func restoreHash(st UploadState) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Hash); err != nil {
		return nil, fmt.Errorf("upload %s: bad hash state: %w", st.ID, err)
	}
	return h, nil
}

// session is one call's work on an upload: the state it started from, and
// the buffer that holds the tail plus what has been read since.
type session struct {
	s    *Store
	st   UploadState // what is stored so far (parts done in this call included)
	h    hash.Hash
	buf  []byte
	fill int
	put  func()
}

func (s *Store) resume(ctx context.Context, st UploadState) (*session, error) {
	h, err := restoreHash(st)
	if err != nil {
		return nil, err
	}
	st.Parts = append([]Part(nil), st.Parts...)
	bp := s.bufs.Get().(*[]byte)
	ss := &session{s: s, st: st, h: h, buf: *bp, put: func() { s.bufs.Put(bp) }}
	if st.TailSize > 0 {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(st.tailKey(s))})
		if err != nil {
			ss.put()
			return nil, fmt.Errorf("upload %s: read tail: %w", st.ID, err)
		}
		n, err := io.ReadFull(out.Body, ss.buf[:st.TailSize])
		_ = out.Body.Close()
		if err != nil || int64(n) != st.TailSize {
			ss.put()
			return nil, fmt.Errorf("upload %s: read tail: got %d of %d bytes: %v", st.ID, n, st.TailSize, err)
		}
		ss.fill = n
	}
	return ss, nil
}

// read fills the buffer from r and sends every full buffer as a part. It
// stops at the end of r (nil) or at a read error, returned as readErr; an
// error of the object store is returned as err.
func (ss *session) read(ctx context.Context, r io.Reader) (readErr, err error) {
	if r == nil {
		return nil, nil
	}
	for {
		n, rerr := io.ReadFull(r, ss.buf[ss.fill:])
		ss.h.Write(ss.buf[ss.fill : ss.fill+n])
		ss.fill += n
		ss.st.Size += int64(n)
		if ss.fill == len(ss.buf) {
			if err := ss.sendPart(ctx); err != nil {
				return nil, err
			}
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return nil, nil
		case rerr != nil:
			return rerr, nil
		}
	}
}

func (ss *session) sendPart(ctx context.Context) error {
	s := ss.s
	if ss.st.MultipartID == "" {
		out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: &s.cfg.Bucket, Key: aws.String(s.uploadKey(ss.st.ID, "data")),
		})
		if err != nil {
			return fmt.Errorf("upload %s: start multipart upload: %w", ss.st.ID, err)
		}
		ss.st.MultipartID = aws.ToString(out.UploadId)
	}
	m := &multipart{s: s, key: s.uploadKey(ss.st.ID, "data"), id: ss.st.MultipartID}
	p, err := m.uploadPart(ctx, int32(len(ss.st.Parts)+1), ss.buf[:ss.fill])
	if err != nil {
		return fmt.Errorf("upload %s: %w", ss.st.ID, err)
	}
	ss.st.Parts = append(ss.st.Parts, p)
	ss.fill = 0
	ss.st.TailSize = 0 // the old tail went out in this part
	return nil
}

// saveTail stores the buffered bytes as a new tail object and returns the
// state that describes them. The old tail object is removed afterwards, so a
// failure at any point leaves the old state valid.
func (ss *session) saveTail(ctx context.Context, old UploadState) (UploadState, error) {
	s := ss.s
	st := ss.st
	st.TailSize = int64(ss.fill)
	if ss.fill > 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return old, err
		}
		st.Tail = hex.EncodeToString(b[:])
		if err := s.putObject(ctx, st.tailKey(s), ss.buf[:ss.fill]); err != nil {
			return old, fmt.Errorf("upload %s: write tail: %w", st.ID, err)
		}
	}
	h, err := ss.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return old, err
	}
	st.Hash = h
	if old.TailSize > 0 && (st.Tail != old.Tail || st.TailSize == 0) {
		s.deleteKey(ctx, old.tailKey(s))
	}
	return st, nil
}

func (s *Store) deleteKey(ctx context.Context, key string) {
	_, _ = s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
}

// Append adds r to the session and returns its new state. If reading r
// fails part way (the client went away), what was read is kept: the
// returned state holds it, with the read error. If the object store fails,
// the returned state is st unchanged, which stays valid: the client resumes
// from st.Size.
func (s *Store) Append(ctx context.Context, st UploadState, r io.Reader) (UploadState, error) {
	ss, err := s.resume(ctx, st)
	if err != nil {
		return st, err
	}
	defer ss.put()
	readErr, err := ss.read(ctx, r)
	if err != nil {
		return st, err
	}
	next, err := ss.saveTail(ctx, st)
	if err != nil {
		return st, err
	}
	if readErr != nil {
		return next, fmt.Errorf("read upload: %w", readErr)
	}
	return next, nil
}

// Commit adds r (which may be nil) to the session, checks the content
// against d and stores it as blob d. The session ends either way: its
// objects are removed whether or not the digest matched. It returns the
// blob's size.
func (s *Store) Commit(ctx context.Context, st UploadState, d digest.Digest, r io.Reader) (int64, error) {
	if err := validate(d); err != nil {
		return st.Size, err
	}
	if st.Size == 0 && st.MultipartID == "" && r != nil {
		// The whole blob comes with its digest (a monolithic PUT): stream
		// it to the blob's own key like Put, completing the multipart
		// upload only if the digest matches, instead of staging it and
		// copying it into place. An empty session has nothing to remove.
		// A stored object is replaced, as the staged path replaces one of
		// another size: its size is not known until the body has gone by.
		n, err := s.put(ctx, d, -1, r, true)
		if errors.Is(err, storage.ErrDigestMismatch) {
			return n, &endedError{err}
		}
		if err != nil {
			// Nothing was stored: the session stays empty and valid, so
			// the client may retry the PUT.
			return 0, err
		}
		return n, nil
	}
	ss, err := s.resume(ctx, st)
	if err != nil {
		return st.Size, err
	}
	defer ss.put()
	readErr, err := ss.read(ctx, r)
	if err != nil {
		return st.Size, err
	}
	if readErr != nil {
		// The client's body broke off: keep the session as it was so that
		// the client can retry the PUT.
		return st.Size, fmt.Errorf("read upload: %w", readErr)
	}
	size := ss.st.Size
	end := ss.st
	end.TailSize = int64(ss.fill)
	defer func() { _ = s.Abort(context.WithoutCancel(ctx), end) }()
	if err := s.finish(ctx, ss, st, &end, d); err != nil {
		return size, &endedError{err}
	}
	return size, nil
}

// endedError is an error of Commit after which the session is gone: its
// objects were removed, so the session cannot go on.
type endedError struct{ error }

func (e *endedError) Unwrap() error { return e.error }

// finish checks and stores the content of a session that holds all of it
// (ss, with end the state to remove afterwards) as blob d.
func (s *Store) finish(ctx context.Context, ss *session, st UploadState, end *UploadState, d digest.Digest) error {
	size := ss.st.Size
	if d.Algorithm() == digest.SHA256 && digest.NewDigest(digest.SHA256, ss.h) != d {
		return storage.ErrDigestMismatch
	}
	if ss.st.MultipartID == "" {
		// All of it is in the buffer.
		if d.Algorithm() != digest.SHA256 {
			v := d.Verifier()
			_, _ = v.Write(ss.buf[:ss.fill])
			if !v.Verified() {
				return storage.ErrDigestMismatch
			}
		}
		if s.sealer != nil {
			_, err := s.putSealed(ctx, d, bytes.NewReader(ss.buf[:ss.fill]))
			return err
		}
		// Stored already, unless in another size (damaged: this repairs it).
		if n, err := s.Stat(ctx, d); err == nil && n == size {
			return nil
		}
		if err := s.putObject(ctx, s.blobKey(d), ss.buf[:ss.fill]); err != nil {
			return fmt.Errorf("write blob %s: %w", d, err)
		}
		return nil
	}
	if ss.fill > 0 {
		if err := ss.sendPart(ctx); err != nil {
			return err
		}
	}
	staging := s.uploadKey(ss.st.ID, "data")
	if err := s.completeMultipart(ctx, staging, ss.st.MultipartID, ss.st.Parts); err != nil {
		return fmt.Errorf("upload %s: %w", st.ID, err)
	}
	end.MultipartID = "" // completed: nothing to abort, only the object to remove
	if d.Algorithm() != digest.SHA256 {
		if err := s.verifyObject(ctx, staging, d); err != nil {
			return err
		}
	}
	if s.sealer != nil {
		// The staged content is read back and sealed into the blob's key:
		// a copy would store it as the client sent it.
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: &staging})
		if err != nil {
			return fmt.Errorf("upload %s: read staged content: %w", st.ID, err)
		}
		defer out.Body.Close()
		_, err = s.putSealed(ctx, d, out.Body)
		return err
	}
	if n, err := s.Stat(ctx, d); err == nil && n == size {
		return nil
	}
	if err := s.copyObject(ctx, staging, s.blobKey(d), size); err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	return nil
}

func (s *Store) verifyObject(ctx context.Context, key string, d digest.Digest) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("verify upload: %w", err)
	}
	defer out.Body.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, out.Body); err != nil {
		return fmt.Errorf("verify upload: %w", err)
	}
	if !v.Verified() {
		return storage.ErrDigestMismatch
	}
	return nil
}

// Abort ends a session and removes what it stored.
func (s *Store) Abort(ctx context.Context, st UploadState) error {
	var errs []error
	if st.MultipartID != "" {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: &s.cfg.Bucket, Key: aws.String(s.uploadKey(st.ID, "data")), UploadId: &st.MultipartID,
		})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("abort upload %s: %w", st.ID, err))
		}
	}
	for _, key := range []string{st.tailKey(s), s.uploadKey(st.ID, "data")} {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: &key}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove upload %s: %w", st.ID, err))
		}
	}
	return errors.Join(errs...)
}

// PurgeOrphans removes multipart uploads and upload objects older than
// cutoff, whatever the database says: the safety net for sessions whose
// state was lost (a node killed between two requests). Pass a cutoff well
// beyond the longest a live session may last.
func (s *Store) PurgeOrphans(ctx context.Context, cutoff time.Time) (int, error) {
	prefix := s.cfg.Prefix + "uploads/"
	n := 0
	var keyMarker, idMarker *string
	for {
		out, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
			Bucket: &s.cfg.Bucket, Prefix: &prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker,
		})
		if err != nil {
			return n, fmt.Errorf("list multipart uploads: %w", err)
		}
		for _, u := range out.Uploads {
			if u.Initiated != nil && u.Initiated.Before(cutoff) {
				if _, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: u.Key, UploadId: u.UploadId}); err == nil {
					n++
				}
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		keyMarker, idMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list upload objects: %w", err)
		}
		for _, o := range page.Contents {
			if o.LastModified != nil && o.LastModified.Before(cutoff) {
				s.deleteKey(ctx, aws.ToString(o.Key))
				n++
			}
		}
	}
	return n, nil
}
