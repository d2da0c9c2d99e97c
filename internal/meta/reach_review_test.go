package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/sqldb"
)

// TestReachableOverTheLimitIsNoAnswer: when the tags reach more than
// MaxReach manifests, Reachable gives no answer (ErrReachLimit) rather than
// "not reachable", which would let a dev-* deleter delete v1's platform
// image after attaching enough referrers to another v* tag's manifest.
func TestReachableOverTheLimitIsNoAnswer(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const repo = "team/app"
	put := func(content string, tags ...string) digest.Digest {
		t.Helper()
		d := digest.FromString(content)
		m := Manifest{Digest: d, MediaType: "application/vnd.oci.image.index.v1+json", Content: []byte(content), Size: int64(len(content))}
		if err := s.PutManifest(ctx, PutManifestRequest{Repository: repo, Manifest: m, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// v0 (first in the table) points at a manifest with more referrers
	// than MaxReach; v1 at an index whose child is the one asked about.
	a := put(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"a":"0"}}`, "v0")
	child := put(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"c":"1"}}`)
	put(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":1}]}`, child), "v1")
	id, err := repoID(ctx, s.r, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tx(ctx, repo, func(tx *sqldb.Tx) error {
		for i := range MaxReach + 1 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO manifests(repository_id, digest, media_type, artifact_type, subject, size, content, annotations, created_at, summary)
				VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', '', ?, 2, '{}', '', 0, ?)`,
				id, digest.FromString(fmt.Sprint("ref", i)).String(), a.String(), encodeSummary(Summary{})); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reached, err := s.Reachable(ctx, repo, func(tag string) bool { return tag != "dev-1" }, child)
	if reached || !errors.Is(err, ErrReachLimit) {
		t.Errorf("Reachable over the limit = %v, %v; want false, ErrReachLimit", reached, err)
	}
	// Under the limit it still answers.
	if reached, err := s.Reachable(ctx, repo, func(tag string) bool { return tag == "v1" }, child); !reached || err != nil {
		t.Errorf("Reachable from v1 = %v, %v; want true", reached, err)
	}
}
