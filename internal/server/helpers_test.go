package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/server"
)

const ownerPassword = "correct horse battery staple"

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

type env struct {
	t    *testing.T
	srv  *server.Server
	http *httptest.Server
	id   *identity.Service
}

func newEnv(t *testing.T, opts ...func(*config.Config)) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &env{t: t, srv: srv, http: hs, id: srv.Identity()}
}

func (e *env) host() string { return strings.TrimPrefix(e.http.URL, "http://") }

// newToken creates a token with an inline scope map and returns its passwords.
func (e *env) newToken(name string, actions ...string) (pw1, pw2 string) {
	e.t.Helper()
	_, creds, err := e.id.CreateToken(context.Background(), owner, identity.TokenSpec{Name: name, Actions: actions, Passwords: []string{"password1", "password2"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return creds.Passwords[0].Value, creds.Passwords[1].Value
}

func actions(pattern string, acts ...string) []string {
	out, err := auth.RepositoryActions(pattern, acts...)
	if err != nil {
		panic(err)
	}
	return out
}

type tokenResp struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token"`
}

// login asks the token endpoint for scopes with Basic credentials.
func (e *env) login(user, pass string, scopes ...string) (int, tokenResp) {
	e.t.Helper()
	q := url.Values{"service": {"berth"}, "scope": scopes}
	req, _ := http.NewRequest("GET", e.http.URL+"/oauth2/token?"+q.Encode(), nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	json.NewDecoder(resp.Body).Decode(&tr)
	return resp.StatusCode, tr
}

func (e *env) accessToken(user, pass string, scopes ...string) string {
	e.t.Helper()
	st, tr := e.login(user, pass, scopes...)
	if st != 200 || tr.Token == "" {
		e.t.Fatalf("login %s: status %d", user, st)
	}
	return tr.Token
}

// do sends a request with the given Authorization header value and returns
// the status, the body and the response headers.
func (e *env) do(method, path, authz string, body io.Reader) (int, string, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, body)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func bearer(tok string) string { return "Bearer " + tok }

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (e *env) doForm(form string) (int, string) {
	e.t.Helper()
	resp, err := http.Post(e.http.URL+"/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func identityUpdate(status *string) identity.TokenUpdate { return identity.TokenUpdate{Status: status} }
