package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
)

// Summary is what lists show of a manifest. It is worked out from the
// manifest's content when the manifest is stored, so that listing a
// repository never parses manifests: an index may name tens of thousands of
// children, megabytes of JSON for each row of a page.
type Summary struct {
	// Size is what pulling the manifest downloads: the manifest, its config
	// and its layers; for an index, the index and each of its first
	// SummaryChildren children so counted, as far as the repository had
	// them when the index was stored (a missing child counts its
	// descriptor's size).
	Size int64 `json:"size"`
	// Children is the number of manifests an index names.
	Children int `json:"children,omitempty"`
	// Platforms are the platforms of an index's children, attestations
	// left out, in the index's order: the first SummaryPlatforms of them;
	// for an image, its own platform (PutManifestRequest.Platform), when
	// the registry could read it from the config. PlatformCount is how many
	// there are in all.
	Platforms     []string `json:"platforms,omitempty"`
	PlatformCount int      `json:"platformCount,omitempty"`
}

// Bounds of a Summary.
const (
	// SummaryChildren is how many children of an index count in its Size.
	SummaryChildren = 32
	// SummaryPlatforms is how many platforms a Summary keeps.
	SummaryPlatforms = 16
)

// summaryDoc is the part of a manifest or index a Summary is made of.
type summaryDoc struct {
	Config *struct {
		Size int64 `json:"size"`
	} `json:"config"`
	Layers []struct {
		Size int64 `json:"size"`
	} `json:"layers"`
	Manifests []struct {
		Digest   digest.Digest `json:"digest"`
		Size     int64         `json:"size"`
		Platform *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// IsAttestation tells buildx's attestation manifests, which an index lists
// with the platform unknown/unknown or a reference-type annotation, from
// real platforms.
func IsAttestation(annotations map[string]string, os, arch string) bool {
	return annotations["vnd.docker.reference.type"] == "attestation-manifest" || (os == "unknown" && arch == "unknown")
}

// summarize works out the Summary of a manifest with content, asking
// child for the stored size of an index's children (ok false: not stored).
func summarize(size int64, content []byte, child func(digest.Digest) (int64, bool, error)) (Summary, error) {
	var doc summaryDoc
	// Content was validated when it was pushed; a manifest that does not
	// decode still gets a summary of its own size.
	_ = json.Unmarshal(content, &doc)
	s := Summary{Size: size, Children: len(doc.Manifests)}
	if doc.Config != nil {
		s.Size += doc.Config.Size
	}
	for _, l := range doc.Layers {
		s.Size += l.Size
	}
	for i, c := range doc.Manifests {
		if i < SummaryChildren {
			n, ok, err := child(c.Digest)
			if err != nil {
				return Summary{}, err
			}
			if !ok {
				n = c.Size
			}
			s.Size += n
		}
		if p := c.Platform; p != nil && !IsAttestation(c.Annotations, p.OS, p.Architecture) {
			s.PlatformCount++
			if len(s.Platforms) < SummaryPlatforms {
				name := p.OS + "/" + p.Architecture
				if p.Variant != "" {
					name += "/" + p.Variant
				}
				s.Platforms = append(s.Platforms, name)
			}
		}
	}
	return s, nil
}

// childSize returns a function that looks up the Summary size of a stored
// manifest of repository id, for summarize.
func childSize(ctx context.Context, q querier, id int64) func(digest.Digest) (int64, bool, error) {
	return func(d digest.Digest) (int64, bool, error) {
		var size int64
		var sum string
		err := q.QueryRowContext(ctx, `SELECT size, summary FROM manifests WHERE repository_id = ? AND digest = ?`, id, d.String()).Scan(&size, &sum)
		if err == sql.ErrNoRows {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("read manifest %s: %w", d, err)
		}
		if s, ok := decodeSummary(sum); ok {
			return s.Size, true, nil
		}
		return size, true, nil
	}
}

func encodeSummary(s Summary) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// decodeSummary decodes a stored summary; ok is false for a manifest
// stored before summaries were (backfillSummaries fills those in).
func decodeSummary(v string) (Summary, bool) {
	var s Summary
	if v == "" || json.Unmarshal([]byte(v), &s) != nil {
		return Summary{}, false
	}
	return s, true
}

// backfillSummaries works out the summaries of manifests stored before
// summaries were: images first, then indexes, whose sizes count their
// children's. It runs once, when the database is opened after the upgrade.
func backfillSummaries(ctx context.Context, db *sqldb.Conn) error {
	for _, indexes := range []bool{false, true} {
		for {
			n, err := backfillBatch(ctx, db, indexes)
			if err != nil {
				return fmt.Errorf("summarize manifests: %w", err)
			}
			if n == 0 {
				break
			}
		}
	}
	return nil
}

// backfillBatch summarizes up to 100 manifests without a summary, of
// indexes or of everything else, and returns how many it did.
func backfillBatch(ctx context.Context, db *sqldb.Conn, indexes bool) (int, error) {
	isIndex := `media_type IN ('application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json')`
	if !indexes {
		isIndex = "NOT " + isIndex
	}
	rows, err := db.QueryContext(ctx, `SELECT repository_id, digest, size, content FROM manifests WHERE summary = '' AND `+isIndex+` LIMIT 100`)
	if err != nil {
		return 0, err
	}
	type row struct {
		repo    int64
		digest  string
		size    int64
		content []byte
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.repo, &r.digest, &r.size, &r.content); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, r := range todo {
		s, err := summarize(r.size, r.content, childSize(ctx, db, r.repo))
		if err != nil {
			return 0, err
		}
		if _, err := db.ExecContext(ctx, `UPDATE manifests SET summary = ? WHERE repository_id = ? AND digest = ?`, encodeSummary(s), r.repo, r.digest); err != nil {
			return 0, err
		}
	}
	return len(todo), nil
}
