package repository_test

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/repository"
)

// TestDetailedListHidesRepositoriesWithoutReadableTags: the sorted list of
// the portal and of GET /api/v1/repositories?sort= shows a reader limited
// to some tags the repositories where it can see a tag, as List and
// /v2/_catalog do, and not, with their sizes and last pushes, the others.
func TestDetailedListHidesRepositoriesWithoutReadableTags(t *testing.T) {
	ctx := context.Background()
	store, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, repo := range []string{"team/app", "team/other"} {
		content := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"r":"` + repo + `"}}`
		m := meta.Manifest{Digest: digest.FromString(content), MediaType: "application/vnd.oci.image.index.v1+json", Content: []byte(content), Size: int64(len(content))}
		tag := "v1"
		if repo == "team/other" {
			tag = "dev-1"
		}
		if err := store.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Manifest: m, Tags: []string{tag}}); err != nil {
			t.Fatal(err)
		}
	}
	m := auth.ScopeMap{Name: "v-reader-map", Type: auth.UserDefined,
		Actions: []string{"repositories/team/*/metadata/read"},
		Tags:    map[string][]string{"repositories/team/*/metadata/read": {"v*"}}}
	reader := auth.Identity{Kind: auth.KindToken, Name: "v-reader", Policy: auth.MustCompile(m)}
	svc := repository.New(store, nil)

	for _, sortBy := range []string{repository.SortName, repository.SortLastPushed, repository.SortCreated} {
		p, err := svc.ListDetailed(ctx, reader, repository.DetailQuery{Sort: sortBy, Page: 1, PageSize: 50})
		if err != nil {
			t.Fatalf("sort %s: %v", sortBy, err)
		}
		var names []string
		for _, r := range p.Rows {
			names = append(names, r.Name)
		}
		if p.Total != 1 || len(names) != 1 || names[0] != "team/app" {
			t.Errorf("sort %s: ListDetailed = %q (total %d), want only team/app, where the reader sees a v* tag", sortBy, names, p.Total)
		}
	}
}
