package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/storage"
)

// blobSource is the content store blobs are read from.
type blobSource interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
	Walk(ctx context.Context, fn func(storage.BlobInfo) error) error
}

// blobTarget is the content store blobs are written to. Put verifies the
// content against its digest as it streams and makes the blob visible
// only if it matches.
type blobTarget interface {
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error)
}

// deleter is a target that must drop a stored blob of the wrong size
// before a Put writes it again (S3's Put keeps a blob it finds stored).
type deleter interface {
	Delete(ctx context.Context, d digest.Digest) error
}

// contentStore is a content store on either side: the filesystem
// (storage.FS) or S3 (s3store.Store).
type contentStore interface {
	blobSource
	blobTarget
	// SetSealer has blobs written sealed (an encrypted registry's).
	SetSealer(storage.Sealer)
}

// openStore opens the content store that setting names (an s3:// URL), or
// the filesystem under dataDir. A source filesystem must exist; a target
// one is created, unless create is false (a source, or a dry run's
// target), when a missing one is returned as nil.
func openStore(ctx context.Context, setting, dataDir string, create bool) (store contentStore, name string, err error) {
	if setting != "" {
		cfg, err := s3store.ParseURL(setting)
		if err != nil {
			return nil, "", err
		}
		st, err := s3store.New(ctx, cfg)
		if err != nil {
			return nil, "", err
		}
		if err := st.Ping(ctx); err != nil {
			return nil, "", fmt.Errorf("storage %s: %w", cfg, err)
		}
		return st, cfg.String(), nil
	}
	name = "filesystem " + dataDir
	if create {
		fs, err := storage.NewFS(dataDir)
		if err != nil {
			return nil, name, err
		}
		return fs, name, nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, "blobs")); errors.Is(err, os.ErrNotExist) {
		return nil, name, nil
	}
	fs, err := storage.OpenFS(dataDir)
	if err != nil {
		return nil, name, err
	}
	return fs, name, nil
}

// blobRef is a blob the metadata refers to, with its size as recorded.
type blobRef struct {
	digest digest.Digest
	size   int64
}

// blobCopy copies blobs from src to dst, up to parallel at once.
type blobCopy struct {
	src      blobSource
	dst      blobTarget
	parallel int
	progress io.Writer
	// afterBlob, if set, is called after each blob written (tests
	// interrupt a run with it).
	afterBlob func(digest.Digest)

	mu                    sync.Mutex
	copied, skipped       int64
	copiedBytes, skipByte int64
	done, total           int
	lastReport            time.Time
	failures              []error
}

// run copies every blob of refs that the target lacks, and returns the
// failures (a blob missing from the source, content that does not match
// its digest, a store's error).
func (c *blobCopy) run(ctx context.Context, refs []blobRef) error {
	c.total = len(refs)
	c.lastReport = time.Now()
	work := make(chan blobRef)
	var wg sync.WaitGroup
	for range max(1, c.parallel) {
		wg.Go(func() {
			for b := range work {
				copied, err := c.one(ctx, b)
				c.record(b, copied, err)
				if err == nil && copied && c.afterBlob != nil {
					c.afterBlob(b.digest)
				}
			}
		})
	}
feed:
	for _, b := range refs {
		select {
		case work <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(c.failures...)
}

func (c *blobCopy) record(b blobRef, copied bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done++
	switch {
	case err != nil:
		if !errors.Is(err, context.Canceled) {
			c.failures = append(c.failures, err)
		}
	case copied:
		c.copied++
		c.copiedBytes += b.size
	default:
		c.skipped++
		c.skipByte += b.size
	}
	if c.progress != nil && time.Since(c.lastReport) >= 5*time.Second {
		c.lastReport = time.Now()
		fmt.Fprintf(c.progress, "blobs: %d of %d done (%d copied, %s)\n", c.done, c.total, c.copied, config.ByteSize(c.copiedBytes).Human())
	}
}

// one copies blob b unless the target has it; it reports whether it wrote
// it.
func (c *blobCopy) one(ctx context.Context, b blobRef) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	n, err := c.dst.Stat(ctx, b.digest)
	switch {
	case err == nil && n == b.size:
		// A store makes a blob visible only once its content was verified
		// against the digest, so one of the right size is the blob.
		return false, nil
	case err == nil:
		if d, ok := c.dst.(deleter); ok {
			if err := d.Delete(ctx, b.digest); err != nil {
				return false, fmt.Errorf("blob %s: the target holds %d bytes of it, not %d, and deleting them failed: %w", b.digest, n, b.size, err)
			}
		}
	case !errors.Is(err, storage.ErrBlobNotFound):
		return false, fmt.Errorf("blob %s: look it up in the target: %w", b.digest, err)
	}
	r, err := c.src.Open(ctx, b.digest)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return false, fmt.Errorf("blob %s: missing from the source store (run berth fsck on the source)", b.digest)
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: read the source: %w", b.digest, err)
	}
	defer r.Close()
	n, err = c.dst.Put(ctx, b.digest, r)
	switch {
	case errors.Is(err, storage.ErrDigestMismatch):
		return false, fmt.Errorf("blob %s: the source's content does not match its digest (run berth fsck on the source)", b.digest)
	case err != nil:
		return false, fmt.Errorf("blob %s: %w", b.digest, err)
	case n != b.size:
		return false, fmt.Errorf("blob %s: %d bytes copied, but the metadata records %d", b.digest, n, b.size)
	}
	return true, nil
}
