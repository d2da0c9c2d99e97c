package tokenauth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/publicurl"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// accessToken logs in as user at the token endpoint for scope.
func (e *endpoint) accessToken(user, password, scope string) string {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/oauth2/token?service=berth&scope="+scope, nil)
	req.SetBasicAuth(user, password)
	rec, a := serve(e.t, e.h, req)
	if rec.Code != http.StatusOK {
		e.t.Fatalf("token for %s: %d %s", user, rec.Code, rec.Body)
	}
	return a.Token
}

func TestAuthorizer(t *testing.T) {
	e := newEndpoint(t)
	pw := newToken(t, e.id, "ci-bot", "team/*", "content/read", "content/write", "metadata/read")
	scoped := e.accessToken("ci-bot", pw, "repository:team/app:pull") // narrower than the identity
	full := e.accessToken("ci-bot", pw, "repository:team/app:pull,push")
	authz := e.h.(*tokenauth.Service).Authorizer()
	urls, err := publicurl.New("", nil)
	if err != nil {
		t.Fatal(err)
	}
	anonAuthz := tokenauth.New(tokenauth.Options{Identity: e.id, URLs: urls, AnonymousPull: true, Now: e.clk.now}).Authorizer()

	pull := func(repo string) []registry.Access {
		return []registry.Access{registry.RepositoryAccess(repo, auth.OpPull)}
	}
	push := func(repo string) []registry.Access {
		return []registry.Access{registry.RepositoryAccess(repo, auth.OpPush)}
	}
	catalog := []registry.Access{{Type: "registry", Name: "catalog", Action: registry.ActionCatalog}}
	basic := func(user, pass string) string {
		req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		req.SetBasicAuth(user, pass)
		return req.Header.Get("Authorization")
	}
	const (
		ok        = ""
		challenge = "challenge"    // 401 with a Bearer challenge
		scope     = "insufficient" // 401 insufficient_scope
		invalid   = "invalid"      // 401 error="invalid_token"
		denied    = "denied"       // 403
	)
	for _, tc := range []struct {
		name   string
		anon   bool // with anonymous pull
		authz  string
		need   []registry.Access
		want   string
		caller string
		scope  string // in the challenge
	}{
		{"Basic, granted", false, basic("ci-bot", pw), push("team/app"), ok, "ci-bot", ""},
		{"Basic, not in the scope map", false, basic("ci-bot", pw), pull("other/app"), denied, "", ""},
		{"Basic, wrong password", false, basic("ci-bot", pw+"x"), pull("team/app"), challenge, "", "repository:team/app:pull"},
		{"Bearer, granted", false, "Bearer " + full, push("team/app"), ok, "ci-bot", ""},
		{"Bearer, narrower than its identity", false, "Bearer " + scoped, push("team/app"), scope, "", "repository:team/app:pull,push"},
		{"Bearer, another repository of the identity", false, "Bearer " + scoped, pull("team/web"), scope, "", "repository:team/web:pull"},
		{"Bearer, beyond the identity", false, "Bearer " + scoped, pull("other/app"), denied, "", ""},
		{"Bearer, forged", false, "Bearer " + scoped[:len(scoped)-4] + "AAAA", pull("team/app"), invalid, "", "repository:team/app:pull"},
		{"unknown scheme", false, "Digest x", pull("team/app"), challenge, "", "repository:team/app:pull"},
		{"anonymous, anonymous pull off", false, "", pull("team/app"), challenge, "", "repository:team/app:pull"},
		{"anonymous, catalog", false, "", catalog, challenge, "", "registry:catalog:*"},
		{"anonymous pull", true, "", pull("team/app"), ok, "anonymous", ""},
		{"anonymous push", true, "", push("team/app"), challenge, "", "repository:team/app:pull,push"},
		{"the owner lists the catalog", false, basic("owner", ownerPassword), catalog, ok, "owner", ""},
		{"a token lists the catalog (filtered later)", false, basic("ci-bot", pw), catalog, ok, "ci-bot", ""},
		{"an access token without the catalog", false, "Bearer " + scoped, catalog, scope, "", "registry:catalog:*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			a := authz
			if tc.anon {
				a = anonAuthz
			}
			c, err := a.Authorize(req, tc.need)
			if tc.want == ok {
				if err != nil || c.Name() != tc.caller {
					t.Fatalf("Authorize: %v, %v; want %s allowed", c, err, tc.caller)
				}
				return
			}
			var re *registry.Error
			if !errors.As(err, &re) {
				t.Fatalf("Authorize: %v, %v; want a registry error", c, err)
			}
			www := re.Header.Get("Www-Authenticate")
			switch tc.want {
			case denied:
				if re.Code != registry.CodeDenied || www != "" {
					t.Fatalf("%v (%s), want 403 DENIED without a challenge", re, www)
				}
				return
			case scope:
				if !strings.HasSuffix(www, `,error="insufficient_scope"`) {
					t.Errorf("challenge %s, want insufficient_scope", www)
				}
			case invalid:
				if !strings.HasSuffix(www, `,error="invalid_token"`) {
					t.Errorf("challenge %s, want invalid_token", www)
				}
			case challenge:
				if strings.Contains(www, "error=") {
					t.Errorf("challenge %s, want no error", www)
				}
			}
			if re.Code != registry.CodeUnauthorized {
				t.Errorf("code %v, want UNAUTHORIZED", re.Code)
			}
			want := `Bearer realm="http://example.com/oauth2/token",service="berth",scope="` + tc.scope + `"`
			if !strings.HasPrefix(www, want) {
				t.Errorf("challenge %s, want it to start %s", www, want)
			}
		})
	}
}

// TestAuthorizerSeesChangesAtOnce disables a token and shrinks a scope map:
// the very next request with an access token issued before is refused.
func TestAuthorizerSeesChangesAtOnce(t *testing.T) {
	ctx := context.Background()
	e := newEndpoint(t)
	pw := newToken(t, e.id, "ci-bot", "team/app", "content/read", "content/write")
	tok := e.accessToken("ci-bot", pw, "repository:team/app:pull,push")
	authz := e.h.(*tokenauth.Service).Authorizer()
	authorize := func(op auth.Operation) error {
		req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		_, err := authz.Authorize(req, []registry.Access{registry.RepositoryAccess("team/app", op)})
		return err
	}
	if err := authorize(auth.OpPush); err != nil {
		t.Fatalf("push before the change: %v", err)
	}
	readOnly, err := auth.RepositoryActions("team/app", "content/read")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.UpdateScopeMap(ctx, owner, "ci-bot-scope-map", identity.ScopeMapUpdate{Actions: readOnly}); err != nil {
		t.Fatal(err)
	}
	if err := authorize(auth.OpPush); err == nil {
		t.Fatal("push allowed after the scope map lost content/write")
	}
	if err := authorize(auth.OpPull); err != nil {
		t.Fatalf("pull after shrinking the scope map: %v", err)
	}
	off := identity.StatusDisabled
	if _, err := e.id.UpdateToken(ctx, owner, "ci-bot", identity.TokenUpdate{Status: &off}); err != nil {
		t.Fatal(err)
	}
	var re *registry.Error
	if err := authorize(auth.OpPull); !errors.As(err, &re) || re.Code != registry.CodeUnauthorized || !strings.Contains(re.Message, "disabled") {
		t.Fatalf("pull with a disabled token: %v, want 401 saying it is disabled", err)
	}
}

// TestManagementAuthenticator checks what the management API is told about
// a caller: credentials are required, and a Bearer token keeps its claims
// so that the API can refuse registry-scoped ones.
func TestManagementAuthenticator(t *testing.T) {
	e := newEndpoint(t)
	pw := newToken(t, e.id, "ci-bot", "team/app", "content/read")
	scoped := e.accessToken("ci-bot", pw, "repository:team/app:pull")
	s := e.h.(*tokenauth.Service)
	for _, tc := range []struct {
		name, authz string
		ok          bool
		bearer      bool
	}{
		{"no credentials", "", false, false},
		{"Basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("owner:"+ownerPassword)), true, false},
		{"Basic, wrong password", "Basic " + base64.StdEncoding.EncodeToString([]byte("owner:wrong")), false, false},
		{"Bearer", "Bearer " + scoped, true, true},
		{"Bearer, not a token", "Bearer nonsense", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/tokens", nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			id, err := s.Authenticate(req)
			if (err == nil) != tc.ok {
				t.Fatalf("Authenticate: %v, %v; want ok %v", id, err, tc.ok)
			}
			if tc.ok && (id.Kind == auth.KindAnonymous || (id.Bearer != nil) != tc.bearer) {
				t.Errorf("identity %+v, want a Bearer: %v", id, tc.bearer)
			}
			if tc.bearer && len(id.Bearer.Access) != 1 {
				t.Errorf("Bearer claims %+v, want the token's one access", id.Bearer)
			}
			if _, limited := tokenauth.RetryAfter(err); limited {
				t.Errorf("a single failure is rate limited: %v", err)
			}
		})
	}
}
