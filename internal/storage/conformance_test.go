package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

// fsStore presents the filesystem store in the suite's terms: its deletes
// go through garbage collection's DeleteIfUntouched.
type fsStore struct{ *storage.FS }

func (s fsStore) Delete(_ context.Context, d digest.Digest) error {
	_, err := s.DeleteIfUntouched(d, time.Now().Add(time.Hour))
	return err
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Options{}, func(t *testing.T) storagetest.Store {
		fs, err := storage.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return fsStore{fs}
	})
}
