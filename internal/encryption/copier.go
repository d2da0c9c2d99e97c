package encryption

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// CopyStore is the part of a content store (storage.FS, s3store.Store)
// that berth migrate reads and writes blobs through.
type CopyStore interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
	Walk(ctx context.Context, fn func(storage.BlobInfo) error) error
	Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error)
	SetSealer(storage.Sealer)
}

// Copier is a content store seen through a keyring, for copying a
// registry: Open and Stat give the content (decrypted if sealed), Put
// seals it with the blob's data key from the keyring, which a blob being
// copied already has. It keeps no upload sessions.
type Copier struct {
	inner CopyStore
	b     *Blobs
}

// NewCopier returns inner seen through keys. It sets inner's sealer.
func NewCopier(inner CopyStore, keys *Keyring) *Copier {
	c := &Copier{inner: inner, b: &Blobs{keys: keys, seg: SegmentSize}}
	inner.SetSealer(c.b)
	return c
}

// Open returns blob d's content.
func (c *Copier) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if err := c.b.usable(); err != nil {
		return nil, err
	}
	src, err := c.inner.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	r, _, _, err := c.b.open(ctx, d, src)
	if err != nil {
		src.Close()
		return nil, err
	}
	return r, nil
}

// Stat returns the size of blob d's content.
func (c *Copier) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := c.b.usable(); err != nil {
		return 0, err
	}
	src, err := c.inner.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	h, sealed, _, err := readHeader(src)
	if err != nil {
		return 0, err
	}
	stored, err := src.Seek(0, io.SeekEnd)
	if err != nil || !sealed {
		return stored, err
	}
	return PlainSize(stored, h.seg)
}

// Put stores r as blob d, sealed; the content is verified against d.
func (c *Copier) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	if err := c.b.usable(); err != nil {
		return 0, err
	}
	return c.inner.Put(ctx, d, r)
}

// Walk calls fn for every stored blob, with its content's size.
func (c *Copier) Walk(ctx context.Context, fn func(storage.BlobInfo) error) error {
	return c.inner.Walk(ctx, func(info storage.BlobInfo) error {
		n, err := c.Stat(ctx, info.Digest)
		if errors.Is(err, storage.ErrBlobNotFound) {
			return nil
		}
		if err == nil {
			info.Size = n
		}
		return fn(info)
	})
}

// Delete drops blob d, if the inner store can (S3's Put keeps a blob it
// finds stored, so one of the wrong size must go first).
func (c *Copier) Delete(ctx context.Context, d digest.Digest) error {
	if del, ok := c.inner.(interface {
		Delete(context.Context, digest.Digest) error
	}); ok {
		return del.Delete(ctx, d)
	}
	return nil
}
