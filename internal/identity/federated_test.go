package identity_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

var federatedConformance = []struct {
	name string
	test func(*testing.T, backend)
}{
	{"Lifecycle", testFederatedLifecycle},
	{"RevocationOnEveryNode", testFederatedRevocationOnEveryNode},
}

func TestFederatedSQLite(t *testing.T) {
	b := backend{engine: sqldb.SQLite, place: func(t *testing.T) string { return t.TempDir() }}
	for _, c := range federatedConformance {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

func TestFederatedPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	b := backend{engine: sqldb.Postgres, place: func(*testing.T) string { return pg.NewDatabase() }}
	for _, c := range federatedConformance {
		t.Run(c.name, func(t *testing.T) { c.test(t, b) })
	}
}

var ghCred = identity.FederatedCredential{Name: "github-main", Issuer: "https://token.actions.githubusercontent.com",
	Subject: "repo:acme/app:ref:refs/heads/main", Claims: map[string]string{"repository_owner": "acme"}}

func candidate(t *testing.T, s *identity.Service, token, name string) federation.Credential {
	t.Helper()
	creds, ok := s.FederatedCandidates(token)
	if !ok {
		t.Fatalf("token %s not found", token)
	}
	for _, c := range creds {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("token %s has no federated credential %s among %+v", token, name, creds)
	return federation.Credential{}
}

// testFederatedLifecycle: create (validated, audience defaulting to the
// registry's name), list, survive a restart, log in, and revoke by
// deleting the credential, re-creating it, disabling and deleting the
// token.
func testFederatedLifecycle(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s := b.service(t, place, clk)
	if _, _, err := s.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-push", Actions: grants(t, "acme/*", "content/read", "content/write")}); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]identity.FederatedCredential{
		"http issuer":     {Name: "x-1", Issuer: "http://token.example", Subject: "s"},
		"no subject":      {Name: "x-1", Issuer: "https://token.example"},
		"bad name":        {Name: "!", Issuer: "https://token.example", Subject: "s"},
		"private JWKS":    {Name: "x-1", Issuer: "k8s", Subject: "s", JWKS: json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)},
		"wildcard only":   {Name: "x-1", Issuer: "https://token.example", Subject: "**"},
		"reserved claim":  {Name: "x-1", Issuer: "https://token.example", Subject: "s", Claims: map[string]string{"aud": "x"}},
		"JWKS not JSON":   {Name: "x-1", Issuer: "k8s", Subject: "s", JWKS: json.RawMessage(`{`)},
		"http on loopbak": {Name: "x-1", Issuer: "http://127.0.0.1:1", Subject: "s"},
	} {
		if _, err := s.CreateFederatedCredential(ctx, owner, "ci-push", spec); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := s.CreateFederatedCredential(ctx, owner, "nope", ghCred); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("unknown token: %v", err)
	}
	reader := auth.Identity{Kind: auth.KindUser, Name: "r", Role: auth.RoleReader}
	if _, err := s.CreateFederatedCredential(ctx, reader, "ci-push", ghCred); !errors.Is(err, identity.ErrForbidden) {
		t.Errorf("reader: %v, want forbidden", err)
	}
	got, err := s.CreateFederatedCredential(ctx, owner, "ci-push", ghCred)
	if err != nil {
		t.Fatal(err)
	}
	if got.Audience != s.RegistryName() {
		t.Errorf("audience %q, want the registry's name %q", got.Audience, s.RegistryName())
	}
	dup := ghCred
	dup.Name = "GitHub-Main"
	if _, err := s.CreateFederatedCredential(ctx, owner, "ci-push", dup); !errors.Is(err, identity.ErrConflict) {
		t.Errorf("same name in other case: %v", err)
	}
	k8s := identity.FederatedCredential{Name: "prod-deployer", Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:prod:deployer",
		Audience: "registry.example", JWKS: json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)}
	if _, err := s.CreateFederatedCredential(ctx, owner, "ci-push", k8s); err != nil {
		t.Fatal(err)
	}

	// A restart reads them back as they were.
	s2 := b.service(t, place, clk)
	list, err := s2.ListFederatedCredentials(owner, "ci-push")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "github-main" || list[1].Name != "prod-deployer" || list[0].Claims["repository_owner"] != "acme" ||
		len(list[1].JWKS) == 0 || !list[0].CreationTime.Equal(got.CreationTime) {
		t.Fatalf("after restart: %+v", list)
	}

	c := candidate(t, s, "ci-push", "github-main")
	exp := clk.now().Add(10 * time.Minute)
	login, err := s.LoginFederated(c, exp)
	if err != nil {
		t.Fatal(err)
	}
	if login.Subject.Slot != identity.FederatedSlotPrefix+"github-main" || !login.Identity.Policy.Allowed("acme/app").Has(auth.ContentWrite) {
		t.Fatalf("login %+v", login)
	}
	tok, _, err := s.Signer().IssueAccess(login.Subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := s.Verifier().VerifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveClaims(claims); err != nil {
		t.Fatalf("access token of a federated login: %v", err)
	}
	// The refresh token lasts as long as the JWT, and a refresh does not
	// extend it.
	rt, rc, err := s.Signer().IssueRefresh(login.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if rc.ExpiresAt != exp.Unix() {
		t.Errorf("refresh token expires at %d, want the JWT's %d", rc.ExpiresAt, exp.Unix())
	}
	rclaims, err := s.Verifier().VerifyRefresh(rt)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := s.ResolveRefresh(rclaims)
	if err != nil {
		t.Fatal(err)
	}
	if _, nc, _ := s.Signer().RenewRefresh(renewed.Subject); nc.ExpiresAt > exp.Unix() {
		t.Errorf("a renewed refresh token expires at %d, after the JWT's %d", nc.ExpiresAt, exp.Unix())
	}

	// Deleting the credential revokes what it issued; one made again
	// under the same name is another credential.
	if err := s.DeleteFederatedCredential(ctx, owner, "ci-push", "github-main"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveClaims(claims); err == nil || !strings.Contains(err.Error(), "federated credential github-main deleted") {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := s.LoginFederated(c, exp); err == nil {
		t.Fatal("login through a deleted credential")
	}
	if _, err := s.CreateFederatedCredential(ctx, owner, "ci-push", ghCred); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveClaims(claims); err == nil {
		t.Fatal("an access token of the deleted credential works with the new one")
	}
	c = candidate(t, s, "ci-push", "github-main")
	disabled := identity.StatusDisabled
	if _, err := s.UpdateToken(ctx, owner, "ci-push", identity.TokenUpdate{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoginFederated(c, exp); err == nil || err.Error() != "token disabled" {
		t.Fatalf("disabled token: %v", err)
	}
	if got := s.FederatedByIssuer(ghCred.Issuer); len(got) != 1 || got[0].Token != "ci-push" {
		t.Fatalf("by issuer: %+v", got)
	}
	if err := s.DeleteToken(ctx, owner, "ci-push"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.db(t, place).R().QueryRowContext(ctx, `SELECT count(*) FROM federated_credentials`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after deleting the token, %d federated credentials remain (%v)", n, err)
	}
}

// testFederatedRevocationOnEveryNode: another node follows the creation
// and the deletion of a credential by loading just that token.
func testFederatedRevocationOnEveryNode(t *testing.T, b backend) {
	ctx := context.Background()
	place := b.place(t)
	clk := &clock{t: time.Now()}
	s1 := b.service(t, place, clk)
	s2 := b.service(t, place, clk)
	if _, _, err := s1.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-push", Actions: grants(t, "acme/*", "content/read")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateFederatedCredential(ctx, owner, "ci-push", ghCred); err != nil {
		t.Fatal(err)
	}
	loads := s2.FullLoads()
	if err := s2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	login, err := s2.LoginFederated(candidate(t, s2, "ci-push", "github-main"), clk.now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := s2.Signer().IssueAccess(login.Subject, nil)
	claims, err := s2.Verifier().VerifyAccess(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.DeleteFederatedCredential(ctx, owner, "ci-push", "github-main"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.ResolveClaims(claims); err == nil {
		t.Fatal("the other node still accepts an access token of the deleted credential")
	}
	if n := s2.FullLoads() - loads; n != 0 {
		t.Errorf("the other node loaded everything %d times", n)
	}
}
