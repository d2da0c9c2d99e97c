package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestTokensPodmanSkopeo repeats the core of TestTokensDocker with podman
// (login, push allowed and denied, pull with a pull-only token) and skopeo
// (copy to allowed and denied repositories, inspect, list-tags with and
// without metadata/read): the same scope maps must mean the same to every
// client.
func TestTokensPodmanSkopeo(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	pm := testutil.NewPodman(t)
	sk := testutil.NewSkopeo(t)

	cli.must("scope-map", "create", "-n", "pod-push", "--repository", "pod/*", "content/read", "content/write")
	pusher := cli.createToken("pod-pusher", "--scope-map", "pod-push")
	puller := cli.createToken("pod-puller", "--repository", "pod/*", "content/read")
	lister := cli.createToken("pod-lister", "--repository", "pod/*", "content/read", "metadata/read")

	// A new image for each client: podman recompresses layers on push,
	// and the blob-info cache that podman and skopeo share would then
	// make skopeo reuse podman's blobs, changing the digests it copies.
	newImage := func(t *testing.T) (testutil.ImageDigests, string) {
		img := testutil.RandomImage(t, 2, 64<<10)
		return testutil.DigestsOf(t, img), testutil.WriteOCILayout(t, img, "v1")
	}

	t.Run("Podman", func(t *testing.T) {
		want, layout := newImage(t)
		login := func(tok token) {
			t.Helper()
			out, err := pm.RunInput(tok.password["password1"], "login", "--tls-verify=false", "--username", tok.name, "--password-stdin", srv.Host)
			if err != nil || !strings.Contains(out, "Login Succeeded") {
				t.Fatalf("podman login as %s: %v\n%s", tok.name, err, out)
			}
		}
		id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+layout+":v1"))
		cases := []struct {
			name    string
			tok     token
			repoTag string
			denied  []string // what podman says; nil when the push must succeed
		}{
			{"push inside the scope map", pusher, "pod/app:v1", nil},
			// podman first asks whether the destination has the blob, with
			// a HEAD, whose 403 has no body to carry berth's message.
			{"push outside the scope map", pusher, "other/app:v1", []string{"failed to read from destination repository other/app: 403 (Forbidden)"}},
			// The blobs exist, so the refusal comes at the manifest.
			{"pull-only token pushes", puller, "pod/app:v2", []string{deniedLine(puller.name, "content/write", "pod/app")}},
		}
		for _, tc := range cases {
			login(tc.tok)
			ref := srv.Host + "/" + tc.repoTag
			pm.MustRun("tag", id, ref)
			digestFile := filepath.Join(t.TempDir(), "digest")
			out, err := pm.Run("push", "--tls-verify=false", "--digestfile", digestFile, ref)
			if tc.denied != nil {
				mustFail(t, "podman: "+tc.name, out, err, tc.denied...)
				if got := ownerManifest(t, srv, tc.repoTag); got != "" {
					t.Errorf("podman: %s: refused, yet the registry holds %s", tc.name, got)
				}
				continue
			}
			if err != nil {
				t.Fatalf("podman: %s: %v", tc.name, err)
			}
			b, err := os.ReadFile(digestFile)
			if err != nil {
				t.Fatal(err)
			}
			if got := ownerManifest(t, srv, tc.repoTag); got != strings.TrimSpace(string(b)) {
				t.Errorf("podman: %s: registry holds %q, podman pushed %s", tc.name, got, b)
			}
		}

		// The pull-only token pulls it back into an empty store.
		login(puller)
		pm.MustRun("rmi", "--all", "--force")
		pm.MustRun("pull", "--tls-verify=false", srv.Host+"/pod/app:v1")
		out := strings.TrimSpace(pm.MustRun("image", "inspect", "--format", "{{.ID}}", srv.Host+"/pod/app:v1"))
		if out != want.Config.Hex {
			t.Errorf("podman pulled image ID %s, want %s", out, want.Config.Hex)
		}
	})

	t.Run("Skopeo", func(t *testing.T) {
		want, layout := newImage(t)
		creds := func(flag string, tok token) string { return flag + "=" + tok.name + ":" + tok.password["password1"] }
		src := "oci:" + layout + ":v1"
		dest := func(repoTag string) string { return "docker://" + srv.Host + "/" + repoTag }
		cases := []struct {
			name   string
			args   []string
			denied []string                       // what the refusal says; nil when the command must succeed
			check  func(t *testing.T, out string) // of stdout, on success
		}{
			{
				name: "copy inside the scope map",
				args: []string{"copy", "--dest-tls-verify=false", creds("--dest-creds", pusher), src, dest("pod/sk:v1")},
			},
			{
				name:   "copy outside the scope map",
				args:   []string{"copy", "--dest-tls-verify=false", creds("--dest-creds", pusher), src, dest("other/sk:v1")},
				denied: []string{"failed to read from destination repository other/sk: 403 (Forbidden)"},
			},
			{
				name:   "copy with a pull-only token",
				args:   []string{"copy", "--dest-tls-verify=false", creds("--dest-creds", puller), src, dest("pod/sk:v2")},
				denied: []string{deniedLine(puller.name, "content/write", "pod/sk")},
			},
			{
				// skopeo lists the tags too, and goes on without them
				// when the registry refuses.
				name:  "inspect with a pull-only token",
				args:  []string{"inspect", "--tls-verify=false", creds("--creds", puller), dest("pod/sk:v1")},
				check: checkInspect(want, nil),
			},
			{
				name:  "inspect with metadata/read",
				args:  []string{"inspect", "--tls-verify=false", creds("--creds", lister), dest("pod/sk:v1")},
				check: checkInspect(want, []string{"v1"}),
			},
			{
				name: "list-tags without metadata/read",
				args: []string{"list-tags", "--tls-verify=false", creds("--creds", puller), dest("pod/sk")},
				// skopeo does not show the error body of a tag list.
				denied: []string{"fetching tags list: invalid status code from registry 403 (Forbidden)"},
			},
			{
				name: "list-tags with metadata/read",
				args: []string{"list-tags", "--tls-verify=false", creds("--creds", lister), dest("pod/sk")},
				check: func(t *testing.T, out string) {
					var tags struct {
						Repository string
						Tags       []string
					}
					if err := json.Unmarshal([]byte(out), &tags); err != nil || !slices.Equal(tags.Tags, []string{"v1"}) {
						t.Errorf("list-tags: %v: want tags [v1]:\n%s", err, out)
					}
				},
			},
		}
		for _, tc := range cases {
			if tc.denied != nil {
				out, err := sk.Run(tc.args...)
				mustFail(t, "skopeo: "+tc.name, out, err, tc.denied...)
				continue
			}
			out, err := sk.Output(tc.args...)
			if err != nil {
				t.Errorf("skopeo: %s: %v", tc.name, err)
				continue
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		}
		if got := ownerManifest(t, srv, "pod/sk:v1"); got != want.Manifest.String() {
			t.Errorf("registry holds %q under pod/sk:v1, skopeo copied %s", got, want.Manifest)
		}
		for _, repoTag := range []string{"other/sk:v1", "pod/sk:v2"} {
			if got := ownerManifest(t, srv, repoTag); got != "" {
				t.Errorf("registry holds %s under %s after a refused copy", got, repoTag)
			}
		}
	})
}

// checkInspect checks `skopeo inspect` output: the image want, with tags
// listed (none when the token may not list them).
func checkInspect(want testutil.ImageDigests, tags []string) func(t *testing.T, out string) {
	return func(t *testing.T, out string) {
		t.Helper()
		var info struct {
			Digest   string
			Layers   []string
			RepoTags []string
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.Digest != want.Manifest.String() ||
			!slices.Equal(info.Layers, hashStrings(want.Layers)) || !slices.Equal(info.RepoTags, tags) {
			t.Errorf("inspect: %v: want digest %s, layers %v and tags %v:\n%s", err, want.Manifest, want.Layers, tags, out)
		}
	}
}

// TestPodmanSearchWithToken lists the catalog with `podman search host/`
// logged in with a token. podman asks for a token without scopes first;
// berth answers the catalog with 401 insufficient_scope naming
// registry:catalog:*, podman asks again with that scope, and the listing
// holds what the token may see and nothing else.
func TestPodmanSearchWithToken(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)
	pm := testutil.NewPodman(t)
	for _, repoTag := range []string{"search/app:v1", "search/tool:v1", "hidden/app:v1"} {
		img := testutil.RandomImage(t, 1, 4<<10)
		if err := remote.Write(srv.Ref(t, repoTag), img, srv.RemoteOptions(t.Context())...); err != nil {
			t.Fatalf("push %s as the owner: %v", repoTag, err)
		}
	}
	tok := cli.createToken("searcher", "--repository", "search/*", "content/read")
	out, err := pm.RunInput(tok.password["password1"], "login", "--tls-verify=false", "--username", tok.name, "--password-stdin", srv.Host)
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("podman login as %s: %v\n%s", tok.name, err, out)
	}
	out, err = pm.Run("search", "--tls-verify=false", "--format", "{{.Name}}", srv.Host+"/")
	if err != nil {
		t.Fatalf("podman search: %v", err)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	if want := []string{srv.Host + "/search/app", srv.Host + "/search/tool"}; !slices.Equal(got, want) {
		t.Errorf("podman search %s/ = %v, want %v", srv.Host, got, want)
	}
}
