package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
)

// TestRegistryScopedTokens sends an access token issued for registry
// access to every route of the table: only the repository routes, which
// check each operation against the token's access, may take it. Whether a
// route takes it is the route's own property, not a guess from its path.
func TestRegistryScopedTokens(t *testing.T) {
	f := newFixture(t)
	owner := auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}
	scoped := owner
	scoped.Bearer = &auth.Claims{Access: []auth.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}}
	unscoped := owner
	unscoped.Bearer = &auth.Claims{}
	takesScoped := []string{
		"GET /api/v1/repositories",
		"GET /api/v1/repositories/{path...}",
		"PATCH /api/v1/repositories/{path...}",
		"DELETE /api/v1/repositories/{path...}",
	}
	routes := f.h.allRoutes()
	// A management route whose path merely mentions repositories.
	routes = append(routes, route{"POST /api/v1/repositories-report", nil, managementOnly})

	// The same table and guard, with handlers that only say they ran.
	h := &Handler{authn: fakeAuthn{"scoped": scoped, "unscoped": unscoped}, mux: http.NewServeMux()}
	reached := map[string]bool{}
	for _, rt := range routes {
		rt.handle = func(c *call) error {
			reached[c.r.Pattern] = true
			c.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		h.mux.Handle(rt.pattern, h.authenticated(rt))
	}
	path := strings.NewReplacer("{name}", "x", "{password}", "password1", "{path...}", "team/app")
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		for _, user := range []string{"scoped", "unscoped"} {
			clear(reached)
			req := httptest.NewRequest(method, path.Replace(pattern), nil)
			req.SetBasicAuth(user, "x")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			want := user == "unscoped" || slices.Contains(takesScoped, rt.pattern)
			if reached[rt.pattern] != want {
				t.Errorf("%s with a %s access token: reached the handler %v, want %v (status %d, %s)", rt.pattern, user, reached[rt.pattern], want, rec.Code, rec.Body)
			}
			if !want && rec.Code != http.StatusForbidden {
				t.Errorf("%s with a %s access token: status %d, want 403", rt.pattern, user, rec.Code)
			}
		}
	}
}
