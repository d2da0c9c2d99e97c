package encryption

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// Inner is the content store Blobs encrypts: the filesystem (storage.FS)
// or S3 (s3store.Blobs). It stores what the sealer it is given seals.
type Inner interface {
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	Touch(ctx context.Context, d digest.Digest) error
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
	PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error)
	StartUpload(ctx context.Context, repo, owner string) (storage.UploadInfo, error)
	Upload(ctx context.Context, id string) (storage.UploadInfo, error)
	Append(ctx context.Context, id string, start int64, r io.Reader) (int64, error)
	Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error)
	Cancel(ctx context.Context, id string) error

	Walk(ctx context.Context, fn func(storage.BlobInfo) error) error
	StatBlob(ctx context.Context, d digest.Digest) (storage.BlobInfo, error)
	ReadBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, storage.BlobInfo, error)
	Quarantine(ctx context.Context, b storage.BlobInfo, why storage.Damage) (bool, error)
	Quarantined(ctx context.Context) ([]storage.QuarantinedBlob, error)

	Ping(ctx context.Context) error
	PurgeUploads(age, emptyAge time.Duration) (int, error)
	ActiveUploads() int
	SetSealer(storage.Sealer)
}

// Blobs is a content store that keeps blob content encrypted in an inner
// store. Digests and sizes are those of the content (what clients verify);
// the inner store holds the sealed form. Content stored before encryption
// was turned on is read as it is until Encrypt has sealed it.
//
// Upload sessions are the inner store's, holding what clients sent until
// their commit, which seals the verified content into place.
type Blobs struct {
	inner Inner
	keys  *Keyring
	seg   int
}

// NewBlobs returns inner with its blobs encrypted by data keys from keys.
// It sets inner's sealer.
func NewBlobs(inner Inner, keys *Keyring) *Blobs {
	b := &Blobs{inner: inner, keys: keys, seg: SegmentSize}
	inner.SetSealer(b)
	return b
}

// Keyring returns the keyring the store's data keys come from.
func (b *Blobs) Keyring() *Keyring { return b.keys }

// Seal implements storage.Sealer.
func (b *Blobs) Seal(ctx context.Context, d digest.Digest, plain io.Reader) (io.Reader, error) {
	dek, err := b.keys.DataKey(ctx, d, true)
	if err != nil {
		return nil, err
	}
	return newSealer(d, dek, plain, b.seg)
}

// usable refuses content while the key is unavailable.
func (b *Blobs) usable() error { return b.keys.Err() }

// open reads stored object src of blob d: the content, decrypted if it is
// sealed. stored is the object's size.
func (b *Blobs) open(ctx context.Context, d digest.Digest, src io.ReadSeekCloser) (io.ReadSeekCloser, int64, bool, error) {
	h, sealed, _, err := readHeader(src)
	if err == nil {
		_, err = src.Seek(0, io.SeekStart)
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("read blob %s: %w", d, err)
	}
	stored, err := src.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = src.Seek(0, io.SeekStart)
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("size of blob %s: %w", d, err)
	}
	if !sealed {
		return src, stored, false, nil
	}
	dek, err := b.keys.DataKey(ctx, d, false)
	if err != nil {
		return nil, 0, true, err
	}
	o, err := newOpener(d, dek, h, src, src, stored)
	if err != nil {
		return nil, 0, true, fmt.Errorf("blob %s: %w", d, err)
	}
	return o, o.size, true, nil
}

// Open returns blob d's content. Sealed content decrypts as it is read,
// segment by segment, from wherever a seek left it.
func (b *Blobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	src, err := b.inner.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	r, _, _, err := b.open(ctx, d, src)
	if err != nil {
		src.Close()
		return nil, err
	}
	return r, nil
}

// Stat returns the size of blob d's content.
func (b *Blobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	return b.plainSize(ctx, d)
}

func (b *Blobs) plainSize(ctx context.Context, d digest.Digest) (int64, error) {
	src, err := b.inner.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	h, sealed, _, err := readHeader(src)
	if err != nil {
		return 0, fmt.Errorf("read blob %s: %w", d, err)
	}
	stored, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of blob %s: %w", d, err)
	}
	if !sealed {
		return stored, nil
	}
	return PlainSize(stored, h.seg)
}

// Touch implements the registry's content store.
func (b *Blobs) Touch(ctx context.Context, d digest.Digest) error { return b.inner.Touch(ctx, d) }

// PutSized stores r as blob d, sealed; the content is verified against d
// as it is sealed.
func (b *Blobs) PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	return b.inner.PutSized(ctx, d, size, r)
}

// Put is PutSized with the size unknown.
func (b *Blobs) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	return b.PutSized(ctx, d, -1, r)
}

// StartUpload implements the registry's content store.
func (b *Blobs) StartUpload(ctx context.Context, repo, owner string) (storage.UploadInfo, error) {
	if err := b.usable(); err != nil {
		return storage.UploadInfo{}, err
	}
	return b.inner.StartUpload(ctx, repo, owner)
}

// Upload implements the registry's content store.
func (b *Blobs) Upload(ctx context.Context, id string) (storage.UploadInfo, error) {
	return b.inner.Upload(ctx, id)
}

// Append implements the registry's content store.
func (b *Blobs) Append(ctx context.Context, id string, start int64, r io.Reader) (int64, error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	return b.inner.Append(ctx, id, start, r)
}

// Commit implements the registry's content store: the inner store seals
// the verified content into place. With the key unavailable the session
// is kept, for the client to commit once it is back.
func (b *Blobs) Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	return b.inner.Commit(ctx, id, d, r)
}

// Cancel implements the registry's content store.
func (b *Blobs) Cancel(ctx context.Context, id string) error { return b.inner.Cancel(ctx, id) }

// Walk calls fn for every stored blob, with its content's size.
func (b *Blobs) Walk(ctx context.Context, fn func(storage.BlobInfo) error) error {
	return b.inner.Walk(ctx, func(info storage.BlobInfo) error {
		n, err := b.plainSize(ctx, info.Digest)
		if errors.Is(err, storage.ErrBlobNotFound) {
			return nil // deleted meanwhile
		}
		if err != nil && !errors.Is(err, ErrTampered) {
			return err
		}
		if err == nil {
			info.Size = n
		}
		return fn(info)
	})
}

// StatBlob describes stored blob d, with its content's size.
func (b *Blobs) StatBlob(ctx context.Context, d digest.Digest) (storage.BlobInfo, error) {
	info, err := b.inner.StatBlob(ctx, d)
	if err != nil {
		return info, err
	}
	if n, err := b.plainSize(ctx, d); err == nil {
		info.Size = n
	}
	return info, nil
}

// ReadBlob opens blob d's content and describes it (fsck and the scrub:
// the content read is decrypted, so they verify the content's digest, and
// a segment that does not authenticate fails the read).
func (b *Blobs) ReadBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, storage.BlobInfo, error) {
	if err := b.usable(); err != nil {
		return nil, storage.BlobInfo{}, err
	}
	rc, info, err := b.inner.ReadBlob(ctx, d)
	if err != nil {
		return nil, info, err
	}
	src, ok := rc.(io.ReadSeekCloser)
	if !ok {
		rc.Close()
		return nil, info, fmt.Errorf("blob %s: the store's reader cannot seek", d)
	}
	r, n, _, err := b.open(ctx, d, src)
	if err != nil {
		src.Close()
		return nil, info, err
	}
	info.Size = n
	return r, info, nil
}

// Quarantine implements fsck.Store.
func (b *Blobs) Quarantine(ctx context.Context, info storage.BlobInfo, why storage.Damage) (bool, error) {
	return b.inner.Quarantine(ctx, info, why)
}

// Quarantined implements fsck.Store.
func (b *Blobs) Quarantined(ctx context.Context) ([]storage.QuarantinedBlob, error) {
	return b.inner.Quarantined(ctx)
}

// Ping reports whether the inner store answers.
func (b *Blobs) Ping(ctx context.Context) error { return b.inner.Ping(ctx) }

// PurgeUploads implements the server's content store.
func (b *Blobs) PurgeUploads(age, emptyAge time.Duration) (int, error) {
	return b.inner.PurgeUploads(age, emptyAge)
}

// ActiveUploads implements the server's content store.
func (b *Blobs) ActiveUploads() int { return b.inner.ActiveUploads() }

// The inner store's optional parts (garbage collection, the write probe)
// pass through.

type gcStore interface {
	WalkBlobs(fn func(d digest.Digest, touched time.Time) error) error
	DeleteIfUntouched(d digest.Digest, cutoff time.Time) (bool, error)
}

var errNoGC = errors.New("this content store cannot collect garbage")

// WalkBlobs implements gc.Blobs.
func (b *Blobs) WalkBlobs(fn func(d digest.Digest, touched time.Time) error) error {
	g, ok := b.inner.(gcStore)
	if !ok {
		return errNoGC
	}
	return g.WalkBlobs(fn)
}

// DeleteIfUntouched implements gc.Blobs.
func (b *Blobs) DeleteIfUntouched(d digest.Digest, cutoff time.Time) (bool, error) {
	g, ok := b.inner.(gcStore)
	if !ok {
		return false, errNoGC
	}
	return g.DeleteIfUntouched(d, cutoff)
}

// PingWrite probes the inner store's writes, if it can.
func (b *Blobs) PingWrite(ctx context.Context) error {
	if p, ok := b.inner.(interface{ PingWrite(context.Context) error }); ok {
		return p.PingWrite(ctx)
	}
	return nil
}
