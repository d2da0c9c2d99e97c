package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/testutil"
)

const ownerPassword = "owner-password-for-tests"

// fakeAuthn authenticates the Basic username alone, as one of a fixed set
// of identities, so that each test can act as any role.
type fakeAuthn map[string]auth.Identity

func (f fakeAuthn) Authenticate(r *http.Request) (auth.Identity, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return auth.Identity{}, errors.New("no credentials")
	}
	id, ok := f[user]
	if !ok {
		return auth.Identity{}, errors.New("unknown user")
	}
	return id, nil
}

// teamReader is a token whose scope map grants read on team/*.
var teamReader = auth.MustCompile(auth.ScopeMap{Name: "team-read", Type: auth.UserDefined, Actions: []string{
	"repositories/team/*/content/read", "repositories/team/*/metadata/read",
}})

func identities() fakeAuthn {
	ids := fakeAuthn{
		"admin":     {Kind: auth.KindAdmin, Name: "berth"},
		"team-tok":  {Kind: auth.KindToken, Name: "team-tok", Policy: teamReader},
		"empty-tok": {Kind: auth.KindToken, Name: "empty-tok"},
	}
	for _, r := range auth.Roles() {
		ids[string(r)] = auth.Identity{Kind: auth.KindUser, Name: string(r), Role: r}
	}
	return ids
}

type fixture struct {
	t     *testing.T
	h     *Handler
	ids   *identity.Service
	store *meta.Store
	audit *audit.Log
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := testutil.NewStores(t, ownerPassword)
	h, err := New(Options{Identity: st.Identity, Metadata: st.Meta, Authenticator: identities(), Audit: st.Audit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, h: h, ids: st.Identity, store: st.Meta, audit: st.Audit}
}

// do sends a request as user ("" for none) with body (a string is sent as
// is, anything else as JSON).
func (f *fixture) do(user, method, path string, body any) *httptest.ResponseRecorder {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	if user != "" {
		req.SetBasicAuth(user, "x")
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// must sends a request and fails the test unless the status is want.
func (f *fixture) must(want int, user, method, path string, body any) *httptest.ResponseRecorder {
	f.t.Helper()
	rec := f.do(user, method, path, body)
	if rec.Code != want {
		f.t.Fatalf("%s %s as %q: status %d, want %d; body: %s", method, path, user, rec.Code, want, rec.Body)
	}
	return rec
}

func decodeAs[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, rec.Body, err)
	}
	return v
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) ErrorDetail {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, want application/json; body %s", ct, rec.Body)
	}
	return decodeAs[ErrorBody](t, rec).Error
}

// putManifest stores a manifest tagged tag in repo, creating the repository.
func (f *fixture) putManifest(repo, tag string) digest.Digest {
	f.t.Helper()
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","repo":"` + repo + `","tag":"` + tag + `"}`)
	d := digest.FromBytes(content)
	err := f.store.PutManifest(context.Background(), meta.PutManifestRequest{Repository: repo, Tags: []string{tag},
		Manifest: meta.Manifest{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content}})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/api/v1/scopeMaps", "/api/v1/tokens/x", "/api/v1/repositories/team/app"} {
		rec := f.must(http.StatusUnauthorized, "", "GET", path, nil)
		if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="berth"` {
			t.Errorf("%s: WWW-Authenticate %q", path, got)
		}
		if e := errorOf(t, rec); e.Code != CodeUnauthorized || !strings.Contains(e.Message, "authentication required") {
			t.Errorf("%s: error %+v", path, e)
		}
	}
	rec := f.must(http.StatusUnauthorized, "nobody", "GET", "/api/v1/tokens", nil)
	if e := errorOf(t, rec); !strings.Contains(e.Message, "invalid credentials") {
		t.Errorf("wrong credentials: error %+v", e)
	}
}

func TestRateLimitedAuthentication(t *testing.T) {
	f := newFixture(t)
	limited := errors.New("rate limited")
	h, err := New(Options{Identity: f.ids, Metadata: f.store,
		Authenticator: authnFunc(func(*http.Request) (auth.Identity, error) { return auth.Identity{}, limited }),
		RetryAfter: func(err error) (time.Duration, bool) {
			return 1500 * time.Millisecond, errors.Is(err, limited)
		}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/tokens", nil))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("status %d, Retry-After %q; want 429 and 2", rec.Code, rec.Header().Get("Retry-After"))
	}
}

type authnFunc func(*http.Request) (auth.Identity, error)

func (f authnFunc) Authenticate(r *http.Request) (auth.Identity, error) { return f(r) }

func TestNotRouted(t *testing.T) {
	f := newFixture(t)
	rec := f.must(http.StatusNotFound, "owner", "GET", "/api/v1/nothing-here", nil)
	if e := errorOf(t, rec); e.Code != CodeNotFound || !strings.Contains(e.Message, "openapi.json") {
		t.Errorf("error %+v", e)
	}
	rec = f.must(http.StatusMethodNotAllowed, "owner", "POST", "/api/v1/tokens", nil)
	if e := errorOf(t, rec); e.Code != CodeMethodNotAllowed {
		t.Errorf("error %+v", e)
	}
	if allow := rec.Header().Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow %q", allow)
	}
}

// TestPermissions is the management permission matrix: who may do what.
func TestPermissions(t *testing.T) {
	f := newFixture(t)
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/scopeMaps/existing", map[string]any{"properties": map[string]any{"actions": []string{"repositories/a/content/read"}}})
	newToken := map[string]any{"properties": map[string]any{"scopeMapId": "_repositories_pull"}}
	newUser := map[string]any{"properties": map[string]any{"role": "reader", "password": "a-long-enough-password"}}
	tests := []struct {
		user, method, path string
		body               any
		want               int
	}{
		{"owner", "GET", "/api/v1/scopeMaps", nil, 200},
		{"contributor", "GET", "/api/v1/tokens", nil, 200},
		{"reader", "GET", "/api/v1/scopeMaps", nil, 200},
		{"reader", "GET", "/api/v1/tokens", nil, 200},
		{"reader", "GET", "/api/v1/users", nil, 200},
		{"reader", "GET", "/api/v1/admin", nil, 200},
		{"reader", "GET", "/api/v1/audit", nil, 200},
		{"reader", "PUT", "/api/v1/tokens/reader-token", newToken, 403},
		{"reader", "PUT", "/api/v1/scopeMaps/reader-map", map[string]any{"properties": map[string]any{}}, 403},
		{"reader", "DELETE", "/api/v1/scopeMaps/existing", nil, 403},
		{"reader", "PATCH", "/api/v1/admin", map[string]any{"adminUserEnabled": true}, 403},
		{"reader", "POST", "/api/v1/generateCredentials", map[string]any{"tokenId": "whatever"}, 403},
		{"contributor", "PUT", "/api/v1/tokens/contrib-token", newToken, 201},
		{"contributor", "PUT", "/api/v1/users/new-user", newUser, 403},
		{"contributor", "DELETE", "/api/v1/users/owner", nil, 403},
		{"owner", "PUT", "/api/v1/users/new-user", newUser, 201},
		{"pull", "GET", "/api/v1/scopeMaps", nil, 403},
		{"push", "GET", "/api/v1/tokens", nil, 403},
		{"delete", "GET", "/api/v1/users", nil, 403},
		{"pull", "GET", "/api/v1/audit", nil, 403},
		{"push", "GET", "/api/v1/admin", nil, 403},
		{"admin", "GET", "/api/v1/scopeMaps", nil, 403},
		{"team-tok", "GET", "/api/v1/tokens", nil, 403},
		{"team-tok", "GET", "/api/v1/audit", nil, 403},
	}
	for _, tt := range tests {
		rec := f.do(tt.user, tt.method, tt.path, tt.body)
		if rec.Code != tt.want {
			t.Errorf("%s %s as %s: status %d, want %d; body %s", tt.method, tt.path, tt.user, rec.Code, tt.want, rec.Body)
			continue
		}
		if tt.want == 403 {
			if e := errorOf(t, rec); e.Code != CodeForbidden || !strings.Contains(e.Message, tt.user) && !strings.Contains(e.Message, "berth") {
				t.Errorf("%s %s as %s: error %+v should be Forbidden and name the caller", tt.method, tt.path, tt.user, e)
			}
		}
	}
}

func TestScopeMapLifecycle(t *testing.T) {
	f := newFixture(t)
	path := "/api/v1/scopeMaps/ci-scope"
	rec := f.must(http.StatusCreated, "owner", "PUT", path, map[string]any{"properties": map[string]any{
		"description": "CI pushes", "actions": []string{"repositories/samples/*/content/write", "repositories/samples/*/content/read"},
	}})
	m := decodeAs[ScopeMap](t, rec)
	if m.ID != "/scopeMaps/ci-scope" || m.Type != "scopeMaps" || m.Properties.Type != "UserDefined" || m.Properties.ProvisioningState != "Succeeded" || m.Properties.CreationDate == nil {
		t.Errorf("created %+v", m)
	}
	if got := strings.Join(m.Properties.Actions, " "); got != "repositories/samples/*/content/read repositories/samples/*/content/write" {
		t.Errorf("actions %s", got)
	}
	f.must(http.StatusConflict, "owner", "PUT", path, map[string]any{"properties": map[string]any{}})

	steps := []struct {
		name  string
		patch string
		want  string
	}{
		{"add", `{"properties":{"addActions":["repositories/team/app/metadata/read","repositories/samples/*/content/read"]}}`,
			"repositories/samples/*/content/read repositories/samples/*/content/write repositories/team/app/metadata/read"},
		{"remove", `{"properties":{"removeActions":["repositories/samples/*/content/write"]}}`,
			"repositories/samples/*/content/read repositories/team/app/metadata/read"},
		{"replace", `{"properties":{"actions":["repositories/*/content/read"]}}`, "repositories/*/content/read"},
		{"description only", `{"properties":{"description":"read all"}}`, "repositories/*/content/read"},
		{"replace and add", `{"properties":{"actions":[],"addActions":["repositories/x/content/delete"]}}`, "repositories/x/content/delete"},
	}
	for i, s := range steps {
		if i == 2 {
			// removing a grant the map does not have is a mistake worth reporting
			f.must(http.StatusBadRequest, "owner", "PATCH", path, `{"properties":{"removeActions":["repositories/absent/content/read"]}}`)
		}
		m := decodeAs[ScopeMap](t, f.must(http.StatusOK, "owner", "PATCH", path, s.patch))
		if got := strings.Join(m.Properties.Actions, " "); got != s.want {
			t.Errorf("%s: actions %q, want %q", s.name, got, s.want)
		}
	}
	m = decodeAs[ScopeMap](t, f.must(http.StatusOK, "reader", "GET", path, nil))
	if m.Properties.Description != "read all" {
		t.Errorf("description %q", m.Properties.Description)
	}

	list := decodeAs[List[ScopeMap]](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/scopeMaps", nil))
	if len(list.Value) != 6 || list.Value[0].Properties.Type != "SystemDefined" || list.Value[0].Properties.CreationDate != nil || list.Value[5].Name != "ci-scope" {
		t.Errorf("list: %+v", list.Value)
	}

	// Built-in maps cannot change.
	e := errorOf(t, f.must(http.StatusForbidden, "owner", "PATCH", "/api/v1/scopeMaps/_repositories_admin", `{"properties":{"description":"x"}}`))
	if !strings.Contains(e.Message, "built in") {
		t.Errorf("built-in: %+v", e)
	}

	// In use: refused without force; with force, the tokens are named.
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/ci-token", map[string]any{"properties": map[string]any{"scopeMapId": "/scopeMaps/ci-scope"}})
	e = errorOf(t, f.must(http.StatusConflict, "owner", "DELETE", path, nil))
	if e.Code != CodeInUse || !strings.Contains(e.Message, "ci-token") {
		t.Errorf("in use: %+v", e)
	}
	f.must(http.StatusBadRequest, "owner", "DELETE", path+"?force=maybe", nil)
	del := decodeAs[ScopeMapDeleted](t, f.must(http.StatusOK, "owner", "DELETE", path+"?force=true", nil))
	if del.ID != "/scopeMaps/ci-scope" || len(del.TokensWithoutPermissions) != 1 || del.TokensWithoutPermissions[0] != "ci-token" {
		t.Errorf("deleted %+v", del)
	}
	f.must(http.StatusNotFound, "owner", "GET", path, nil)
	f.must(http.StatusForbidden, "owner", "DELETE", "/api/v1/scopeMaps/_repositories_pull?force=true", nil)
}
