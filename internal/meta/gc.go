package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// BlobLink is a blob as one repository sees it.
type BlobLink struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
}

// UnlinkUnreferenced removes, repository by repository, the blob links
// that no manifest of the repository refers to (layers and configs left
// behind by deleted manifests, uploads never followed by a manifest) and
// that were made before cutoff, so pushes in progress keep their blobs.
// With dryRun nothing is removed. It returns the links it removed (or
// would have).
func (s *SQLite) UnlinkUnreferenced(ctx context.Context, cutoff time.Time, dryRun bool) ([]BlobLink, error) {
	repos, err := s.ListRepositories(ctx, "", -1, true)
	if err != nil {
		return nil, err
	}
	var out []BlobLink
	for _, repo := range repos {
		// Each repository in its own write transaction: manifests pushed
		// meanwhile either committed before (and are seen) or wait.
		err := s.tx(ctx, repo, func(tx *sql.Tx) error {
			id, err := repoID(ctx, tx, repo)
			if err != nil {
				return nil // deleted meanwhile
			}
			used, err := referencedBlobs(ctx, tx, id)
			if err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, `SELECT digest, size FROM repository_blobs WHERE repository_id = ? AND created_at < ?`, id, cutoff.UnixMilli())
			if err != nil {
				return fmt.Errorf("list blob links: %w", err)
			}
			var drop []BlobLink
			for rows.Next() {
				var l BlobLink
				var d string
				if err := rows.Scan(&d, &l.Size); err != nil {
					rows.Close()
					return fmt.Errorf("list blob links: %w", err)
				}
				l.Repository, l.Digest = repo, digest.Digest(d)
				if !used[l.Digest] {
					drop = append(drop, l)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("list blob links: %w", err)
			}
			if !dryRun {
				for _, l := range drop {
					if _, err := tx.ExecContext(ctx, `DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?`, id, l.Digest.String()); err != nil {
						return fmt.Errorf("unlink blob: %w", err)
					}
				}
			}
			out = append(out, drop...)
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("collect %s: %w", repo, err)
		}
	}
	return out, nil
}

// referencedBlobs returns the configs and layers of every manifest of a
// repository.
func referencedBlobs(ctx context.Context, tx *sql.Tx, repoID int64) (map[digest.Digest]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT content FROM manifests WHERE repository_id = ?`, repoID)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	defer rows.Close()
	used := map[digest.Digest]bool{}
	for rows.Next() {
		var content []byte
		if err := rows.Scan(&content); err != nil {
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		for d := range manifestBlobs(content) {
			used[d] = true
		}
	}
	return used, rows.Err()
}

// manifestBlobs returns the config and layers a stored manifest refers to.
// Stored manifests were validated on push; one that does not parse refers
// to nothing, which cannot happen for a valid one.
func manifestBlobs(content []byte) map[digest.Digest]bool {
	var doc struct {
		Config *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	out := map[digest.Digest]bool{}
	if json.Unmarshal(content, &doc) != nil {
		return out
	}
	if doc.Config != nil {
		out[doc.Config.Digest] = true
	}
	for _, l := range doc.Layers {
		out[l.Digest] = true
	}
	return out
}

// BlobReferenced reports whether any repository links blob d.
func (s *SQLite) BlobReferenced(ctx context.Context, d digest.Digest) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM repository_blobs WHERE digest = ? LIMIT 1`, d.String()).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up blob: %w", err)
	}
	return true, nil
}
