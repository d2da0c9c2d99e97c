package server

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/storage"
)

// contentStore is what the server needs of the content store, on the
// filesystem (storage.FS) or on S3 (s3store.Blobs).
type contentStore interface {
	registry.Blobs
	fsck.Store
	Ping(ctx context.Context) error
	PurgeUploads(age, emptyAge time.Duration) (int, error)
	ActiveUploads() int
}

// writeProber is a content store that can tell whether it takes writes
// (the filesystem: a full or read-only disk).
type writeProber interface {
	PingWrite(ctx context.Context) error
}

// openContent opens the content store that cfg.Storage names: the
// filesystem under the data directory by default, or an S3 bucket. It
// returns the registry's redirect for blob GETs, if configured.
func (s *Server) openContent(ctx context.Context) (func(context.Context, digest.Digest) (string, error), error) {
	limits := storage.UploadLimits{PerIdentity: s.cfg.MaxUploadsPerIdentity, PerRepository: s.cfg.MaxUploadsPerRepository}
	if s.cfg.Storage == "" {
		fs, err := storage.NewFS(s.cfg.Data)
		if err != nil {
			return nil, err
		}
		// Sessions left by the previous run count against the caps at once.
		sessions, err := fs.Uploads()
		if err != nil {
			return nil, err
		}
		fs.SetUploadCounter(storage.NewSessionCounter(limits, sessions))
		fs.SetObserver(s.metrics.ObserveStorage)
		fs.SetRepairObserver(func(d digest.Digest, oldSize, newSize int64) {
			s.integrity.Repaired()
			s.log.Warn("push replaced a damaged blob file", "digest", d, "stored_size", oldSize, "size", newSize)
		})
		s.blobs = fs
		return nil, nil
	}
	cfg, err := s3store.ParseURL(s.cfg.Storage)
	if err != nil {
		return nil, err
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := st.Ping(ctx); err != nil {
		return nil, fmt.Errorf("storage %s: %w", cfg, err)
	}
	// Upload sessions live in the metadata database, which counts them
	// against the caps too.
	s.blobs = s3store.NewBlobs(st, s3store.NewDBSessions(s.meta, limits), s.meta, s3store.BlobsOptions{})
	s.log.Info("content store on S3", "storage", cfg.String(), "redirect", cfg.Redirect)
	if !cfg.Redirect {
		return nil, nil
	}
	return func(ctx context.Context, d digest.Digest) (string, error) {
		return st.PresignGet(ctx, d, cfg.RedirectTTL)
	}, nil
}
