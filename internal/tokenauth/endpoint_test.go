package tokenauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// newToken creates a token with grants on repository pattern and one
// password, and returns the password.
func newToken(t *testing.T, ids *identity.Service, name, pattern string, acts ...string) string {
	t.Helper()
	actions, err := auth.RepositoryActions(pattern, acts...)
	if err != nil {
		t.Fatal(err)
	}
	_, creds, err := ids.CreateToken(context.Background(), owner, identity.TokenSpec{Name: name, Actions: actions, Passwords: []string{identity.SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	return creds.Passwords[0].Value
}

type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func serve(t *testing.T, h http.Handler, req *http.Request) (*httptest.ResponseRecorder, tokenAnswer) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var a tokenAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("%s %s: status %d, body %q is not JSON: %v", req.Method, req.URL, rec.Code, rec.Body, err)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s %s: Cache-Control %q, want no-store", req.Method, req.URL, cc)
	}
	return rec, a
}

func TestTokenEndpoint(t *testing.T) {
	e := newEndpoint(t)
	pw := newToken(t, e.id, "reader", "team/app", "content/read", "metadata/read")
	disabledPw := newToken(t, e.id, "switched-off", "team/app", "content/read")
	off := identity.StatusDisabled
	if _, err := e.id.UpdateToken(context.Background(), owner, "switched-off", identity.TokenUpdate{Status: &off}); err != nil {
		t.Fatal(err)
	}
	get := func(query, user, pass string) *http.Request {
		req := httptest.NewRequest(http.MethodGet, "/oauth2/token?"+query, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return req
	}
	post := func(form url.Values) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	}
	malformed := get("service=berth", "", "")
	malformed.Header.Set("Authorization", "Basic !!!")
	huge := post(url.Values{"grant_type": {"password"}, "username": {"reader"}, "password": {strings.Repeat("x", 70<<10)}})

	for _, tc := range []struct {
		name    string
		req     *http.Request
		status  int
		scope   string // granted, for 200
		refresh bool   // a refresh token in the answer
		err     string // OAuth error code, for failures
		message string // part of error_description
	}{
		{"GET, granted", get("service=berth&scope=repository:team/app:pull", "reader", pw), 200, "repository:team/app:pull,metadata_read", false, "", ""},
		{"GET, two scopes, one granted", get("service=berth&scope=repository:team/app:pull&scope=repository:team/other:pull", "reader", pw), 200, "repository:team/app:pull,metadata_read", false, "", ""},
		{"GET, more than granted", get("service=berth&scope=repository:team/app:pull,push", "reader", pw), 200, "repository:team/app:pull,metadata_read", false, "", ""},
		{"GET, nothing granted", get("service=berth&scope=repository:team/other:pull", "reader", pw), 200, "", false, "", ""},
		{"GET, no service", get("scope=repository:team/app:pull", "reader", pw), 200, "repository:team/app:pull,metadata_read", false, "", ""},
		{"GET, offline token", get("service=berth&offline_token=true", "reader", pw), 200, "", true, "", ""},
		{"POST password grant", post(url.Values{"service": {"berth"}, "grant_type": {"password"}, "username": {"reader"}, "password": {pw}, "scope": {"repository:team/app:pull"}}), 200, "repository:team/app:pull,metadata_read", false, "", ""},
		{"POST offline", post(url.Values{"grant_type": {"password"}, "username": {"reader"}, "password": {pw}, "access_type": {"offline"}}), 200, "", true, "", ""},

		{"wrong password", get("service=berth", "reader", pw+"x"), 401, "", false, "invalid_grant", "invalid username or password"},
		{"unknown name", get("service=berth", "nobody-here", pw), 401, "", false, "invalid_grant", "invalid username or password"},
		{"disabled token", get("service=berth", "switched-off", disabledPw), 401, "", false, "invalid_grant", "token disabled"},
		{"disabled token, wrong password", get("service=berth", "switched-off", pw), 401, "", false, "invalid_grant", "invalid username or password"},
		{"no credentials, no anonymous pull", get("service=berth&scope=repository:team/app:pull", "", ""), 401, "", false, "invalid_client", "authentication required"},
		{"malformed Basic", malformed, 401, "", false, "invalid_client", "malformed"},
		{"another service", get("service=elsewhere", "reader", pw), 400, "", false, "invalid_request", `unknown service "elsewhere"`},
		{"unknown grant", post(url.Values{"grant_type": {"client_credentials"}}), 400, "", false, "unsupported_grant_type", "password, refresh_token or urn:ietf:params:oauth:grant-type:token-exchange"},
		{"bad refresh token", post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"not-a-token"}}), 401, "", false, "invalid_grant", "invalid refresh token"},
		{"form too large", huge, 413, "", false, "invalid_request", "larger than"},
		{"PUT", httptest.NewRequest(http.MethodPut, "/oauth2/token", nil), 405, "", false, "invalid_request", "GET or POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, a := serve(t, e.h, tc.req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != http.StatusOK {
				if a.Error != tc.err || !strings.Contains(a.Description, tc.message) || a.Token != "" {
					t.Fatalf("answer %+v, want error %s saying %q and no token", a, tc.err, tc.message)
				}
				return
			}
			if a.Token == "" || a.Token != a.AccessToken || a.ExpiresIn <= 0 {
				t.Fatalf("answer %+v: want the same token as token and access_token, with an expiry", a)
			}
			if a.Scope != tc.scope {
				t.Errorf("scope %q, want %q", a.Scope, tc.scope)
			}
			if (a.RefreshToken != "") != tc.refresh {
				t.Errorf("refresh token %q, want one: %v", a.RefreshToken, tc.refresh)
			}
			// The token says what the answer says, and no more.
			claims, err := e.id.Verifier().VerifyAccess(a.Token)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, acc := range claims.Access {
				got = append(got, acc.Type+":"+acc.Name+":"+strings.Join(acc.Actions, ","))
			}
			if strings.Join(got, " ") != tc.scope || claims.Subject != "reader" {
				t.Errorf("token for %s grants %v, want %q", claims.Subject, got, tc.scope)
			}
		})
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/oauth2/token", nil))
	if got := rec.Header().Get("Allow"); got != "GET, POST" {
		t.Errorf("Allow %q on DELETE, want GET, POST", got)
	}
}

// TestTokenEndpointRevocation checks that an access token stops working
// when its password is deleted, and a new login with it fails at once.
func TestTokenEndpointRevocation(t *testing.T) {
	e := newEndpoint(t)
	pw := newToken(t, e.id, "reader", "team/app", "content/read")
	req := httptest.NewRequest(http.MethodGet, "/oauth2/token?service=berth&scope=repository:team/app:pull", nil)
	req.SetBasicAuth("reader", pw)
	_, a := serve(t, e.h, req)
	claims, err := e.id.Verifier().VerifyAccess(a.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.ResolveClaims(claims); err != nil {
		t.Fatalf("fresh access token: %v", err)
	}
	if _, err := e.id.DeletePassword(context.Background(), owner, "reader", identity.SlotPassword1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.ResolveClaims(claims); err == nil {
		t.Fatal("the access token of a deleted password still resolves")
	}
	req = httptest.NewRequest(http.MethodGet, "/oauth2/token?service=berth", nil)
	req.SetBasicAuth("reader", pw)
	if rec, _ := serve(t, e.h, req); rec.Code != http.StatusUnauthorized {
		t.Fatalf("login with a deleted password: %d, want 401", rec.Code)
	}
}
