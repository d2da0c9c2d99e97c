package meta

import (
	"context"
	"fmt"
	"time"
)

// RepositoryStats is what the repository list shows of each repository
// beyond its record: when it was last pushed to and its size on disk.
type RepositoryStats struct {
	Name      string
	CreatedAt time.Time
	Listed    bool // listEnabled
	// LastPushed is the latest manifest push or tag move; zero if none.
	LastPushed time.Time
	// Size is the sum of the sizes of the blobs the repository links and
	// of its manifests: what it takes on disk on its own (blobs shared
	// with other repositories count in each).
	Size      int64
	Manifests int
}

// AllRepositoryStats returns the stats of every repository, by name, in
// one query, for lists sorted by something other than the name.
func (s *Store) AllRepositoryStats(ctx context.Context) ([]RepositoryStats, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT r.name, r.created_at, r.list_enabled,
		COALESCE((SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = r.id), 0),
		COALESCE((SELECT MAX(t.updated_at) FROM tags t WHERE t.repository_id = r.id), 0),
		COALESCE((SELECT SUM(b.size) FROM repository_blobs b WHERE b.repository_id = r.id), 0),
		COALESCE((SELECT SUM(m.size) FROM manifests m WHERE m.repository_id = r.id), 0),
		(SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id)
		FROM repositories r ORDER BY r.name`)
	if err != nil {
		return nil, fmt.Errorf("repository stats: %w", err)
	}
	defer rows.Close()
	var out []RepositoryStats
	for rows.Next() {
		var st RepositoryStats
		var created, manifest, tag, blobs, manifests int64
		if err := rows.Scan(&st.Name, &created, &st.Listed, &manifest, &tag, &blobs, &manifests, &st.Manifests); err != nil {
			return nil, fmt.Errorf("repository stats: %w", err)
		}
		st.CreatedAt = time.UnixMilli(created).UTC()
		if last := max(manifest, tag); last > 0 {
			st.LastPushed = time.UnixMilli(last).UTC()
		}
		st.Size = blobs + manifests
		out = append(out, st)
	}
	return out, rows.Err()
}

// StorageUsed is the size of the content the registry stores: every blob
// once, however many repositories link it, and every manifest.
func (s *Store) StorageUsed(ctx context.Context) (int64, error) {
	var blobs, manifests int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM repository_blobs GROUP BY digest) b`).Scan(&blobs); err != nil {
		return 0, fmt.Errorf("storage used: %w", err)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM manifests`).Scan(&manifests); err != nil {
		return 0, fmt.Errorf("storage used: %w", err)
	}
	return blobs + manifests, nil
}
