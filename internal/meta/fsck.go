package meta

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// The walks below read everything a consistency check needs, each in one
// read transaction of its own, so a check never holds the writer.

// WalkBlobLinks calls fn for every blob link of every repository.
func (s *Store) WalkBlobLinks(ctx context.Context, fn func(BlobLink) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT r.name, b.digest, b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id`)
	if err != nil {
		return fmt.Errorf("list blob links: %w", err)
	}
	return eachRow(rows, "list blob links", func() error {
		var l BlobLink
		var d string
		if err := rows.Scan(&l.Repository, &d, &l.Size); err != nil {
			return err
		}
		l.Digest = digest.Digest(d)
		return fn(l)
	})
}

// WalkManifests calls fn for every manifest of every repository, with its
// content.
func (s *Store) WalkManifests(ctx context.Context, fn func(repo string, m Manifest) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT r.name, `+manifestCols+` FROM manifests m JOIN repositories r ON r.id = m.repository_id`)
	if err != nil {
		return fmt.Errorf("list manifests: %w", err)
	}
	return eachRow(rows, "list manifests", func() error {
		var repo string
		m, err := scanManifest(prefixScanner{rows, &repo})
		if err != nil {
			return err
		}
		return fn(repo, m)
	})
}

// WalkTags calls fn for every tag of every repository.
func (s *Store) WalkTags(ctx context.Context, fn func(repo, tag string, d digest.Digest) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT r.name, t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id`)
	if err != nil {
		return fmt.Errorf("list tags: %w", err)
	}
	return eachRow(rows, "list tags", func() error {
		var repo, tag, d string
		if err := rows.Scan(&repo, &tag, &d); err != nil {
			return err
		}
		return fn(repo, tag, digest.Digest(d))
	})
}

// eachRow calls fn for each row and closes rows.
func eachRow(rows *sql.Rows, what string, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// prefixScanner scans one leading column into first and the rest as
// scanManifest expects.
type prefixScanner struct {
	rows  *sql.Rows
	first *string
}

func (p prefixScanner) Scan(dest ...any) error {
	return p.rows.Scan(append([]any{p.first}, dest...)...)
}
