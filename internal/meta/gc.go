package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
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
// that no push referred to since cutoff (made, re-linked, mounted or found
// by HEAD), so pushes in progress keep their blobs. With dryRun nothing is
// removed. It returns the links it removed (or would have).
//
// Manifests are parsed outside any write transaction, which would otherwise
// hold up every push for as long as a large repository takes to read. The
// short write transactions that remove links re-check what may have changed
// meanwhile: manifests pushed since, and links referenced since.
func (s *Store) UnlinkUnreferenced(ctx context.Context, cutoff time.Time, dryRun bool) ([]BlobLink, error) {
	repos, err := s.ListRepositories(ctx, "", -1, true)
	if err != nil {
		return nil, err
	}
	var out []BlobLink
	for _, repo := range repos {
		c, err := s.unlinkCandidates(ctx, repo, cutoff)
		if err != nil {
			return out, fmt.Errorf("collect %s: %w", repo, err)
		}
		if dryRun {
			out = append(out, c.links...)
			continue
		}
		for batch := range slices.Chunk(c.links, unlinkBatch) {
			removed, err := s.unlinkStale(ctx, repo, cutoff, batch, &c)
			out = append(out, removed...)
			if err != nil {
				return out, fmt.Errorf("collect %s: %w", repo, err)
			}
		}
	}
	return out, nil
}

// unlinkBatch bounds how many links one write transaction removes.
const unlinkBatch = 500

// candidates are the links of one repository that looked unreferenced,
// and the manifests that were read to decide it, with what they refer to.
type candidates struct {
	links []BlobLink
	seen  map[string]bool // manifest digests already parsed
	used  map[digest.Digest]bool
}

// unlinkCandidates reads, in one read transaction, the links of repo that
// no manifest refers to and that were last referenced before cutoff.
func (s *Store) unlinkCandidates(ctx context.Context, repo string, cutoff time.Time) (candidates, error) {
	c := candidates{seen: map[string]bool{}, used: map[digest.Digest]bool{}}
	tx, err := s.r.BeginTx(ctx, s.d.SnapshotTx())
	if err != nil {
		return c, fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	id, err := repoID(ctx, tx, repo)
	if errors.Is(err, ErrRepositoryNotFound) {
		return c, nil // deleted meanwhile
	}
	if err != nil {
		return c, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT digest, content FROM manifests WHERE repository_id = ?`, id)
	if err != nil {
		return c, fmt.Errorf("read manifests: %w", err)
	}
	for rows.Next() {
		var md string
		var content []byte
		if err := rows.Scan(&md, &content); err != nil {
			rows.Close()
			return c, fmt.Errorf("read manifests: %w", err)
		}
		c.seen[md] = true
		for d := range manifestBlobs(content) {
			c.used[d] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("read manifests: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT digest, size FROM repository_blobs WHERE repository_id = ? AND referenced_at < ?`, id, cutoff.UnixMilli())
	if err != nil {
		return c, fmt.Errorf("list blob links: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		l := BlobLink{Repository: repo}
		var d string
		if err := rows.Scan(&d, &l.Size); err != nil {
			return c, fmt.Errorf("list blob links: %w", err)
		}
		l.Digest = digest.Digest(d)
		if !c.used[l.Digest] {
			c.links = append(c.links, l)
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("list blob links: %w", err)
	}
	return c, nil
}

// unlinkStale removes those of links that are still unreferenced, in one
// write transaction. Only manifests that c has not seen are parsed here
// (those pushed since the candidates were read; a digest names immutable
// content), and a link referenced since cutoff stays.
func (s *Store) unlinkStale(ctx context.Context, repo string, cutoff time.Time, links []BlobLink, c *candidates) ([]BlobLink, error) {
	var removed []BlobLink
	var parsed []string
	var used map[digest.Digest]bool
	err := s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		id, err := lockRepo(ctx, tx, repo)
		if errors.Is(err, ErrRepositoryNotFound) {
			return nil // deleted meanwhile, links and all
		}
		if err != nil {
			return err
		}
		if parsed, used, err = unseenManifestBlobs(ctx, tx, id, c.seen); err != nil {
			return err
		}
		for _, l := range links {
			if c.used[l.Digest] || used[l.Digest] {
				continue
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ? AND referenced_at < ?`, id, l.Digest.String(), cutoff.UnixMilli())
			if err != nil {
				return fmt.Errorf("unlink blob: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("unlink blob: %w", err)
			} else if n == 1 {
				removed = append(removed, l)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, md := range parsed {
		c.seen[md] = true
	}
	for d := range used {
		c.used[d] = true
	}
	return removed, nil
}

// unseenManifestBlobs returns the manifests of a repository that are not in
// seen, and what they refer to.
func unseenManifestBlobs(ctx context.Context, tx *sqldb.Tx, repoID int64, seen map[string]bool) ([]string, map[digest.Digest]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT digest FROM manifests WHERE repository_id = ?`, repoID)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifests: %w", err)
	}
	all, err := scanStrings(rows)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifests: %w", err)
	}
	unseen := slices.DeleteFunc(all, func(d string) bool { return seen[d] })
	used := map[digest.Digest]bool{}
	for _, md := range unseen {
		var content []byte
		if err := tx.QueryRowContext(ctx, `SELECT content FROM manifests WHERE repository_id = ? AND digest = ?`, repoID, md).Scan(&content); err != nil {
			return nil, nil, fmt.Errorf("read manifest: %w", err)
		}
		for d := range manifestBlobs(content) {
			used[d] = true
		}
	}
	return unseen, used, nil
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
func (s *Store) BlobReferenced(ctx context.Context, d digest.Digest) (bool, error) {
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
