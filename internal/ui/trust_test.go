package ui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/trust"
)

// withTrust replaces the fixture's portal with one that serves the
// signature policies page.
func withTrust(t *testing.T, f *fixture) *trust.Service {
	t.Helper()
	db := f.store.Database()
	if err := trust.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := trust.New(trust.Options{DB: db, Content: f.store, Blobs: blobs, Audit: f.audit})
	if err != nil {
		t.Fatal(err)
	}
	f.h = New(Options{Identity: f.ids, Meta: f.store, Audit: f.audit, Now: f.clock.Now, SessionTTL: 8 * time.Hour, IdleTimeout: 30 * time.Minute, Trust: ts})
	f.srv.Close()
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return ts
}

func testPublicKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestTrustPage creates a signature policy from pasted keys, switches it to
// audit mode and deletes it, as an owner; a reader sees the list without
// the forms and cannot post them.
func TestTrustPage(t *testing.T) {
	f := newFixture(t)
	ts := withTrust(t, f)
	b := f.signIn("owner", ownerPassword)
	r := b.get("/trust")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "No signature policies") || !strings.Contains(r.body, `action="/trust"`) {
		t.Fatalf("empty trust page without the create form:\n%s", r.body)
	}
	if !strings.Contains(r.body, `href="/trust" aria-current="page"`) {
		t.Errorf("the nav does not mark the page")
	}
	// Two keys pasted in one box become two keys.
	keys := testPublicKey(t) + "\n" + testPublicKey(t)
	r = b.post("/trust", url.Values{"name": {"prod"}, "repository": {"prod/a*"}, "require": {"cosign"}, "mode": {"enforce"}, "keys": {keys}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "wildcard") || !strings.Contains(r.body, `value="prod"`) {
		t.Errorf("an invalid pattern is not explained, or the form is not kept:\n%s", r.body)
	}
	wantStatus(t, b.post("/trust", url.Values{"name": {"prod"}, "repository": {"prod/*"}, "require": {"cosign"}, "mode": {"enforce"}, "keys": {keys}}), http.StatusSeeOther)
	p, err := ts.Get(context.Background(), owner, "prod")
	if err != nil || len(p.Keys) != 2 || p.Mode != trust.ModeEnforce || p.Require != trust.RequireCosign {
		t.Fatalf("created %+v, %v", p, err)
	}
	r = b.get("/trust")
	if !strings.Contains(r.body, "<code>prod/*</code>") || !strings.Contains(r.body, "Switch to audit") {
		t.Errorf("the policy is not listed:\n%s", r.body)
	}

	reader := f.signIn("reader", readerPassword)
	r = reader.get("/trust")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "<code>prod/*</code>") || strings.Contains(r.body, "Create policy") || strings.Contains(r.body, "Switch to audit") {
		t.Errorf("a reader sees the forms, or not the policy:\n%s", r.body)
	}
	wantStatus(t, reader.post("/trust/prod", url.Values{"op": {"delete"}}), http.StatusForbidden)

	wantStatus(t, b.post("/trust/prod", url.Values{"op": {"audit"}}), http.StatusSeeOther)
	if p, _ := ts.Get(context.Background(), owner, "prod"); p.Mode != trust.ModeAudit || len(p.Keys) != 2 {
		t.Errorf("after the switch: %+v", p)
	}
	wantStatus(t, b.post("/trust/prod", url.Values{"op": {"delete"}}), http.StatusSeeOther)
	if _, err := ts.Get(context.Background(), owner, "prod"); err == nil {
		t.Errorf("policy still there after delete")
	}
}
