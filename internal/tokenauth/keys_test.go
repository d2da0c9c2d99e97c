package tokenauth_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// TestRetiredKeyEndsCachedTokens: a signature check the service cached is
// not trusted once the key that signed the token is retired.
func TestRetiredKeyEndsCachedTokens(t *testing.T) {
	e := newEndpoint(t)
	g := e.post(url.Values{"grant_type": {"password"}, "username": {"owner"}, "password": {ownerPassword}})
	if g.status != 200 {
		t.Fatalf("login: %d %s", g.status, g.body)
	}
	svc := e.h.(*tokenauth.Service)
	check := func() error {
		req := httptest.NewRequest("GET", "/api/v1/tokens", nil)
		req.Header.Set("Authorization", "Bearer "+g.AccessToken)
		_, err := svc.Authenticate(req)
		return err
	}
	if err := check(); err != nil { // cached from here on
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, err := e.id.SigningKeys(owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.RotateSigningKey(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatalf("after a rotation the old key's token must still work: %v", err)
	}
	e.clk.add(identity.KeyPublishDelay)
	if err := e.id.RetireSigningKey(ctx, owner, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil {
		t.Fatal("a token of a retired key still authenticates (from the cache)")
	}
}
