package repository_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/repository"
)

// TestTagRulesInTheService: the REST API and the portal go through the
// repository service, which applies tag rules as /v2/ does: a reader
// limited to v* lists, counts and reads only v* tags and the manifests
// reachable from them; a deleter limited to dev-* untags and deletes only
// what no other tag reaches; neither may act on the whole repository.
func TestTagRulesInTheService(t *testing.T) {
	ctx := context.Background()
	store, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const repo = "team/app"
	put := func(content string, tags ...string) digest.Digest {
		t.Helper()
		d := digest.FromString(content)
		m := meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.index.v1+json", Content: []byte(content), Size: int64(len(content))}
		if err := store.PutManifest(ctx, meta.PutManifestRequest{Repository: repo, Manifest: m, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	child := put(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	v1 := put(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":1}]}`, child), "v1", "v1.0")
	dev := put(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"x":"dev"}}`, "dev-1")

	tok := func(name string, actions []string, tags map[string][]string) auth.Identity {
		m := auth.ScopeMap{Name: name + "-map", Type: auth.UserDefined, Actions: actions, Tags: tags}
		return auth.Identity{Kind: auth.KindToken, Name: name, Policy: auth.MustCompile(m)}
	}
	reader := tok("v-reader", []string{"repositories/team/app/metadata/read"},
		map[string][]string{"repositories/team/app/metadata/read": {"v*"}})
	svc := repository.New(store, nil)

	tags, err := svc.Tags(ctx, reader, repo, "", -1)
	if err != nil || !slices.Equal(tags, []string{"v1", "v1.0"}) {
		t.Errorf("Tags = %q, %v", tags, err)
	}
	if tags, err := svc.Tags(ctx, reader, repo, "", 1); err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("Tags n=1 = %q, %v", tags, err)
	}
	if tms, err := svc.TagManifests(ctx, reader, repo, "", 10); err != nil || len(tms) != 2 {
		t.Errorf("TagManifests = %v, %v", tms, err)
	}
	if info, err := svc.Repository(ctx, reader, repo); err != nil || info.Tags != 2 {
		t.Errorf("Repository counts %d tags, %v; want 2", info.Tags, err)
	}
	for _, ref := range []string{"v1", v1.String(), child.String()} {
		if _, err := svc.Manifest(ctx, reader, repo, ref); err != nil {
			t.Errorf("Manifest(%s) = %v", ref, err)
		}
	}
	var denied *auth.DeniedError
	for _, ref := range []string{"dev-1", dev.String()} {
		if _, err := svc.Manifest(ctx, reader, repo, ref); !errors.As(err, &denied) {
			t.Errorf("Manifest(%s) = %v, want a denial", ref, err)
		}
	}
	page, err := svc.List(ctx, reader, repository.ListQuery{N: 10})
	if err != nil || !slices.Equal(page.Names, []string{repo}) {
		t.Errorf("List = %v, %v", page.Names, err)
	}
	blind := tok("w-reader", []string{"repositories/team/app/metadata/read"},
		map[string][]string{"repositories/team/app/metadata/read": {"w*"}})
	if page, err := svc.List(ctx, blind, repository.ListQuery{N: 10}); err != nil || len(page.Names) != 0 {
		t.Errorf("List for a reader of no tag there = %v, %v", page.Names, err)
	}

	deleter := repository.Caller{ID: tok("dev-deleter", []string{"repositories/team/app/content/delete"},
		map[string][]string{"repositories/team/app/content/delete": {"dev-*", "v1.0"}})}
	if err := svc.Untag(ctx, deleter, repo, "v1"); !errors.As(err, &denied) {
		t.Errorf("Untag v1 = %v, want a denial", err)
	}
	if _, err := svc.DeleteManifest(ctx, deleter, repo, "v1.0"); !errors.As(err, &denied) {
		t.Errorf("DeleteManifest v1.0 (v1 points there too) = %v, want a denial", err)
	}
	if _, err := svc.DeleteManifest(ctx, deleter, repo, child.String()); !errors.As(err, &denied) {
		t.Errorf("DeleteManifest of v1's child = %v, want a denial", err)
	}
	if err := svc.DeleteRepository(ctx, deleter, repo); !errors.As(err, &denied) {
		t.Errorf("DeleteRepository = %v, want a denial", err)
	}
	if _, err := svc.DeleteManifest(ctx, deleter, repo, "dev-1"); err != nil {
		t.Errorf("DeleteManifest dev-1 = %v", err)
	}
	if err := svc.Untag(ctx, deleter, repo, "v1.0"); err != nil {
		t.Errorf("Untag v1.0 = %v", err)
	}
}
