package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTokenLifecycle(t *testing.T) {
	f := newFixture(t)
	expiry := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)

	// Create with an inline scope map and both passwords: the values are in
	// this answer, and nowhere else afterwards.
	rec := f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/ci-token", map[string]any{"properties": map[string]any{
		"scopeMapActions": []string{"repositories/samples/*/content/read", "repositories/samples/*/content/write"},
		"credentials":     map[string]any{"passwords": []map[string]any{{"name": "password1", "expiry": expiry}, {"name": "password2", "expiry": expiry}}},
	}})
	tok := decodeAs[Token](t, rec)
	p := tok.Properties
	if tok.ID != "/tokens/ci-token" || tok.Type != "tokens" || p.ScopeMapID != "/scopeMaps/ci-token-scope-map" || p.Status != "enabled" || p.ProvisioningState != "Succeeded" {
		t.Fatalf("created %+v", tok)
	}
	if p.Credentials.Username != "ci-token" || len(p.Credentials.Passwords) != 2 {
		t.Fatalf("credentials %+v", p.Credentials)
	}
	var values []string
	for _, pw := range p.Credentials.Passwords {
		if len(pw.Value) < 32 || pw.Expiry == nil || !pw.Expiry.Equal(expiry) {
			t.Errorf("password %+v", pw)
		}
		values = append(values, pw.Value)
	}
	assertNoValues := func(what, body string) {
		t.Helper()
		for _, v := range values {
			if strings.Contains(body, v) {
				t.Errorf("%s shows a password value", what)
			}
		}
		if strings.Contains(body, `"value":"`) {
			t.Errorf("%s has a value field: %s", what, body)
		}
	}
	assertNoValues("GET token", f.must(http.StatusOK, "reader", "GET", "/api/v1/tokens/ci-token", nil).Body.String())
	assertNoValues("GET tokens", f.must(http.StatusOK, "reader", "GET", "/api/v1/tokens", nil).Body.String())
	sm := decodeAs[ScopeMap](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/scopeMaps/ci-token-scope-map", nil))
	if len(sm.Properties.Tokens) != 1 || sm.Properties.Tokens[0] != "ci-token" {
		t.Errorf("inline scope map %+v", sm)
	}

	// generateCredentials: one slot by bare name, then both by id.
	creds := decodeAs[Credentials](t, f.must(http.StatusOK, "owner", "POST", "/api/v1/generateCredentials", map[string]any{"tokenId": "ci-token", "name": "password1"}))
	if creds.Username != "ci-token" || len(creds.Passwords) != 1 || creds.Passwords[0].Name != "password1" || creds.Passwords[0].Value == "" || creds.Passwords[0].Value == values[0] {
		t.Fatalf("generated %+v", creds)
	}
	values = append(values, creds.Passwords[0].Value)
	creds = decodeAs[Credentials](t, f.must(http.StatusOK, "contributor", "POST", "/api/v1/generateCredentials", map[string]any{"tokenId": "/tokens/ci-token"}))
	if len(creds.Passwords) != 2 || creds.Passwords[0].Expiry != nil {
		t.Fatalf("generated both %+v", creds)
	}
	for _, pw := range creds.Passwords {
		values = append(values, pw.Value)
	}
	assertNoValues("GET token after generate", f.must(http.StatusOK, "owner", "GET", "/api/v1/tokens/ci-token", nil).Body.String())

	// Delete one password; the other stays.
	tok = decodeAs[Token](t, f.must(http.StatusOK, "owner", "DELETE", "/api/v1/tokens/ci-token/passwords/password1", nil))
	if pws := tok.Properties.Credentials.Passwords; len(pws) != 1 || pws[0].Name != "password2" {
		t.Errorf("after delete: %+v", pws)
	}
	f.must(http.StatusNotFound, "owner", "DELETE", "/api/v1/tokens/ci-token/passwords/password1", nil)
	f.must(http.StatusBadRequest, "owner", "DELETE", "/api/v1/tokens/ci-token/passwords/password3", nil)

	// Update: disable, then move to a built-in scope map by full id.
	tok = decodeAs[Token](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/tokens/ci-token", `{"properties":{"status":"disabled"}}`))
	if tok.Properties.Status != "disabled" {
		t.Errorf("status %s", tok.Properties.Status)
	}
	tok = decodeAs[Token](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/tokens/ci-token",
		`{"properties":{"scopeMapId":"/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z/scopeMaps/_repositories_pull"}}`))
	if tok.Properties.ScopeMapID != "/scopeMaps/_repositories_pull" || tok.Properties.Status != "disabled" {
		t.Errorf("updated %+v", tok.Properties)
	}

	// Create without passwords, by scope map id; then list and delete.
	tok = decodeAs[Token](t, f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/pull-token", `{"properties":{"scopeMapId":"_repositories_pull","status":"disabled"}}`))
	if len(tok.Properties.Credentials.Passwords) != 0 || tok.Properties.Credentials.Username != "" || tok.Properties.Status != "disabled" {
		t.Errorf("created without passwords: %+v", tok.Properties)
	}
	list := decodeAs[List[Token]](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/tokens", nil))
	if len(list.Value) != 2 || list.Value[0].Name != "ci-token" || list.Value[1].Name != "pull-token" {
		t.Errorf("list %+v", list.Value)
	}
	f.must(http.StatusNoContent, "owner", "DELETE", "/api/v1/tokens/pull-token", nil)
	f.must(http.StatusNotFound, "owner", "GET", "/api/v1/tokens/pull-token", nil)
	f.must(http.StatusNotFound, "owner", "DELETE", "/api/v1/tokens/pull-token", nil)
	f.must(http.StatusNotFound, "owner", "POST", "/api/v1/generateCredentials", `{"tokenId":"pull-token"}`)
}

// TestValidation checks that bad input is a 400 with a message saying what
// is wrong, never a 500.
func TestValidation(t *testing.T) {
	f := newFixture(t)
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/some-token", `{"properties":{"scopeMapId":"_repositories_pull"}}`)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{"wildcard in the middle", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"actions":["repositories/a/*/b/content/read"]}}`, 400, "a wildcard may only appear as a whole trailing path segment"},
		{"wildcard in a segment", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"actions":["repositories/a/b*/content/read"]}}`, 400, `"a/*"`},
		{"unknown action", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"actions":["repositories/a/content/pull"]}}`, 400, "must be one of content/read"},
		{"not the stored form", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"actions":["a content/read"]}}`, 400, "repositories/<repository pattern>/<action>"},
		{"bad pattern on add", "PATCH", "/api/v1/scopeMaps/_repositories_pull", `{"properties":{"addActions":["repositories/A/content/read"]}}`, 403, "built in"},
		{"short name", "PUT", "/api/v1/scopeMaps/abc", `{"properties":{}}`, 400, "5 to 50 characters"},
		{"reserved name", "PUT", "/api/v1/scopeMaps/_mine", `{"properties":{}}`, 400, "reserved for the built-in scope maps"},
		{"long description", "PUT", "/api/v1/scopeMaps/long-desc", `{"properties":{"description":"` + strings.Repeat("x", 257) + `"}}`, 400, "maximum is 256"},
		{"unknown field", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"actions":[],"repositories":[]}}`, 400, `unknown field "repositories"`},
		{"unknown top-level field", "PATCH", "/api/v1/tokens/some-token", `{"status":"enabled"}`, 400, `unknown field "status"`},
		{"add on create", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"addActions":[]}}`, 400, `unknown field "addActions"`},
		{"wrong type", "PATCH", "/api/v1/tokens/some-token", `{"properties":{"status":true}}`, 400, `field "properties.status" must be a string`},
		{"not an object", "PUT", "/api/v1/scopeMaps/bad-map", `[1]`, 400, "must be a JSON object"},
		{"not JSON", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":`, 400, "not valid JSON"},
		{"garbage", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":}`, 400, "not valid JSON at byte"},
		{"empty body", "PUT", "/api/v1/scopeMaps/bad-map", ``, 400, "request body is empty"},
		{"two objects", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{}} {}`, 400, "exactly one object"},
		{"too large", "PUT", "/api/v1/scopeMaps/bad-map", `{"properties":{"description":"` + strings.Repeat("x", MaxBodySize) + `"}}`, 413, "larger than 1048576 bytes"},
		{"token: both scope map and actions", "PUT", "/api/v1/tokens/both-token", `{"properties":{"scopeMapId":"_repositories_pull","scopeMapActions":["repositories/a/content/read"]}}`, 400, "not both or neither"},
		{"token: neither", "PUT", "/api/v1/tokens/none-token", `{"properties":{}}`, 400, "not both or neither"},
		{"token: bad inline pattern", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapActions":["repositories/a/*/b/content/read"]}}`, 400, "wildcard may only appear"},
		{"token: bad status", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"_repositories_pull","status":"on"}}`, 400, "use enabled or disabled"},
		{"token: missing scope map", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"/scopeMaps/nope-map"}}`, 400, "not found"},
		{"token: bad scope map id", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"/tokens/a/b"}}`, 400, "invalid scopeMapId"},
		{"token: bad name", "PUT", "/api/v1/tokens/bad:name", `{"properties":{"scopeMapId":"_repositories_pull"}}`, 400, "only letters, digits"},
		{"token: bad password slot", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password3"}]}}}`, 400, "use password1 or password2"},
		{"token: past expiry", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1","expiry":"` + past + `"}]}}}`, 400, "in the past"},
		{"token: two expiries", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1","expiry":"2099-01-01T00:00:00Z"},{"name":"password2"}]}}}`, 400, "share one expiry"},
		{"token: bad expiry", "PUT", "/api/v1/tokens/bad-token", `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1","expiry":"tomorrow"}]}}}`, 400, `invalid time "tomorrow": use RFC 3339`},
		{"token exists", "PUT", "/api/v1/tokens/some-token", `{"properties":{"scopeMapId":"_repositories_pull"}}`, 409, "already exists"},
		{"token named like a user", "PUT", "/api/v1/tokens/owner", `{"properties":{"scopeMapId":"_repositories_pull"}}`, 409, "already the name of a user"},
		{"generate: no token", "POST", "/api/v1/generateCredentials", `{}`, 400, "tokenId is required"},
		{"generate: bad slot", "POST", "/api/v1/generateCredentials", `{"tokenId":"some-token","name":"password"}`, 400, "use password1 or password2"},
		{"generate: past expiry", "POST", "/api/v1/generateCredentials", `{"tokenId":"some-token","expiry":"` + past + `"}`, 400, "in the past"},
		{"admin: nothing", "PATCH", "/api/v1/admin", `{}`, 400, "adminUserEnabled is required"},
		{"admin: bad slot", "POST", "/api/v1/admin/regenerateCredential", `{"name":"password1"}`, 400, "use password or password2"},
		{"user: short password", "PUT", "/api/v1/users/new-user", `{"properties":{"role":"reader","password":"short"}}`, 400, "too short"},
		{"user: bad role", "PUT", "/api/v1/users/new-user", `{"properties":{"role":"god","password":"a-long-enough-password"}}`, 400, "invalid role"},
		{"user: bad name", "PUT", "/api/v1/users/x", `{"properties":{"role":"reader","password":"a-long-enough-password"}}`, 400, "invalid user name"},
		{"user: last owner", "PATCH", "/api/v1/users/owner", `{"properties":{"role":"reader"}}`, 403, "last enabled owner"},
		{"audit: bad kind", "GET", "/api/v1/audit?kind=everything", ``, 400, "invalid kind"},
		{"audit: bad since", "GET", "/api/v1/audit?since=yesterday", ``, 400, "RFC 3339"},
		{"audit: bad limit", "GET", "/api/v1/audit?limit=0", ``, 400, "invalid limit"},
		{"audit: bad result", "GET", "/api/v1/audit?result=ok", ``, 400, "use success (or allowed) or failure (or denied)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" || tt.method == "PUT" {
				body = tt.body
			}
			rec := f.do("owner", tt.method, tt.path, body)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
			if e := errorOf(t, rec); !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", e.Message, tt.msg)
			}
		})
	}
}

func TestAdminUser(t *testing.T) {
	f := newFixture(t)
	a := decodeAs[Admin](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/admin", nil))
	if a.AdminUserEnabled || a.Username != "berth" || len(a.Passwords) != 0 {
		t.Fatalf("initial %+v", a)
	}
	a = decodeAs[Admin](t, f.must(http.StatusOK, "contributor", "PATCH", "/api/v1/admin", `{"adminUserEnabled":true}`))
	if !a.AdminUserEnabled || len(a.Passwords) != 2 || a.Passwords[0].Name != "password" || a.Passwords[0].Value == "" || a.Passwords[1].Value == "" {
		t.Fatalf("enabled %+v", a)
	}
	first := a.Passwords[0].Value
	if body := f.must(http.StatusOK, "owner", "GET", "/api/v1/admin", nil).Body.String(); strings.Contains(body, first) || strings.Contains(body, `"value"`) {
		t.Errorf("GET admin shows a password: %s", body)
	}
	// Enabling again generates nothing.
	a = decodeAs[Admin](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/admin", `{"adminUserEnabled":true}`))
	if a.Passwords[0].Value != "" {
		t.Errorf("second enable shows a password")
	}
	creds := decodeAs[Credentials](t, f.must(http.StatusOK, "owner", "POST", "/api/v1/admin/regenerateCredential", `{"name":"password2"}`))
	if creds.Username != "berth" || len(creds.Passwords) != 1 || creds.Passwords[0].Name != "password2" || creds.Passwords[0].Value == "" {
		t.Errorf("renewed %+v", creds)
	}
	a = decodeAs[Admin](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/admin", `{"adminUserEnabled":false}`))
	if a.AdminUserEnabled {
		t.Errorf("still enabled")
	}
}

func TestUsers(t *testing.T) {
	f := newFixture(t)
	u := decodeAs[User](t, f.must(http.StatusCreated, "owner", "PUT", "/api/v1/users/alice", `{"properties":{"role":"reader","password":"alice-password-123"}}`))
	if u.ID != "/users/alice" || u.Type != "users" || u.Properties.Role != "reader" || u.Properties.Status != "enabled" {
		t.Fatalf("created %+v", u)
	}
	if body := f.must(http.StatusOK, "owner", "GET", "/api/v1/users/alice", nil).Body.String(); strings.Contains(body, "alice-password-123") || strings.Contains(body, "password") {
		t.Errorf("GET user shows the password: %s", body)
	}
	f.must(http.StatusConflict, "owner", "PUT", "/api/v1/users/alice", `{"properties":{"role":"reader","password":"alice-password-123"}}`)
	u = decodeAs[User](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/users/alice", `{"properties":{"role":"contributor","status":"disabled"}}`))
	if u.Properties.Role != "contributor" || u.Properties.Status != "disabled" {
		t.Errorf("updated %+v", u)
	}
	list := decodeAs[List[User]](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/users", nil))
	if len(list.Value) != 2 || list.Value[0].Name != "alice" || list.Value[1].Name != "owner" || list.Value[1].Properties.Role != "owner" {
		t.Errorf("list %+v", list.Value)
	}
	// Anyone may read their own record and change their own password, no more.
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/users/pull", `{"properties":{"role":"pull","password":"pull-password-123"}}`)
	f.must(http.StatusBadRequest, "pull", "PATCH", "/api/v1/users/pull", `{"properties":{"password":"pull-password-456"}}`)
	f.must(http.StatusForbidden, "pull", "PATCH", "/api/v1/users/pull", `{"properties":{"password":"pull-password-456","currentPassword":"wrong-password-1"}}`)
	f.must(http.StatusOK, "pull", "PATCH", "/api/v1/users/pull", `{"properties":{"password":"pull-password-456","currentPassword":"pull-password-123"}}`)
	f.must(http.StatusOK, "pull", "GET", "/api/v1/users/pull", nil)
	f.must(http.StatusForbidden, "pull", "GET", "/api/v1/users/alice", nil)
	f.must(http.StatusForbidden, "pull", "PATCH", "/api/v1/users/pull", `{"properties":{"role":"owner"}}`)
	f.must(http.StatusNoContent, "owner", "DELETE", "/api/v1/users/alice", nil)
	f.must(http.StatusNotFound, "owner", "GET", "/api/v1/users/alice", nil)
	f.must(http.StatusForbidden, "owner", "DELETE", "/api/v1/users/owner", nil)
}

func TestAudit(t *testing.T) {
	f := newFixture(t)
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/scopeMaps/audited-map", `{"properties":{}}`)
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/users/bob-the-user", `{"properties":{"role":"pull","password":"bob-password-123"}}`)
	f.must(http.StatusNoContent, "owner", "DELETE", "/api/v1/users/bob-the-user", nil)
	f.audit.Flush()
	events := decodeAs[auditEvents](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/audit?kind=permission&identity=owner&limit=10", nil))
	if len(events.Value) == 0 || events.Value[0].Target != "user bob-the-user" || events.Value[0].Kind != "permission" {
		t.Fatalf("events %+v", events.Value)
	}
	since := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	events = decodeAs[auditEvents](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/audit?since="+since, nil))
	if len(events.Value) != 0 {
		t.Errorf("future since: %+v", events.Value)
	}
}
