package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-registry/berth/internal/testutil"
)

// tagDenied is berth's denial of a tag rule, as clients print it.
func tagDenied(tok, verb, tag, repo, patterns string) string {
	return `token "` + tok + `" may not ` + verb + ` tag "` + tag + `" of "` + repo + `" (its scope map allows ` + patterns + `)`
}

// TestTagRules runs the tag rules of docs/tokens.md through the registry
// API with go-containerregistry: a token limited to dev-* and pr-* pushes
// those and is refused v1 with the tag in the message; without
// content/overwrite it may create a tag but not move it, and a rule change
// applies on the next request; a reader limited to v* sees and pulls only
// v* tags and what is reachable from them (index children, referrers);
// a deleter limited to dev-* deletes only what no other tag reaches.
func TestTagRules(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	ctx := t.Context()
	const repo = "team/app"

	cli.must("scope-map", "create", "-n", "ci-dev-tags", "--repository", repo, "content/read",
		"--repository", repo, "content/write", "--tags", "dev-*,pr-*")
	ci := cli.createToken("ci-token", "--scope-map", "ci-dev-tags")
	as := func(tok token) *testutil.Server { return srv.As(tok.name, tok.password["password1"]) }
	push := func(s *testutil.Server, ref string, img v1.Image) error {
		return remote.Write(s.Ref(t, ref), img, s.RemoteOptions(ctx)...)
	}
	img1, img2, img3 := testutil.RandomImage(t, 1, 4<<10), testutil.RandomImage(t, 1, 4<<10), testutil.RandomImage(t, 1, 4<<10)
	dig := func(img v1.Image) string {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}

	t.Run("Write", func(t *testing.T) {
		if err := push(as(ci), repo+":dev-1", img1); err != nil {
			t.Fatalf("push dev-1: %v", err)
		}
		err := push(as(ci), repo+":v1.0", img1)
		if want := tagDenied(ci.name, "write", "v1.0", repo, "dev-*, pr-*"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("push v1.0: %v, want %q", err, want)
		}
		if got := ownerManifest(t, srv, repo+":v1.0"); got != "" {
			t.Errorf("refused push of v1.0 left %s", got)
		}
		// The refusal is in the audit log, with the tag.
		if out := cli.must("audit", "list", "--identity", ci.name, "--result", "denied"); !strings.Contains(out, "content/write on tag v1.0") {
			t.Errorf("the audit log lacks the denial of v1.0:\n%s", out)
		}
		// By digest: what multi-platform children and signatures need.
		if err := remote.Write(as(ci).Digest(t, repo, dig(img2)), img2, as(ci).RemoteOptions(ctx)...); err != nil {
			t.Errorf("push by digest: %v", err)
		}
		// Pushing dev-1 again with the same manifest moves nothing.
		if err := push(as(ci), repo+":dev-1", img1); err != nil {
			t.Errorf("push dev-1 again: %v", err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		err := push(as(ci), repo+":dev-1", img2)
		want := `token "ci-token" may not move tag "dev-1" of "team/app" to another manifest (it lacks content/overwrite on that tag)`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("move dev-1: %v, want %q", err, want)
		}
		if got := ownerManifest(t, srv, repo+":dev-1"); got != dig(img1) {
			t.Errorf("refused move left dev-1 at %s, want %s", got, dig(img1))
		}
		// The rule change applies from the next request.
		cli.must("scope-map", "update", "-n", "ci-dev-tags", "--add-repository", repo, "content/overwrite", "--tags", "dev-*")
		if err := push(as(ci), repo+":dev-1", img2); err != nil {
			t.Errorf("move dev-1 with content/overwrite on dev-*: %v", err)
		}
		if got := ownerManifest(t, srv, repo+":dev-1"); got != dig(img2) {
			t.Errorf("dev-1 at %s after the move, want %s", got, dig(img2))
		}
		if err := push(as(ci), repo+":pr-1", img1); err != nil {
			t.Fatal(err)
		}
		if err := push(as(ci), repo+":pr-1", img2); err == nil {
			t.Error("moved pr-1 with content/overwrite limited to dev-*")
		}
	})

	// The owner's content for the readers: v1 (an image with a referrer),
	// v2 (an index of two images), dev-2 (an image of its own).
	if err := push(srv, repo+":v1", img1); err != nil {
		t.Fatal(err)
	}
	child1, child2 := testutil.RandomImage(t, 1, 4<<10), testutil.RandomImage(t, 1, 4<<10)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: child1, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: child2, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	if err := remote.WriteIndex(srv.Ref(t, repo+":v2"), idx, srv.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
	if err := push(srv, repo+":dev-2", img3); err != nil {
		t.Fatal(err)
	}
	desc1, err := remote.Head(srv.Ref(t, repo+":v1"), srv.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	sig := mutate.Subject(mutate.MediaType(testutil.RandomImage(t, 1, 1<<10), types.OCIManifestSchema1), *desc1).(v1.Image)
	if err := remote.Write(srv.Digest(t, repo, dig(sig)), sig, srv.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}

	t.Run("Read", func(t *testing.T) {
		reader := as(cli.createToken("v-reader", "--repository", repo, "content/read", "metadata/read", "--tags", "v*",
			"--repository", "team/other", "content/read", "--tags", "v*"))
		tags, err := remote.List(reader.Repo(t, repo), reader.RemoteOptions(ctx)...)
		if err != nil || !slices.Equal(tags, []string{"v1", "v2"}) {
			t.Errorf("tags as the v* reader: %q, %v; want [v1 v2]", tags, err)
		}
		pull := func(ref name.Reference) error {
			_, err := remote.Get(ref, reader.RemoteOptions(ctx)...)
			return err
		}
		for _, ref := range []name.Reference{reader.Ref(t, repo+":v1"), reader.Ref(t, repo+":v2"),
			reader.Digest(t, repo, dig(img1)), reader.Digest(t, repo, dig(child1)), reader.Digest(t, repo, dig(sig))} {
			if err := pull(ref); err != nil {
				t.Errorf("pull %s as the v* reader: %v", ref, err)
			}
		}
		for _, ref := range []name.Reference{reader.Ref(t, repo+":dev-2"), reader.Digest(t, repo, dig(img3))} {
			err := pull(ref)
			var te *transport.Error
			if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden {
				t.Errorf("pull %s as the v* reader: %v, want 403", ref, err)
			}
		}
		if err := pull(reader.Ref(t, repo+":dev-2")); err == nil || !strings.Contains(err.Error(), tagDenied("v-reader", "pull", "dev-2", repo, "v*")) {
			t.Errorf("pull dev-2: %v", err)
		}
		// Referrers: those of what the reader may pull, none of the rest.
		refs := func(d string) int {
			x := do(t, reader.Client(t, ctx, "repository:"+repo+":pull"), http.MethodGet, srv.URL+"/v2/"+repo+"/referrers/"+d, nil)
			var body struct{ Manifests []json.RawMessage }
			if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &body) != nil {
				t.Fatalf("referrers: %s", x)
			}
			return len(body.Manifests)
		}
		if n := refs(dig(img1)); n != 1 {
			t.Errorf("referrers of v1 as the v* reader: %d, want 1", n)
		}
		if n := refs(dig(img3)); n != 0 {
			t.Errorf("referrers of dev-2 as the v* reader: %d, want 0", n)
		}
		// The catalog lists team/app, where the reader sees tags, and not
		// team/other, where it sees none.
		if err := push(srv, "team/other:dev-1", img3); err != nil {
			t.Fatal(err)
		}
		cat, err := remote.Catalog(ctx, reader.Repo(t, repo).Registry, reader.RemoteOptions(ctx)...)
		if err != nil || !slices.Equal(cat, []string{repo}) {
			t.Errorf("catalog as the v* reader: %q, %v; want [%s]", cat, err, repo)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		del := as(cli.createToken("dev-deleter", "--repository", repo, "content/read", "content/delete", "--tags", "dev-*"))
		c := del.Client(t, ctx, "repository:"+repo+":pull,delete")
		status := func(ref string) int {
			return do(t, c, http.MethodDelete, srv.URL+"/v2/"+repo+"/manifests/"+ref, nil).resp.StatusCode
		}
		if s := status("v1"); s != http.StatusForbidden {
			t.Errorf("untag v1 as the dev-* deleter: %d, want 403", s)
		}
		if s := status(dig(img1)); s != http.StatusForbidden {
			t.Errorf("delete the manifest of v1 as the dev-* deleter: %d, want 403", s)
		}
		if s := status(dig(child1)); s != http.StatusForbidden {
			t.Errorf("delete a child of the v2 index as the dev-* deleter: %d, want 403", s)
		}
		if s := status(dig(img3)); s != http.StatusAccepted {
			t.Errorf("delete the manifest of dev-2 as the dev-* deleter: %d, want 202", s)
		}
		if s := status("pr-1"); s != http.StatusForbidden {
			t.Errorf("untag pr-1 as the dev-* deleter: %d, want 403", s)
		}
		if s := status("dev-1"); s != http.StatusAccepted {
			t.Errorf("untag dev-1 as the dev-* deleter: %d, want 202", s)
		}
	})
}
