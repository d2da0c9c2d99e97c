package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
	"github.com/berth-registry/berth/internal/trust"
)

func publicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func newTrustFixture(t *testing.T) *fixture {
	t.Helper()
	st := testutil.NewStores(t, ownerPassword)
	ctx := context.Background()
	if err := trust.Migrate(ctx, st.Meta.Database()); err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := trust.New(trust.Options{DB: st.Meta.Database(), Content: st.Meta, Blobs: blobs, Audit: st.Audit})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Identity: st.Identity, Metadata: st.Meta, Authenticator: identities(), Audit: st.Audit, Trust: ts})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, h: h, ids: st.Identity, store: st.Meta, audit: st.Audit}
}

// TestTrustPolicyLifecycle creates, reads, changes and deletes a signature
// policy through the API, with the roles and errors of each step.
func TestTrustPolicyLifecycle(t *testing.T) {
	f := newTrustFixture(t)
	key, key2 := publicKeyPEM(t), publicKeyPEM(t)
	create := map[string]any{"properties": map[string]any{"repository": "prod/*", "require": "cosign", "keys": []string{key}}}

	for _, tc := range []struct {
		user string
		want int
	}{{"reader", http.StatusForbidden}, {"team-tok", http.StatusForbidden}, {"admin", http.StatusForbidden}, {"", http.StatusUnauthorized}} {
		f.must(tc.want, tc.user, "PUT", "/api/v1/trustPolicies/prod", create)
	}
	for _, body := range []any{
		map[string]any{"properties": map[string]any{"repository": "prod/a*", "keys": []string{key}}},
		map[string]any{"properties": map[string]any{"repository": "prod/*", "keys": []string{"garbage"}}},
		map[string]any{"properties": map[string]any{"repository": "prod/*", "require": "notation", "keys": []string{key}}},
		map[string]any{"properties": map[string]any{"repository": "prod/*", "mode": "warn", "keys": []string{key}}},
		map[string]any{"properties": map[string]any{"repository": "prod/*"}},
	} {
		if e := errorOf(t, f.must(http.StatusBadRequest, "owner", "PUT", "/api/v1/trustPolicies/prod", body)); e.Code != CodeBadRequest {
			t.Errorf("invalid policy: code %s", e.Code)
		}
	}
	p := decodeAs[TrustPolicy](t, f.must(http.StatusCreated, "contributor", "PUT", "/api/v1/trustPolicies/prod", create))
	if p.ID != "/trustPolicies/prod" || p.Type != TypeTrustPolicies || p.Properties.Mode != "enforce" || p.Properties.Require != "cosign" || len(p.Properties.Keys) != 1 || p.Properties.Version == 0 {
		t.Errorf("created %+v", p)
	}
	f.must(http.StatusConflict, "owner", "PUT", "/api/v1/trustPolicies/prod", create)

	list := decodeAs[List[TrustPolicy]](t, f.must(http.StatusOK, "reader", "GET", "/api/v1/trustPolicies", nil))
	if len(list.Value) != 1 || list.Value[0].Name != "prod" {
		t.Errorf("list %+v", list)
	}
	f.must(http.StatusNotFound, "reader", "GET", "/api/v1/trustPolicies/nope", nil)
	f.must(http.StatusForbidden, "team-tok", "GET", "/api/v1/trustPolicies", nil)

	f.must(http.StatusForbidden, "reader", "PATCH", "/api/v1/trustPolicies/prod", map[string]any{"properties": map[string]any{"mode": "audit"}})
	up := decodeAs[TrustPolicy](t, f.must(http.StatusOK, "owner", "PATCH", "/api/v1/trustPolicies/prod",
		map[string]any{"properties": map[string]any{"mode": "audit", "keys": []string{key2}}}))
	if up.Properties.Mode != "audit" || up.Properties.Repository != "prod/*" || len(up.Properties.Keys) != 1 || up.Properties.Keys[0] != key2 ||
		up.Properties.Version <= p.Properties.Version || !up.Properties.CreationDate.Equal(p.Properties.CreationDate) {
		t.Errorf("updated %+v, created %+v", up, p)
	}
	f.must(http.StatusBadRequest, "owner", "PATCH", "/api/v1/trustPolicies/prod", map[string]any{"properties": map[string]any{"require": "gpg"}})
	f.must(http.StatusNotFound, "owner", "PATCH", "/api/v1/trustPolicies/nope", map[string]any{"properties": map[string]any{"mode": "audit"}})

	f.must(http.StatusForbidden, "reader", "DELETE", "/api/v1/trustPolicies/prod", nil)
	f.must(http.StatusNoContent, "owner", "DELETE", "/api/v1/trustPolicies/prod", nil)
	f.must(http.StatusNotFound, "owner", "DELETE", "/api/v1/trustPolicies/prod", nil)

	// Each change is an audit event of its own.
	evs, err := f.audit.List(context.Background(), audit.Filter{Kind: audit.KindPermission})
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, e := range evs {
		if strings.HasPrefix(e.Target, "signature policy ") {
			changes = append(changes, e.Identity+" "+e.Reason)
		}
	}
	if strings.Join(changes, ",") != "owner deleted,owner updated,contributor created" {
		t.Errorf("audit records of the changes: %q", changes)
	}
}
