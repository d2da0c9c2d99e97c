package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
)

// PlatformFill is an image manifest stored before summaries carried an
// image's platform (PutManifestRequest.Platform), whose platform is yet to
// be read from its config.
type PlatformFill struct {
	Repository string
	Manifest   Manifest
}

// PlatformFills returns up to n manifests whose platform is yet to be
// filled in, with their content. Entries of manifests deleted since are
// dropped on the way.
func (s *Store) PlatformFills(ctx context.Context, n int) ([]PlatformFill, error) {
	db := s.db.W()
	if _, err := db.ExecContext(ctx, `DELETE FROM platform_fill WHERE NOT EXISTS
		(SELECT 1 FROM manifests m WHERE m.repository_id = platform_fill.repository_id AND m.digest = platform_fill.digest)`); err != nil {
		return nil, fmt.Errorf("drop platform fills of deleted manifests: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT r.name, `+manifestCols+` FROM platform_fill f
		JOIN repositories r ON r.id = f.repository_id
		JOIN manifests m ON m.repository_id = f.repository_id AND m.digest = f.digest
		ORDER BY f.repository_id, f.digest LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("list platform fills: %w", err)
	}
	defer rows.Close()
	var out []PlatformFill
	for rows.Next() {
		var f PlatformFill
		var name string
		m, err := scanManifest(prefixScanner{rows, &name})
		if err != nil {
			return nil, err
		}
		f.Repository, f.Manifest = name, m
		out = append(out, f)
	}
	return out, rows.Err()
}

// FillPlatform records platform ("" when the config named none or could
// not be read) as the platform of image d in repo, as PutManifest would
// have, and takes it off the list PlatformFills returns.
func (s *Store) FillPlatform(ctx context.Context, repo string, d digest.Digest, platform string) error {
	return s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := repoID(ctx, tx, repo)
		if errors.Is(err, ErrRepositoryNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if platform != "" {
			var sum string
			err := tx.QueryRowContext(ctx, `SELECT summary FROM manifests WHERE repository_id = ? AND digest = ?`, id, d.String()).Scan(&sum)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read summary: %w", err)
			}
			if sm, ok := decodeSummary(sum); err == nil && ok && sm.Children == 0 {
				sm.Platforms, sm.PlatformCount = []string{platform}, 1
				if _, err := tx.ExecContext(ctx, `UPDATE manifests SET summary = ? WHERE repository_id = ? AND digest = ?`, encodeSummary(sm), id, d.String()); err != nil {
					return fmt.Errorf("update summary: %w", err)
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM platform_fill WHERE repository_id = ? AND digest = ?`, id, d.String()); err != nil {
			return fmt.Errorf("drop platform fill: %w", err)
		}
		return nil
	})
}
