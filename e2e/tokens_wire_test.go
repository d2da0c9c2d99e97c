package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestTokensRegistryAPI checks, with raw requests that authenticate as
// docker does (a Bearer challenge, then the token endpoint with the token's
// Basic credentials), what a token's scope map means where clients show too
// little: listing tags needs metadata/read, the catalog lists only what the
// token may see, a cross-repository mount from a repository the token
// cannot read neither mounts nor reveals the blob, and access tokens issued
// before a change are judged by the token's state at the time of use.
func TestTokensRegistryAPI(t *testing.T) {
	srv := startBerth(t)
	cli := newBerthCLI(t, srv)

	// ownerPush pushes a new one-layer image as the owner.
	ownerPush := func(t *testing.T, repoTag string) testutil.ImageDigests {
		t.Helper()
		img := testutil.RandomImage(t, 1, 4<<10)
		if err := remote.Write(srv.Ref(t, repoTag), img, srv.RemoteOptions(t.Context())...); err != nil {
			t.Fatalf("push %s as the owner: %v", repoTag, err)
		}
		return testutil.DigestsOf(t, img)
	}
	bearer := func(tok string) string { return "Bearer " + tok }
	// denied checks a 403 DENIED answer whose message says want.
	denied := func(t *testing.T, x exchange, want string) {
		t.Helper()
		var e ociError
		if x.resp.StatusCode != http.StatusForbidden || json.Unmarshal(x.result, &e) != nil ||
			!slices.Equal(e.codes(), []string{"DENIED"}) || !strings.Contains(e.Errors[0].Message, want) {
			t.Errorf("want 403 DENIED saying %q\n%s", want, x)
		}
	}
	// unauthorized checks a 401 UNAUTHORIZED answer with a challenge,
	// whose message says want.
	unauthorized := func(t *testing.T, x exchange, want string) {
		t.Helper()
		var e ociError
		if x.resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(x.result, &e) != nil ||
			!slices.Equal(e.codes(), []string{"UNAUTHORIZED"}) || !strings.Contains(e.Errors[0].Message, want) ||
			!strings.HasPrefix(x.resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("want 401 UNAUTHORIZED with a Bearer challenge, saying %q\n%s", want, x)
		}
	}

	t.Run("TagListNeedsMetadataRead", func(t *testing.T) {
		const repo = "tags/app"
		ownerPush(t, repo+":v1")
		ownerPush(t, repo+":v2")
		cases := []struct {
			actions []string
			allowed bool
		}{
			{[]string{"content/read"}, false},
			{[]string{"content/read", "content/write"}, false},
			{[]string{"content/read", "metadata/read"}, true},
			{[]string{"metadata/read"}, true},
		}
		for i, tc := range cases {
			tok := cli.createToken(fmt.Sprintf("tags-%d", i), append([]string{"--repository", repo}, tc.actions...)...)
			// Clients ask for pull to list tags; Basic credentials
			// straight on /v2/ must be judged the same way.
			authz := map[string]string{
				"bearer": bearer(accessToken(t, srv, tok.name, tok.password["password1"], "repository:"+repo+":pull")),
				"basic":  basicAuth(tok.name, tok.password["password1"]),
			}
			for _, how := range slices.Sorted(maps.Keys(authz)) {
				x := do(t, http.DefaultClient, http.MethodGet, srv.URL+"/v2/"+repo+"/tags/list", nil, "Authorization", authz[how])
				what := fmt.Sprintf("%v with %s credentials", tc.actions, how)
				if !tc.allowed {
					t.Logf("%s: %s", what, x.result)
					denied(t, x, "requested access to the resource is denied: "+lacks(tok.name, "metadata/read", repo))
					continue
				}
				var tags struct {
					Name string   `json:"name"`
					Tags []string `json:"tags"`
				}
				if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &tags) != nil {
					t.Errorf("%s: want 200 with the tags\n%s", what, x)
					continue
				}
				slices.Sort(tags.Tags)
				if tags.Name != repo || !slices.Equal(tags.Tags, []string{"v1", "v2"}) {
					t.Errorf("%s: tags of %s = %v, want [v1 v2]", what, tags.Name, tags.Tags)
				}
			}
		}
	})

	t.Run("BuiltInScopeMapsAndAdditiveGrants", func(t *testing.T) {
		// go-containerregistry as the client, with the token's Basic
		// credentials: it goes through the token endpoint like docker.
		cli.must("scope-map", "create", "-n", "add-up",
			"--repository", "add/*", "content/read",
			"--repository", "add/team/*", "content/write")
		cases := []struct {
			scopeMap         string
			repo             string
			pull, push, list bool
		}{
			{"_repositories_pull", "builtin/pull", true, false, false},
			{"_repositories_pull_metadata_read", "builtin/pullmeta", true, false, true},
			{"_repositories_push", "builtin/push", true, true, false},
			{"_repositories_push_metadata_write", "builtin/pushmeta", true, true, true},
			{"_repositories_admin", "builtin/admin", true, true, true},
			// add/* gives read, add/team/* write: both on add/team/x.
			{"add-up", "add/team/x", true, true, false},
			{"add-up", "add/other", true, false, false},
		}
		result := func(err error) string {
			var terr *transport.Error
			switch {
			case err == nil:
				return "allowed"
			case errors.As(err, &terr) && terr.StatusCode == http.StatusForbidden:
				return "denied"
			}
			return err.Error()
		}
		verdict := map[bool]string{true: "allowed", false: "denied"}
		for i, tc := range cases {
			ownerPush(t, tc.repo+":base")
			tok := cli.createToken(fmt.Sprintf("builtin-%d", i), "--scope-map", tc.scopeMap)
			opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: tok.name, Password: tok.password["password1"]}), remote.WithContext(t.Context())}
			pull := func() error {
				img, err := remote.Image(srv.Ref(t, tc.repo+":base"), opts...)
				if err == nil {
					_, err = img.RawConfigFile()
				}
				return err
			}
			_, listErr := remote.List(srv.Repo(t, tc.repo), opts...)
			got := map[string]string{
				"pull": result(pull()),
				"list": result(listErr),
				"push": result(remote.Write(srv.Ref(t, tc.repo+":"+tok.name), testutil.RandomImage(t, 1, 1<<10), opts...)),
			}
			want := map[string]string{"pull": verdict[tc.pull], "list": verdict[tc.list], "push": verdict[tc.push]}
			if !maps.Equal(got, want) {
				t.Errorf("%s on %s: %v, want %v", tc.scopeMap, tc.repo, got, want)
			}
		}
	})

	t.Run("CatalogShowsOnlyAllowed", func(t *testing.T) {
		for _, r := range []string{"cat/visible/one", "cat/visible/two", "cat/hidden", "cat/listed"} {
			ownerPush(t, r+":v1")
		}
		cli.must("scope-map", "create", "-n", "cat-reader",
			"--repository", "cat/visible/*", "content/read",
			"--repository", "cat/listed", "metadata/read")
		cases := []struct {
			name string
			args []string
			want []string
		}{
			{"cat-reader", []string{"--scope-map", "cat-reader"}, []string{"cat/listed", "cat/visible/one", "cat/visible/two"}},
			{"cat-writer", []string{"--repository", "cat/visible/one", "content/write"}, []string{"cat/visible/one"}},
			{"cat-nothing", []string{"--repository", "none/*", "content/read", "metadata/read"}, nil},
		}
		catalog := func(t *testing.T, authz string) []string {
			t.Helper()
			x := do(t, http.DefaultClient, http.MethodGet, srv.URL+"/v2/_catalog", nil, "Authorization", authz)
			var c struct {
				Repositories []string `json:"repositories"`
			}
			if x.resp.StatusCode != http.StatusOK || json.Unmarshal(x.result, &c) != nil {
				t.Fatalf("want 200 with the catalog\n%s", x)
			}
			slices.Sort(c.Repositories)
			return c.Repositories
		}
		all := catalog(t, basicAuth(srv.Username, srv.Password))
		if !slices.Contains(all, "cat/hidden") {
			t.Fatalf("the owner's catalog %v lacks cat/hidden", all)
		}
		for _, tc := range cases {
			tok := cli.createToken(tc.name, tc.args...)
			jwt := accessToken(t, srv, tok.name, tok.password["password1"], "registry:catalog:*")
			if got := catalog(t, bearer(jwt)); !slices.Equal(got, tc.want) {
				t.Errorf("catalog as %s = %v, want %v (all: %v)", tc.name, got, tc.want, all)
			}
		}
		// Without the catalog scope in its access token, a token is sent
		// back for one with it (401 insufficient_scope), as the token spec
		// says: its identity may list the catalog.
		tok := cli.createToken("cat-noscope", "--repository", "cat/listed", "metadata/read")
		jwt := accessToken(t, srv, tok.name, tok.password["password1"], "repository:cat/listed:pull")
		x := do(t, http.DefaultClient, http.MethodGet, srv.URL+"/v2/_catalog", nil, "Authorization", bearer(jwt))
		unauthorized(t, x, "registry:catalog:*")
		if h := x.resp.Header.Get("WWW-Authenticate"); !strings.HasSuffix(h, `,scope="registry:catalog:*",error="insufficient_scope"`) {
			t.Errorf("challenge %s: want the catalog scope and insufficient_scope", h)
		}
	})

	t.Run("MountFromUnreadableRepository", func(t *testing.T) {
		secret := ownerPush(t, "mount/secret:v1").Layers[0].String()
		base := ownerPush(t, "mount/base:v1").Layers[0].String()
		tok := cli.createToken("mounter",
			"--repository", "mount/app", "content/read", "content/write",
			"--repository", "mount/base", "content/read")
		// Asking for pull on the secret repository is not an error; the
		// access token just does not carry it.
		jwt := bearer(accessToken(t, srv, tok.name, tok.password["password1"],
			"repository:mount/app:pull,push", "repository:mount/base:pull", "repository:mount/secret:pull"))
		mount := func(dgst, from string) exchange {
			return do(t, http.DefaultClient, http.MethodPost,
				srv.URL+"/v2/mount/app/blobs/uploads/?mount="+dgst+"&from="+from, nil, "Authorization", jwt)
		}
		head := func(dgst string) int {
			return do(t, http.DefaultClient, http.MethodHead, srv.URL+"/v2/mount/app/blobs/"+dgst, nil, "Authorization", jwt).resp.StatusCode
		}

		// From a repository the token reads, the mount happens: 201.
		x := mount(base, "mount/base")
		if x.resp.StatusCode != http.StatusCreated || x.resp.Header.Get("Docker-Content-Digest") != base ||
			!strings.HasSuffix(x.resp.Header.Get("Location"), "/v2/mount/app/blobs/"+base) {
			t.Errorf("mount from a readable repository: want 201 with the blob's location and digest\n%s", x)
		}
		if got := head(base); got != http.StatusOK {
			t.Errorf("HEAD of the mounted blob = %d, want 200", got)
		}

		// From one it cannot read: a plain upload session (202), the same
		// answer as for a blob that exists nowhere.
		leak := mount(secret, "mount/secret")
		if leak.resp.StatusCode != http.StatusAccepted || leak.resp.Header.Get("Location") == "" ||
			leak.resp.Header.Get("Docker-Content-Digest") != "" || strings.Contains(leak.resp.Header.Get("Location"), secret) {
			t.Errorf("mount from an unreadable repository: want 202 with an upload location and no digest\n%s", leak)
		}
		none := mount(digest.FromString(testutil.RandomString(16)).String(), "mount/secret")
		if none.resp.StatusCode != leak.resp.StatusCode || !slices.Equal(headerNames(none.resp.Header), headerNames(leak.resp.Header)) ||
			string(none.result) != string(leak.result) {
			t.Errorf("a mount of an existing but unreadable blob answers unlike one of a blob that exists nowhere:\n%s\n%s", leak, none)
		}
		// Without from, berth looks for the blob in the repositories the
		// caller can read; the secret one is not among them.
		noFrom := do(t, http.DefaultClient, http.MethodPost, srv.URL+"/v2/mount/app/blobs/uploads/?mount="+secret, nil, "Authorization", jwt)
		if noFrom.resp.StatusCode != http.StatusAccepted || noFrom.resp.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("mount without from of a blob only in an unreadable repository: want 202 and no digest\n%s", noFrom)
		}
		if got := head(secret); got != http.StatusNotFound {
			t.Errorf("HEAD of the unreadable blob in the token's repository after the mount = %d, want 404", got)
		}
		// The source is refused outright, not reported missing.
		x = do(t, http.DefaultClient, http.MethodHead, srv.URL+"/v2/mount/secret/blobs/"+secret, nil, "Authorization", jwt)
		if x.resp.StatusCode != http.StatusForbidden {
			t.Errorf("HEAD of the blob in its own repository: want 403\n%s", x)
		}
	})

	t.Run("IssuedAccessTokensFollowChanges", func(t *testing.T) {
		const repo = "issued/app"
		ownerPush(t, repo+":v1")
		cli.must("scope-map", "create", "-n", "issued-map", "--repository", repo, "content/read", "content/write", "metadata/read")
		tok := cli.createToken("issued", "--scope-map", "issued-map")
		scope := "repository:" + repo + ":pull,push"
		jwt1 := bearer(accessToken(t, srv, tok.name, tok.password["password1"], scope))
		jwt2 := bearer(accessToken(t, srv, tok.name, tok.password["password2"], scope))
		list := func(jwt string) exchange {
			return do(t, http.DefaultClient, http.MethodGet, srv.URL+"/v2/"+repo+"/tags/list", nil, "Authorization", jwt)
		}
		upload := func(jwt string) exchange {
			return do(t, http.DefaultClient, http.MethodPost, srv.URL+"/v2/"+repo+"/blobs/uploads/", nil, "Authorization", jwt)
		}
		want := func(x exchange, code int, what string) {
			t.Helper()
			if x.resp.StatusCode != code {
				t.Errorf("%s: want %d\n%s", what, code, x)
			}
		}
		want(upload(jwt1), http.StatusAccepted, "upload before any change")

		cli.must("scope-map", "update", "-n", "issued-map", "--remove-repository", repo, "content/write")
		denied(t, upload(jwt1), "requested access to the resource is denied: "+lacks(tok.name, "content/write", repo))
		want(list(jwt1), http.StatusOK, "tag list after content/write was removed")
		cli.must("scope-map", "update", "-n", "issued-map", "--add-repository", repo, "content/write")
		want(upload(jwt1), http.StatusAccepted, "upload after content/write was given back")

		cli.must("token", "credential", "delete", "-n", tok.name, "--password1")
		unauthorized(t, list(jwt1), "password1")
		want(list(jwt2), http.StatusOK, "tag list through password2 after password1 was deleted")

		cli.must("token", "update", "-n", tok.name, "--status", "disabled")
		unauthorized(t, list(jwt2), "token disabled")
		cli.must("token", "update", "-n", tok.name, "--status", "enabled")

		cli.must("token", "delete", "-n", tok.name, "--yes")
		unauthorized(t, list(jwt2), "token deleted")
	})
}

// headerNames lists the names of h that do not vary from one answer to the
// next.
func headerNames(h http.Header) []string {
	var names []string
	for k := range h {
		if k != "Date" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}
