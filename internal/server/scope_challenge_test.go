package server_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestInsufficientScope: an access token that lacks a scope its identity
// would be granted is answered 401 with an insufficient_scope challenge
// naming the scope the route needs, so that clients fetch a better token and
// retry (podman asks for a token without scopes before listing the
// catalog); only what the identity itself may not do is 403 DENIED, naming
// the repository and the action.
func TestInsufficientScope(t *testing.T) {
	e := newEnv(t)
	allPw, _ := e.newToken("team-all", actions("team/*", "content/read", "content/write", "content/delete", "metadata/read", "metadata/write")...)
	readPw, _ := e.newToken("team-read", actions("team/*", "content/read")...)
	tok := map[string]string{
		"all/push":   e.accessToken("team-all", allPw, "repository:team/app:push"),
		"all/pull":   e.accessToken("team-all", allPw, "repository:team/app:pull"),
		"all/none":   e.accessToken("team-all", allPw),
		"all/delete": e.accessToken("team-all", allPw, "repository:team/app:delete"),
		"read/pull":  e.accessToken("team-read", readPw, "repository:team/app:pull"),
	}
	const (
		digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		upload = "0123456789abcdef0123456789abcdef"
	)
	challenge := func(scope string) string {
		return `Bearer realm="` + e.http.URL + `/oauth2/token",service="berth",scope="` + scope + `",error="insufficient_scope"`
	}
	tests := []struct {
		name, token, method, path string
		// scope is the challenge's scope of a 401; empty for a 403 whose
		// detail names action, with message saying the identity lacks lacks.
		scope, action, lacks string
	}{
		{name: "catalog, token without scopes", token: "all/none", method: "GET", path: "/v2/_catalog", scope: "registry:catalog:*"},
		{name: "catalog, token for a repository", token: "read/pull", method: "GET", path: "/v2/_catalog", scope: "registry:catalog:*"},
		// The scope map grants metadata/read: the token lacks it, not the
		// identity (this used to be a 403 saying the token lacks metadata/read).
		{name: "tags list, push-only token", token: "all/push", method: "GET", path: "/v2/team/app/tags/list", scope: "repository:team/app:pull"},
		{name: "tags list, token without scopes", token: "all/none", method: "GET", path: "/v2/team/app/tags/list", scope: "repository:team/app:pull"},
		{name: "referrers, push-only token", token: "all/push", method: "GET", path: "/v2/team/app/referrers/" + digest, scope: "repository:team/app:pull"},
		{name: "manifest GET, push-only token", token: "all/push", method: "GET", path: "/v2/team/app/manifests/v1", scope: "repository:team/app:pull"},
		{name: "blob HEAD, push-only token", token: "all/push", method: "HEAD", path: "/v2/team/app/blobs/" + digest, scope: "repository:team/app:pull"},
		{name: "manifest PUT, pull token", token: "all/pull", method: "PUT", path: "/v2/team/app/manifests/v1", scope: "repository:team/app:pull,push"},
		{name: "upload start, pull token", token: "all/pull", method: "POST", path: "/v2/team/app/blobs/uploads/", scope: "repository:team/app:pull,push"},
		{name: "manifest DELETE, pull token", token: "all/pull", method: "DELETE", path: "/v2/team/app/manifests/" + digest, scope: "repository:team/app:delete"},
		{name: "upload status, delete-only token", token: "all/delete", method: "GET", path: "/v2/team/app/blobs/uploads/" + upload, scope: "repository:team/app:pull,push"},
		{name: "untag, pull token", token: "all/pull", method: "DELETE", path: "/v2/team/app/manifests/v1", scope: "repository:team/app:metadata_write,delete"},
		{name: "another repository in scope of the map", token: "all/pull", method: "GET", path: "/v2/team/other/manifests/v1", scope: "repository:team/other:pull"},

		{name: "tags list, identity lacks metadata/read", token: "read/pull", method: "GET", path: "/v2/team/app/tags/list", action: "metadata_read", lacks: "metadata/read"},
		{name: "manifest PUT, identity lacks content/write", token: "read/pull", method: "PUT", path: "/v2/team/app/manifests/v1", action: "push", lacks: "content/write"},
		{name: "manifest DELETE, identity lacks content/delete", token: "read/pull", method: "DELETE", path: "/v2/team/app/manifests/" + digest, action: "delete", lacks: "content/delete"},
		{name: "repository outside the scope map", token: "all/pull", method: "GET", path: "/v2/secret/app/manifests/v1", action: "pull", lacks: "content/read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, h := e.do(tt.method, tt.path, bearer(tok[tt.token]), nil)
			if tt.scope != "" {
				if st != 401 {
					t.Fatalf("status %d, want 401: %s", st, body)
				}
				if got, want := h.Get("Www-Authenticate"), challenge(tt.scope); got != want {
					t.Errorf("WWW-Authenticate:\n got %s\nwant %s", got, want)
				}
				return
			}
			if st != 403 {
				t.Fatalf("status %d, want 403: %s", st, body)
			}
			if h.Get("Www-Authenticate") != "" {
				t.Errorf("403 with a challenge: %s", h.Get("Www-Authenticate"))
			}
			if tt.method == "HEAD" {
				return
			}
			var eb struct {
				Errors []struct {
					Code    string
					Message string
					Detail  []map[string]string
				}
			}
			if err := json.Unmarshal([]byte(body), &eb); err != nil || len(eb.Errors) != 1 {
				t.Fatalf("body %s: %v", body, err)
			}
			got := eb.Errors[0]
			repo := strings.Split(strings.TrimPrefix(tt.path, "/v2/"), "/")
			name := repo[0] + "/" + repo[1]
			if got.Code != "DENIED" || !strings.Contains(got.Message, "lacks "+tt.lacks+` on repository "`+name+`"`) ||
				len(got.Detail) != 1 || got.Detail[0]["Name"] != name || got.Detail[0]["Action"] != tt.action {
				t.Errorf("want DENIED naming %s, %s and lacking %s; got %s", name, tt.action, tt.lacks, body)
			}
		})
	}
}
