package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
)

func TestSplitRepositoryPath(t *testing.T) {
	tests := []struct {
		path, name, shape, ref string
		err                    string
	}{
		{"app", "app", shapeRepository, "", ""},
		{"team/sub/app", "team/sub/app", shapeRepository, "", ""},
		{"team/app/_tags", "team/app", shapeTags, "", ""},
		{"team/app/_tags/v1.0", "team/app", shapeTag, "v1.0", ""},
		{"team/app/_manifests/sha256:abc", "team/app", shapeManifest, "sha256:abc", ""},
		// "tags" and "manifests" are ordinary name segments.
		{"team/tags/manifests", "team/tags/manifests", shapeRepository, "", ""},
		{"team/app/_tags/", "", "", "", "no such route"},
		{"team/app/_manifests", "", "", "", "no such route"},
		{"team/app/_blobs/x", "", "", "", "no such route"},
		{"team/app/_tags/v1/extra", "", "", "", "no such route"},
		{"Team/App", "", "", "", "invalid repository name"},
		{"_tags", "", "", "", "invalid repository name"},
		{"team//app", "", "", "", "invalid repository name"},
	}
	for _, tt := range tests {
		name, shape, ref, err := splitRepositoryPath(tt.path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || name != tt.name || shape != tt.shape || ref != tt.ref {
			t.Errorf("%q: got (%q, %q, %q, %v), want (%q, %q, %q)", tt.path, name, shape, ref, err, tt.name, tt.shape, tt.ref)
		}
	}
}

func TestRepositories(t *testing.T) {
	f := newFixture(t)
	v1 := f.putManifest("team/app", "v1")
	f.putManifest("team/app", "v2")
	f.putManifest("team/other", "latest")
	f.putManifest("private/db", "v1")

	// Each caller sees the repositories it may do anything with.
	lists := []struct {
		user string
		want string
	}{
		{"owner", "private/db team/app team/other"},
		{"pull", "private/db team/app team/other"},
		{"admin", "private/db team/app team/other"},
		{"team-tok", "team/app team/other"},
		{"empty-tok", ""},
	}
	for _, l := range lists {
		got := decodeAs[RepositoryList](t, f.must(http.StatusOK, l.user, "GET", "/api/v1/repositories", nil))
		if strings.Join(got.Repositories, " ") != l.want || got.Next != "" {
			t.Errorf("%s sees %v, next %q; want %s", l.user, got.Repositories, got.Next, l.want)
		}
	}
	page := decodeAs[RepositoryList](t, f.must(http.StatusOK, "owner", "GET", "/api/v1/repositories?n=2", nil))
	if strings.Join(page.Repositories, " ") != "private/db team/app" || page.Next != "team/app" {
		t.Errorf("page 1: %+v", page)
	}
	page = decodeAs[RepositoryList](t, f.must(http.StatusOK, "owner", "GET", "/api/v1/repositories?n=2&last=team/app", nil))
	if strings.Join(page.Repositories, " ") != "team/other" || page.Next != "" {
		t.Errorf("page 2: %+v", page)
	}
	f.must(http.StatusBadRequest, "owner", "GET", "/api/v1/repositories?n=0", nil)

	// Show, tags, manifest: metadata/read, decided by auth.Decide.
	repo := decodeAs[Repository](t, f.must(http.StatusOK, "team-tok", "GET", "/api/v1/repositories/team/app", nil))
	if repo.ImageName != "team/app" || repo.Registry != "berth" || repo.TagCount != 2 || !repo.ChangeableAttributes.WriteEnabled || repo.CreatedTime.IsZero() {
		t.Errorf("show %+v", repo)
	}
	e := errorOf(t, f.must(http.StatusForbidden, "team-tok", "GET", "/api/v1/repositories/private/db", nil))
	if !strings.Contains(e.Message, `lacks metadata/read on repository "private/db"`) {
		t.Errorf("denied: %+v", e)
	}
	// Denied before looking: no difference between absent and forbidden.
	f.must(http.StatusForbidden, "team-tok", "GET", "/api/v1/repositories/private/absent", nil)
	f.must(http.StatusNotFound, "team-tok", "GET", "/api/v1/repositories/team/absent", nil)
	f.must(http.StatusForbidden, "pull", "GET", "/api/v1/repositories/team/app", nil) // pull has no metadata/read

	tags := decodeAs[TagList](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/repositories/team/app/_tags", nil))
	if len(tags.Tags) != 2 || tags.Tags[0].Name != "v1" || tags.Tags[0].Digest != v1 || tags.Next != "" {
		t.Errorf("tags %+v", tags)
	}
	tags = decodeAs[TagList](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/repositories/team/app/_tags?n=1", nil))
	if len(tags.Tags) != 1 || tags.Next != "v1" {
		t.Errorf("tags page %+v", tags)
	}
	tag := decodeAs[Tag](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/repositories/team/app/_tags/v1", nil))
	if tag.Digest != v1 {
		t.Errorf("tag %+v", tag)
	}
	f.must(http.StatusBadRequest, "reader", "GET", "/api/v1/repositories/team/app/_tags/"+v1.String(), nil)
	man := decodeAs[ManifestInfo](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/repositories/team/app/_manifests/"+v1.String(), nil))
	if man.Manifest.Digest != v1 || man.Manifest.MediaType == "" || man.Manifest.ImageSize == 0 || !man.Manifest.ChangeableAttributes.DeleteEnabled {
		t.Errorf("manifest %+v", man)
	}
	f.must(http.StatusNotFound, "reader", "GET", "/api/v1/repositories/team/app/_manifests/v9", nil)

	// Attributes: metadata/write.
	f.must(http.StatusForbidden, "reader", "PATCH", "/api/v1/repositories/team/app", `{"writeEnabled":false}`)
	f.must(http.StatusForbidden, "team-tok", "PATCH", "/api/v1/repositories/team/app/_manifests/v1", `{"deleteEnabled":false}`)
	f.must(http.StatusBadRequest, "owner", "PATCH", "/api/v1/repositories/team/app", `{}`)
	f.must(http.StatusBadRequest, "owner", "PATCH", "/api/v1/repositories/team/app", `{"changeableAttributes":{}}`)
	repo = decodeAs[Repository](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/repositories/team/app", `{"deleteEnabled":false}`))
	if repo.ChangeableAttributes.DeleteEnabled || !repo.ChangeableAttributes.WriteEnabled {
		t.Errorf("patched %+v", repo.ChangeableAttributes)
	}
	e = errorOf(t, f.must(http.StatusConflict, "owner", "DELETE", "/api/v1/repositories/team/app", nil))
	if !strings.Contains(e.Message, "deleteEnabled=false") || !strings.Contains(e.Message, "unlock it first") {
		t.Errorf("locked: %+v", e)
	}
	f.must(http.StatusOK, "owner", "PATCH", "/api/v1/repositories/team/app", `{"deleteEnabled":true}`)
	man = decodeAs[ManifestInfo](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/repositories/team/app/_manifests/v1", `{"writeEnabled":false,"deleteEnabled":false}`))
	if a := man.Manifest.ChangeableAttributes; a.WriteEnabled || a.DeleteEnabled || !a.ReadEnabled || !a.ListEnabled {
		t.Errorf("manifest patched %+v", a)
	}
	f.must(http.StatusConflict, "owner", "DELETE", "/api/v1/repositories/team/app/_manifests/v1", nil)
	f.must(http.StatusConflict, "owner", "DELETE", "/api/v1/repositories/team/app/_tags/v1", nil)
	f.must(http.StatusOK, "owner", "PATCH", "/api/v1/repositories/team/app/_manifests/"+v1.String(), `{"writeEnabled":true,"deleteEnabled":true}`)

	// Untag (metadata/write or content/delete, as on /v2/), delete a
	// manifest and a repository (content/delete).
	f.must(http.StatusForbidden, "reader", "DELETE", "/api/v1/repositories/team/app/_tags/v2", nil)
	f.must(http.StatusNoContent, "delete", "DELETE", "/api/v1/repositories/team/app/_tags/v2", nil)
	f.must(http.StatusNotFound, "owner", "DELETE", "/api/v1/repositories/team/app/_tags/v2", nil)
	f.must(http.StatusNoContent, "delete", "DELETE", "/api/v1/repositories/team/app/_manifests/v1", nil)
	f.must(http.StatusForbidden, "team-tok", "DELETE", "/api/v1/repositories/team/other", nil)
	f.must(http.StatusNoContent, "delete", "DELETE", "/api/v1/repositories/team/other", nil)
	f.must(http.StatusNotFound, "owner", "GET", "/api/v1/repositories/team/other", nil)
	f.must(http.StatusNotFound, "owner", "DELETE", "/api/v1/repositories/team/other", nil)

	// Bad names and routes.
	e = errorOf(t, f.must(http.StatusBadRequest, "owner", "GET", "/api/v1/repositories/Team/App", nil))
	if !strings.Contains(e.Message, "invalid repository name") {
		t.Errorf("bad name: %+v", e)
	}
	f.must(http.StatusNotFound, "owner", "GET", "/api/v1/repositories/team/app/_blobs/x", nil)
	rec := f.must(http.StatusMethodNotAllowed, "owner", "PATCH", "/api/v1/repositories/team/app/_tags", `{}`)
	if rec.Header().Get("Allow") != "GET" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}
	f.must(http.StatusMethodNotAllowed, "owner", "PUT", "/api/v1/repositories/team/app", `{}`)

	f.audit.Flush()
	events := decodeAs[auditEvents](t, f.must(http.StatusOK, "owner", "GET", "/api/v1/audit?kind=delete", nil))
	if len(events.Value) != 2 || events.Value[0].Repository != "team/other" || events.Value[1].Digest != v1.String() || events.Value[1].Identity != "delete" {
		t.Errorf("delete events %+v", events.Value)
	}
	events = decodeAs[auditEvents](t, f.must(http.StatusOK, "owner", "GET", "/api/v1/audit?kind=untag", nil))
	if len(events.Value) != 1 || events.Value[0].Tag != "v2" {
		t.Errorf("untag events %+v", events.Value)
	}
}

// TestRepositoryBearerScope checks that an access token narrows the
// repository routes to what it was issued for, as on /v2/, while the
// repository list follows the identity's rights once the catalog is granted.
func TestRepositoryBearerScope(t *testing.T) {
	f := newFixture(t)
	f.putManifest("team/app", "v1")
	f.putManifest("team/other", "v1")
	owner := auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}
	scoped := owner
	scoped.Bearer = &auth.Claims{Access: []auth.Access{{Type: "repository", Name: "team/app", Actions: []string{"metadata_read"}}}}
	catalog := owner
	catalog.Bearer = &auth.Claims{Access: []auth.Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}}
	f.h.authn = fakeAuthn{"scoped": scoped, "catalog": catalog}

	// A token whose scope map only reads team/*, with an access token for
	// reading team/app.
	tokScoped := auth.Identity{Kind: auth.KindToken, Name: "team-tok", Policy: teamReader, Bearer: scoped.Bearer}
	f.h.authn = fakeAuthn{"scoped": scoped, "catalog": catalog, "tok-scoped": tokScoped}

	f.must(http.StatusOK, "scoped", "GET", "/api/v1/repositories/team/app", nil)
	// What the access token lacks but its identity would be granted is
	// 401 insufficient_scope naming the scope to ask for, as on /v2/; 403
	// only for what the identity itself may not do.
	for _, c := range []struct {
		user, method, path string
		status             int
		scope              string // in the challenge of a 401
	}{
		{"scoped", "GET", "/api/v1/repositories/team/other", http.StatusUnauthorized, "repository:team/other:metadata_read"},
		{"scoped", "GET", "/api/v1/repositories/team/other/_tags", http.StatusUnauthorized, "repository:team/other:metadata_read"},
		{"scoped", "DELETE", "/api/v1/repositories/team/app", http.StatusUnauthorized, "repository:team/app:delete"},
		{"scoped", "DELETE", "/api/v1/repositories/team/app/_tags/v1", http.StatusUnauthorized, "repository:team/app:delete,metadata_write"},
		{"scoped", "GET", "/api/v1/repositories", http.StatusUnauthorized, "registry:catalog:*"},
		{"tok-scoped", "GET", "/api/v1/repositories/team/other", http.StatusUnauthorized, "repository:team/other:metadata_read"},
		{"tok-scoped", "DELETE", "/api/v1/repositories/team/app", http.StatusForbidden, ""},
		{"tok-scoped", "DELETE", "/api/v1/repositories/team/app/_tags/v1", http.StatusForbidden, ""},
		{"tok-scoped", "GET", "/api/v1/repositories", http.StatusUnauthorized, "registry:catalog:*"},
		// A token issued for registry access is no management credential.
		{"scoped", "GET", "/api/v1/tokens", http.StatusForbidden, ""},
	} {
		rec := f.must(c.status, c.user, c.method, c.path, nil)
		challenge := rec.Header().Get("WWW-Authenticate")
		if c.status == http.StatusUnauthorized {
			want := `Bearer realm="http://example.com/oauth2/token",service="berth",scope="` + c.scope + `",error="insufficient_scope"`
			if challenge != want {
				t.Errorf("%s %s as %s: challenge %s, want %s", c.method, c.path, c.user, challenge, want)
			}
			if e := errorOf(t, rec); e.Code != CodeUnauthorized || !strings.Contains(e.Message, c.scope) {
				t.Errorf("%s %s as %s: error %+v", c.method, c.path, c.user, e)
			}
		} else if challenge != "" {
			t.Errorf("%s %s as %s: a denial with a challenge: %s", c.method, c.path, c.user, challenge)
		}
	}
	unscoped := owner
	unscoped.Bearer = &auth.Claims{}
	f.h.authn = fakeAuthn{"scoped": scoped, "catalog": catalog, "unscoped": unscoped}
	f.must(http.StatusOK, "unscoped", "GET", "/api/v1/tokens", nil)
	got := decodeAs[RepositoryList](t, f.must(http.StatusOK, "catalog", "GET", "/api/v1/repositories", nil))
	if strings.Join(got.Repositories, " ") != "team/app team/other" {
		t.Errorf("catalog lists %v", got.Repositories)
	}
}
