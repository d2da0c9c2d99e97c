package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
)

// MaxReach bounds how many manifests Reachable visits. A repository whose
// tags reach more than that gets no answer (ErrReachLimit).
const MaxReach = 20000

// ErrReachLimit is Reachable's answer when the tags reach more than
// MaxReach manifests. Callers deny: a read of a manifest is refused, and so
// is a deletion, which asks whether a tag it may not delete reaches the
// manifest (treating the limit as "not reachable" would allow it).
var ErrReachLimit = errors.New("the tags reach too many manifests to decide")

// Reachable reports whether manifest d of repo is reachable from a tag for
// which from returns true. Reachable from a set of tags means: the
// manifests those tags point at; the children of a reachable index (its
// "manifests"), at any depth; and the referrers of a reachable manifest
// (manifests whose subject it is: signatures, SBOMs, attestations), at any
// depth. It is how a scope map limited to tags lets a token pull the
// platform images and the signatures of the tags it may pull, and nothing
// else. A repository that does not exist reaches nothing. Past MaxReach
// it returns ErrReachLimit.
func (s *Store) Reachable(ctx context.Context, repo string, from func(tag string) bool, d digest.Digest) (bool, error) {
	id, err := repoID(ctx, s.r, repo)
	if errors.Is(err, ErrRepositoryNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT name, digest FROM tags WHERE repository_id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	seen := map[string]bool{}
	var queue []string
	for rows.Next() {
		var tag, dg string
		if err := rows.Scan(&tag, &dg); err != nil {
			rows.Close()
			return false, fmt.Errorf("list tags: %w", err)
		}
		if from(tag) && !seen[dg] {
			seen[dg] = true
			queue = append(queue, dg)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	want := d.String()
	if seen[want] {
		return true, nil
	}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		next, err := s.reachNext(ctx, id, x)
		if err != nil {
			return false, err
		}
		for _, n := range next {
			if n == want {
				return true, nil
			}
			if !seen[n] {
				if len(seen) >= MaxReach {
					return false, ErrReachLimit
				}
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	return false, nil
}

// reachNext lists the manifests one step from manifest x: its children
// if it is an index, and its referrers.
func (s *Store) reachNext(ctx context.Context, id int64, x string) ([]string, error) {
	var out []string
	var sum string
	err := s.r.QueryRowContext(ctx, `SELECT m.summary FROM manifests m INDEXED BY manifests_list WHERE m.repository_id = ? AND m.digest = ?`, id, x).Scan(&sum)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // a tag of a manifest deleted meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if sm, _ := decodeSummary(sum); sm.Children > 0 {
		var content []byte
		if err := s.r.QueryRowContext(ctx, `SELECT content FROM manifests WHERE repository_id = ? AND digest = ?`, id, x).Scan(&content); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		if json.Unmarshal(content, &idx) == nil {
			for _, c := range idx.Manifests {
				out = append(out, c.Digest)
			}
		}
	}
	rows, err := s.r.QueryContext(ctx, `SELECT m.digest FROM manifests m INDEXED BY manifests_subject WHERE m.repository_id = ? AND m.subject = ?`, id, x)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	refs, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	return append(out, refs...), nil
}

// AnyTag reports whether repo has a tag for which f returns true (the
// catalog of a token that may read only some tags).
func (s *Store) AnyTag(ctx context.Context, repo string, f func(tag string) bool) (bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = ?`, repo)
	if err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	tags, err := scanStrings(rows)
	if err != nil {
		return false, fmt.Errorf("list tags: %w", err)
	}
	return slices.ContainsFunc(tags, f), nil
}
