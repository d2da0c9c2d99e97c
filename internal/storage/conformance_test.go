package storage_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

// fsBlobs presents the filesystem store in the suite's terms.
type fsBlobs struct{ *storage.FS }

func (s fsBlobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	f, err := s.FS.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s fsBlobs) Delete(_ context.Context, d digest.Digest) error {
	_, err := s.DeleteIfUntouched(d, time.Now().Add(time.Hour))
	return err
}

func (s fsBlobs) Walk(ctx context.Context, fn func(storage.BlobInfo) error) error {
	return s.WalkBlobs(func(d digest.Digest, touched time.Time) error {
		n, err := s.Stat(ctx, d)
		if err != nil {
			return err
		}
		return fn(storage.BlobInfo{Digest: d, Size: n, Touched: touched})
	})
}

func TestConformance(t *testing.T) {
	storagetest.RunBlobs(t, storagetest.Options{}, func(t *testing.T) storagetest.BlobStore {
		fs, err := storage.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return fsBlobs{fs}
	})
}
