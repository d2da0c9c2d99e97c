// Package gc reclaims space: blob links no manifest needs any more, then
// blob content no repository links. It runs while the registry serves;
// a grace period protects pushes in progress.
package gc

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
)

// Metadata is what collection needs from the metadata store.
type Metadata interface {
	UnlinkUnreferenced(ctx context.Context, cutoff time.Time, dryRun bool) ([]meta.BlobLink, error)
	BlobReferenced(ctx context.Context, d digest.Digest) (bool, error)
}

// Blobs is what collection needs from the content store.
type Blobs interface {
	WalkBlobs(fn func(d digest.Digest, touched time.Time) error) error
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	DeleteIfUntouched(d digest.Digest, cutoff time.Time) (bool, error)
}

// Options configure one collection.
type Options struct {
	// Grace spares links and blobs that a push referred to (uploaded,
	// re-uploaded, mounted, found with HEAD) within this (default one
	// hour): a client pushes layers before the manifest that refers to them.
	Grace  time.Duration
	DryRun bool
	Now    func() time.Time
}

// Report says what a collection removed (or, dry, would remove).
type Report struct {
	DryRun        bool            `json:"dryRun"`
	UnlinkedBlobs []meta.BlobLink `json:"unlinkedBlobs"`
	DeletedBlobs  []digest.Digest `json:"deletedBlobs"`
	FreedBytes    int64           `json:"freedBytes"`
	Duration      string          `json:"duration"`
}

// Collect runs one collection.
func Collect(ctx context.Context, md Metadata, blobs Blobs, o Options) (Report, error) {
	if o.Grace <= 0 {
		o.Grace = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	cutoff := start.Add(-o.Grace)
	r := Report{DryRun: o.DryRun, UnlinkedBlobs: []meta.BlobLink{}, DeletedBlobs: []digest.Digest{}}
	links, err := md.UnlinkUnreferenced(ctx, cutoff, o.DryRun)
	r.UnlinkedBlobs = append(r.UnlinkedBlobs, links...)
	if err != nil {
		return r, err
	}
	// In a dry run the links were kept, so count what they alone hold.
	dryUnlinked := map[digest.Digest]bool{}
	if o.DryRun {
		for _, l := range links {
			dryUnlinked[l.Digest] = true
		}
	}
	err = blobs.WalkBlobs(func(d digest.Digest, touched time.Time) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !touched.Before(cutoff) {
			return nil
		}
		used, err := md.BlobReferenced(ctx, d)
		if err != nil {
			return err
		}
		if used && !(o.DryRun && dryUnlinked[d]) {
			return nil
		}
		size, err := blobs.Stat(ctx, d)
		if err != nil {
			return nil // gone meanwhile
		}
		if !o.DryRun {
			deleted, err := blobs.DeleteIfUntouched(d, cutoff)
			if err != nil || !deleted {
				return err
			}
		}
		r.DeletedBlobs = append(r.DeletedBlobs, d)
		r.FreedBytes += size
		return nil
	})
	r.Duration = o.Now().Sub(start).String()
	if err != nil {
		return r, fmt.Errorf("collect blobs: %w", err)
	}
	return r, nil
}
