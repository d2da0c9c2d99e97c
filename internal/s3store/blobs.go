package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// Blobs is the content store the registry uses, on S3: blobs in the bucket,
// upload sessions addressed by id with their state in a session table (the
// metadata database), so that any node serves any request of any upload.
type Blobs struct {
	*Store
	sessions Sessions
	// claimTTL is how long a claim on a session lasts unrenewed: how long a
	// session stays blocked after the node writing to it died.
	claimTTL time.Duration
	now      func() time.Time

	// refs is the database's bookkeeping of blob content, which orders
	// garbage collection's deletes against pushes on every node.
	refs ContentRefs
}

// ContentRefs is the metadata database's bookkeeping of blob content (see
// meta.ReferenceContent).
type ContentRefs interface {
	ReferenceContent(ctx context.Context, d digest.Digest) error
	MarkContentDeleting(ctx context.Context, d digest.Digest, cutoff time.Time) (time.Time, bool, error)
	ForgetContent(ctx context.Context, d digest.Digest, mark time.Time) error
}

// BlobsOptions configure Blobs.
type BlobsOptions struct {
	// ClaimTTL is how long a request's claim on a session lasts without
	// renewal (renewed while the request runs); default 30s.
	ClaimTTL time.Duration
	// Now is the clock of sessions and touch marks (time.Now if nil).
	Now func() time.Time
}

// NewBlobs returns the registry's content store on s with sessions kept in
// sessions and content references in refs.
func NewBlobs(s *Store, sessions Sessions, refs ContentRefs, o BlobsOptions) *Blobs {
	if o.ClaimTTL <= 0 {
		o.ClaimTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Blobs{Store: s, sessions: sessions, refs: refs, claimTTL: o.ClaimTTL, now: o.Now}
}

// mark records that a push refers to blob d now, before it looks whether
// the content is stored: garbage collection on any node then spares it for
// its grace period. While a collection deletes the content, it waits for
// the deletion to end (the push then stores the content again).
func (b *Blobs) mark(ctx context.Context, d digest.Digest) error {
	for {
		err := b.refs.ReferenceContent(ctx, d)
		if !errors.Is(err, meta.ErrContentDeleting) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Touch marks blob d as just used, or says it is not stored.
func (b *Blobs) Touch(ctx context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if err := b.mark(ctx, d); err != nil {
		return err
	}
	_, err := b.Stat(ctx, d)
	return err
}

// PutSized stores r as blob d (see Store.PutSized), after recording the
// push's reference to it.
func (b *Blobs) PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	if err := b.mark(ctx, d); err != nil {
		return 0, err
	}
	return b.Store.PutSized(ctx, d, size, r)
}

// Put is PutSized with the size unknown.
func (b *Blobs) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	return b.PutSized(ctx, d, -1, r)
}

// WalkBlobs calls fn for every stored blob with when it was written.
func (b *Blobs) WalkBlobs(fn func(d digest.Digest, touched time.Time) error) error {
	return b.Walk(context.Background(), func(info storage.BlobInfo) error { return fn(info.Digest, info.Touched) })
}

// DeleteIfUntouched removes blob d unless a repository links it or a push
// referred to it at or after cutoff, and reports whether it did. The
// database's row goes first (marked as being deleted), then the object.
func (b *Blobs) DeleteIfUntouched(d digest.Digest, cutoff time.Time) (bool, error) {
	if err := validate(d); err != nil {
		return false, err
	}
	ctx := context.Background()
	mark, ok, err := b.refs.MarkContentDeleting(ctx, d, cutoff)
	if err != nil || !ok {
		return false, err
	}
	deleted, err := b.deleteMarked(ctx, d, cutoff, mark)
	if ferr := b.refs.ForgetContent(ctx, d, mark); err == nil {
		err = ferr
	}
	return deleted, err
}

// deleteMarked deletes blob d's object, marked at mark, if it is older
// than cutoff and the mark is young enough that no push has taken the
// content back.
func (b *Blobs) deleteMarked(ctx context.Context, d digest.Digest, cutoff, mark time.Time) (bool, error) {
	ctx, cancel := context.WithDeadline(ctx, mark.Add(meta.ContentDeleteWindow))
	defer cancel()
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.blobKey(d))})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if !aws.ToTime(out.LastModified).Before(cutoff) || ctx.Err() != nil {
		return false, nil
	}
	if err := b.Delete(ctx, d); err != nil {
		return false, err
	}
	return true, nil
}

// validID accepts the ids StartUpload makes (32 hex digits) and nothing a
// client could use to reach other keys.
func validID(id string) bool {
	return len(id) == 32 && strings.Trim(id, "0123456789abcdef") == ""
}

// StartUpload creates an empty session for repository repo, started by
// owner, or refuses it with a *storage.TooManyUploadsError.
func (b *Blobs) StartUpload(ctx context.Context, repo, owner string) (storage.UploadInfo, error) {
	st, err := b.Store.StartUpload(ctx)
	if err != nil {
		return storage.UploadInfo{}, err
	}
	now := b.now()
	u := storage.UploadInfo{ID: st.ID, Repository: repo, Owner: owner, StartedAt: now}
	if err := b.sessions.Create(ctx, Session{Info: u, State: st, UpdatedAt: now}); err != nil {
		return storage.UploadInfo{}, fmt.Errorf("create upload: %w", err)
	}
	return u, nil
}

// Upload returns the state of session id.
func (b *Blobs) Upload(ctx context.Context, id string) (storage.UploadInfo, error) {
	if !validID(id) {
		return storage.UploadInfo{}, storage.ErrUploadNotFound
	}
	s, err := b.sessions.Get(ctx, id)
	if err != nil {
		return storage.UploadInfo{}, err
	}
	s.Info.Size = s.State.Size
	return s.Info, nil
}

// claim is one request's hold on a session, renewed in the background
// while the request runs. Its context ends if the claim is lost.
type claim struct {
	b     *Blobs
	id    string
	token string
	ctx   context.Context
	stop  func()
}

func (b *Blobs) claim(ctx context.Context, id string) (*claim, Session, error) {
	if !validID(id) {
		return nil, Session{}, storage.ErrUploadNotFound
	}
	var t [16]byte
	if _, err := rand.Read(t[:]); err != nil {
		return nil, Session{}, err
	}
	token := hex.EncodeToString(t[:])
	s, err := b.sessions.Claim(ctx, id, token, b.claimTTL)
	if err != nil {
		return nil, Session{}, err
	}
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(b.claimTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if err := b.sessions.Renew(context.WithoutCancel(ctx), id, token, b.claimTTL); err != nil {
					cancel(fmt.Errorf("upload %s: %w", id, ErrClaimLost))
					return
				}
			}
		}
	}()
	c := &claim{b: b, id: id, token: token, ctx: cctx}
	c.stop = func() { close(done); cancel(nil) }
	return c, s, nil
}

// release stops renewing; with keep, the claim is given up too (Save and
// Delete give it up themselves).
func (c *claim) release(ctx context.Context) {
	c.stop()
	_ = c.b.sessions.Release(context.WithoutCancel(ctx), c.id, c.token)
}

// lost returns ErrClaimLost if the claim ran out while working. It is
// also storage.ErrUploadBusy: to the client, another request took the
// upload over.
func (c *claim) lost(err error) error {
	if cause := context.Cause(c.ctx); cause != nil && errors.Is(cause, ErrClaimLost) {
		return errors.Join(storage.ErrUploadBusy, cause)
	}
	return err
}

// Append adds r to session id. If start is not negative it must be the
// session's size. It returns the new size. A body that breaks off keeps
// what arrived.
func (b *Blobs) Append(ctx context.Context, id string, start int64, r io.Reader) (int64, error) {
	c, s, err := b.claim(ctx, id)
	if err != nil {
		return 0, err
	}
	if start >= 0 && start != s.State.Size {
		c.release(ctx)
		return s.State.Size, storage.ErrRangeMismatch
	}
	next, err := b.Store.Append(c.ctx, s.State, r)
	c.stop()
	if next.Size == s.State.Size && next.Tail == s.State.Tail && next.MultipartID == s.State.MultipartID && len(next.Parts) == len(s.State.Parts) {
		_ = b.sessions.Release(context.WithoutCancel(ctx), id, c.token)
		return s.State.Size, c.lost(err)
	}
	if serr := b.sessions.Save(context.WithoutCancel(ctx), id, c.token, s.State.Size, next); errors.Is(serr, ErrClaimLost) {
		return s.State.Size, errors.Join(storage.ErrUploadBusy, fmt.Errorf("upload %s: %w", id, serr))
	} else if serr != nil {
		return s.State.Size, fmt.Errorf("upload %s: save state: %w", id, serr)
	}
	return next.Size, c.lost(err)
}

// Commit adds r (which may be nil) to session id, checks the content
// against d and stores it as blob d. The session ends whether or not the
// digest matched, unless the client's body broke off (it may retry).
func (b *Blobs) Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error) {
	if err := validate(d); err != nil {
		if _, gerr := b.Upload(ctx, id); gerr != nil {
			return 0, gerr
		}
		return 0, err
	}
	c, s, err := b.claim(ctx, id)
	if err != nil {
		return 0, err
	}
	// Commit skips writing content already stored: mark it first.
	if err := b.mark(c.ctx, d); err != nil {
		c.release(ctx)
		return 0, err
	}
	n, err := b.Store.Commit(c.ctx, s.State, d, r)
	c.stop()
	var ended *endedError
	if err != nil && !errors.As(err, &ended) {
		// Nothing was removed: the session stays as it was.
		_ = b.sessions.Release(context.WithoutCancel(ctx), id, c.token)
		return n, c.lost(err)
	}
	b.drop(ctx, id, c.token)
	if ended != nil {
		return n, ended.error
	}
	return n, nil
}

func (b *Blobs) drop(ctx context.Context, id, token string) {
	_ = b.sessions.Delete(context.WithoutCancel(ctx), id, token)
}

// Cancel ends session id and removes what it stored.
func (b *Blobs) Cancel(ctx context.Context, id string) error {
	c, s, err := b.claim(ctx, id)
	if err != nil {
		return err
	}
	c.stop()
	err = b.Abort(context.WithoutCancel(ctx), s.State)
	b.drop(ctx, id, c.token)
	return err
}

// ActiveUploads returns how many sessions are open (on every node).
func (b *Blobs) ActiveUploads() int {
	l, err := b.sessions.List(context.Background(), b.now().Add(time.Hour))
	if err != nil {
		return 0
	}
	return len(l)
}

// PurgeUploads ends sessions that received nothing for longer than age,
// and those that never received a byte for longer than emptyAge; then
// removes objects of sessions the table lost (older than twice age). It
// returns how many sessions it ended.
func (b *Blobs) PurgeUploads(age, emptyAge time.Duration) (int, error) {
	ctx := context.Background()
	now := b.now()
	l, err := b.sessions.List(ctx, now.Add(-min(age, emptyAge)))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range l {
		idle := now.Sub(s.UpdatedAt)
		if idle < age && (s.State.Size > 0 || idle < emptyAge) {
			continue
		}
		if err := b.Cancel(ctx, s.Info.ID); err == nil {
			n++
		}
	}
	if _, err := b.PurgeOrphans(ctx, now.Add(-2*age)); err != nil {
		return n, err
	}
	return n, nil
}

// Fsck and the scrub: blobs described, read and moved aside.

// StatBlob describes stored blob d.
func (b *Blobs) StatBlob(ctx context.Context, d digest.Digest) (storage.BlobInfo, error) {
	n, err := b.Stat(ctx, d)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	return storage.BlobInfo{Digest: d, Size: n}, nil
}

// ReadBlob opens stored blob d and describes it.
func (b *Blobs) ReadBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, storage.BlobInfo, error) {
	f, err := b.Open(ctx, d)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	info, err := storage.Opened(d, f)
	if err != nil {
		f.Close()
		return nil, storage.BlobInfo{}, err
	}
	return f, info, nil
}

func (s *Store) quarantineKey(name string) string { return s.cfg.Prefix + "quarantine/" + name }

// Quarantine copies blob info's object under quarantine/ with a note of
// what is wrong with it, then deletes it, so the blob reads as not stored
// until pushed again.
func (b *Blobs) Quarantine(ctx context.Context, info storage.BlobInfo, why storage.Damage) (bool, error) {
	if err := validate(info.Digest); err != nil {
		return false, err
	}
	now := time.Now().UTC()
	name := fmt.Sprintf("%s-%s-%s", info.Digest.Algorithm(), info.Digest.Encoded(), now.Format("20060102T150405.000000000Z"))
	why.Digest = info.Digest
	note, _ := json.Marshal(storage.QuarantinedBlob{Damage: why, Path: "quarantine/" + name, QuarantinedAt: now})
	size, err := b.Stat(ctx, info.Digest)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := b.copyObject(ctx, b.blobKey(info.Digest), b.quarantineKey(name), size); err != nil {
		return false, fmt.Errorf("quarantine blob: %w", err)
	}
	if err := b.putObject(ctx, b.quarantineKey(name+".json"), note); err != nil {
		return false, fmt.Errorf("write quarantine note: %w", err)
	}
	if err := b.Delete(ctx, info.Digest); err != nil {
		return false, err
	}
	return true, nil
}

// Quarantined lists the blobs in quarantine, oldest first.
func (b *Blobs) Quarantined(ctx context.Context) ([]storage.QuarantinedBlob, error) {
	prefix := b.quarantineKey("")
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.cfg.Bucket, Prefix: &prefix})
	var out []storage.QuarantinedBlob
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list quarantine: %w", err)
		}
		for _, o := range page.Contents {
			if !strings.HasSuffix(aws.ToString(o.Key), ".json") {
				continue
			}
			obj, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: o.Key})
			if err != nil {
				continue
			}
			var buf bytes.Buffer
			_, err = io.Copy(&buf, io.LimitReader(obj.Body, 1<<20))
			obj.Body.Close()
			var q storage.QuarantinedBlob
			if err == nil && json.Unmarshal(buf.Bytes(), &q) == nil {
				out = append(out, q)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].QuarantinedAt.Before(out[j].QuarantinedAt) })
	return out, nil
}
