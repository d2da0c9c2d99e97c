package tokenauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/publicurl"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/testutil"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// TestDenialsAreAudited: a request the access decision refuses, on /v2/
// and in a token request's scope, leaves an audit record naming the
// identity, the repository, what was asked and what is missing, the
// client's address and user agent; a flood of identical refusals is one
// record with a count.
func TestDenialsAreAudited(t *testing.T) {
	clk := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	st := testutil.NewStores(t, ownerPassword, func(o *identity.Options) {
		o.RegistryName, o.OwnerUsername = "berth", "owner"
		o.Now = clk.now
	})
	urls, err := publicurl.New("", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := tokenauth.New(tokenauth.Options{Identity: st.Identity, URLs: urls, Now: clk.now, Audit: st.Audit})
	e := &endpoint{t: t, clk: clk, id: st.Identity, h: s}
	pw := newToken(t, st.Identity, "sc-external-users", "team/*", "content/read", "metadata/read")

	// A token request for push on team/app: issued with pull only, and
	// the missing push recorded.
	e.accessToken("sc-external-users", pw, "repository:team/app:pull,push")
	// Then 50 refused pushes with Basic credentials, from one client.
	authz := s.Authorizer()
	for range 50 {
		req := httptest.NewRequest(http.MethodPost, "/v2/team/app/blobs/uploads/", nil)
		req.SetBasicAuth("sc-external-users", pw)
		req.Header.Set("User-Agent", "docker/27.0")
		req.RemoteAddr = "127.0.0.7:5555"
		if _, err := authz.Authorize(req, []registry.Access{registry.RepositoryAccess("team/app", auth.OpPush)}); err == nil {
			t.Fatal("a push beyond the scope map was allowed")
		}
	}
	// An allowed pull leaves no denial.
	req := httptest.NewRequest(http.MethodGet, "/v2/team/app/manifests/v1", nil)
	req.SetBasicAuth("sc-external-users", pw)
	if _, err := authz.Authorize(req, []registry.Access{registry.RepositoryAccess("team/app", auth.OpPull)}); err != nil {
		t.Fatal(err)
	}

	events, err := st.Audit.List(t.Context(), audit.Filter{Kind: audit.KindAccess, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("%d denial records, want 2 (the token request and the folded pushes): %+v", len(events), events)
	}
	pushes, scope := events[0], events[1]
	if pushes.Identity != "sc-external-users" || pushes.IdentityKind != "token" || pushes.Repository != "team/app" ||
		pushes.Action != "push" || pushes.Missing != "content/write" || pushes.CallerIP != "127.0.0.7" ||
		pushes.UserAgent != "docker/27.0" || pushes.Result != audit.ResultFailure || pushes.Count != 50 {
		t.Errorf("the refused pushes: %+v", pushes)
	}
	if scope.Repository != "team/app" || scope.Action != "pull,push" || scope.Missing != "content/write" || scope.Identity != "sc-external-users" {
		t.Errorf("the token request's denial: %+v", scope)
	}
	// Filtered by repository and by result (denied = failure).
	res, _ := audit.ParseResult("denied")
	got, err := st.Audit.List(t.Context(), audit.Filter{Repository: "team/app", Result: res, Identity: "sc-external-users", Limit: 100})
	if err != nil || len(got) != 2 {
		t.Errorf("filter by repository, result and identity: %d events, %v", len(got), err)
	}
	if got, _ := st.Audit.List(t.Context(), audit.Filter{Repository: "other/app", Limit: 100}); len(got) != 0 {
		t.Errorf("filter by another repository: %d events", len(got))
	}
}
