package api

import (
	"context"
	"log/slog"
	"net/http"
	"reflect"
	"testing"

	"github.com/berth-registry/berth/internal/ratelimit"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestOpenAPILimitSchemas checks the limit schemas against the types the
// limit routes encode and decode.
func TestOpenAPILimitSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	for name, v := range map[string]any{
		"LimitsPatch":    ratelimit.Update{},
		"TokenLimits":    ratelimit.TokenLimits{},
		"ScopeMapLimits": ratelimit.ScopeMapLimits{},
	} {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s is missing", name)
			continue
		}
		compareSchema(t, doc, name, s, reflect.TypeOf(v))
	}
}

// TestLimitRoutes sets and reads a token's and a scope map's limits
// through the API, with the rights the identity service gives.
func TestLimitRoutes(t *testing.T) {
	ctx := context.Background()
	st := testutil.NewStores(t, ownerPassword)
	db := st.Meta.Database()
	if err := ratelimit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.Open(ctx, ratelimit.Options{DB: db, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	h, err := New(Options{Identity: st.Identity, Metadata: st.Meta, Authenticator: identities(), Audit: st.Audit,
		Logger: slog.New(slog.DiscardHandler), Limits: ratelimit.NewSettings(l, st.Identity, st.Audit)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, h: h, ids: st.Identity, store: st.Meta, audit: st.Audit}
	f.must(http.StatusCreated, "owner", "PUT", "/api/v1/tokens/ci-token", map[string]any{"properties": map[string]any{
		"scopeMapActions": []string{"repositories/samples/*/content/read"}}})

	f.must(http.StatusOK, "owner", "PATCH", "/api/v1/scopeMaps/ci-token-scope-map/limits", map[string]any{"ratePerSecond": 5, "pullBytesPerDay": 1000})
	rec := f.must(http.StatusOK, "contributor", "PATCH", "/api/v1/tokens/ci-token/limits", map[string]any{"ratePerSecond": 50, "burst": 100})
	tl := decodeAs[ratelimit.TokenLimits](t, rec)
	want := ratelimit.Effective{Rate: 50, Burst: 100, RateFrom: ratelimit.FromToken, PullBytes: 1000, PullFrom: ratelimit.FromScopeMap}
	if tl.Effective != want || tl.Usage.RequestsAvailable == nil || *tl.Usage.RequestsAvailable != 100 {
		t.Fatalf("token limits %+v, want effective %+v with 100 requests available", tl, want)
	}
	got := decodeAs[ratelimit.TokenLimits](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/tokens/ci-token/limits", nil))
	if got.Effective != want || got.Inherited.PullBytesPerDay != 1000 {
		t.Fatalf("GET: %+v", got)
	}
	sm := decodeAs[ratelimit.ScopeMapLimits](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/scopeMaps/ci-token-scope-map/limits", nil))
	if sm.Limits.RatePerSecond != 5 || len(sm.Tokens) != 1 {
		t.Fatalf("scope map limits %+v", sm)
	}
	for _, c := range []struct {
		user, path string
		body       any
		status     int
	}{
		{"reader", "/api/v1/tokens/ci-token/limits", map[string]any{"ratePerSecond": 1}, http.StatusForbidden},
		{"owner", "/api/v1/tokens/nope-token/limits", map[string]any{"ratePerSecond": 1}, http.StatusNotFound},
		{"owner", "/api/v1/tokens/ci-token/limits", map[string]any{"ratePerSecond": -5}, http.StatusBadRequest},
		{"owner", "/api/v1/tokens/ci-token/limits", map[string]any{"rate": 5}, http.StatusBadRequest},
		{"owner", "/api/v1/tokens/ci-token/limits", map[string]any{}, http.StatusBadRequest},
		{"team-tok", "/api/v1/tokens/ci-token/limits", map[string]any{"ratePerSecond": 1}, http.StatusForbidden},
	} {
		f.must(c.status, c.user, "PATCH", c.path, c.body)
	}
}
