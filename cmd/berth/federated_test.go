package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/testutil"
)

// startFederationServer serves berth with http issuers on loopback allowed.
func startFederationServer(t *testing.T) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.FederationAllowHTTPLoopback = true
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &testServer{url: hs.URL, ids: srv.Identity(), store: srv.Metadata()}
}

// runProvider runs `berth credential-provider` with the request JSON on
// stdin, as the kubelet does.
func runProvider(t *testing.T, request string, args ...string) (CredentialProviderResponse, error) {
	t.Helper()
	cmd := newCredentialProviderCmd()
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(request))
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		return CredentialProviderResponse{}, err
	}
	var resp CredentialProviderResponse
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatalf("the response is not JSON: %v\n%s", err, out.String())
	}
	// The documented shape, field for field.
	var raw map[string]any
	json.Unmarshal(out.Bytes(), &raw)
	for _, k := range []string{"kind", "apiVersion", "cacheKeyType", "auth"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("the response has no %q: %s", k, out.String())
		}
	}
	return resp, nil
}

// TestCredentialProvider: the CLI adds a federated credential trusting a
// cluster's service accounts; the credential provider, fed a
// CredentialProviderRequest as kubelet 1.33+ sends it, returns a
// credential the runtime pulls with; deleting the credential stops it.
func TestCredentialProvider(t *testing.T) {
	srv := startFederationServer(t)
	iss := testutil.StartOIDCIssuer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	host := strings.TrimPrefix(srv.url, "http://")

	c.ok("token", "create", "-n", "deployer", "--repository", "acme/*", "content/read", "--no-passwords")
	out := c.ok("token", "federated-credential", "create", "-n", "deployer", "--issuer", iss.URL, "--subject", "system:serviceaccount:prod:*", "--audience", "kubelet-pulls")
	if !strings.Contains(out, "docker login -u deployer --password-stdin "+host) {
		t.Errorf("create output:\n%s", out)
	}
	list := c.ok("token", "federated-credential", "list", "-n", "deployer", "-o", "json")
	var creds []identity.FederatedCredential
	if err := json.Unmarshal([]byte(list), &creds); err != nil || len(creds) != 1 || creds[0].Audience != "kubelet-pulls" || !strings.HasPrefix(creds[0].Name, "system-serviceaccount-prod-") {
		t.Fatalf("list: %v %s", err, list)
	}
	credName := creds[0].Name
	c.fails("already has a federated credential", "token", "federated-credential", "create", "-n", "deployer", "--issuer", iss.URL, "--subject", "system:serviceaccount:prod:*", "--audience", "kubelet-pulls")
	c.fails("invalid claim condition", "token", "federated-credential", "create", "-n", "deployer", "--issuer", iss.URL, "--subject", "x", "--claim", "novalue")
	if out := c.ok("token", "federated-credential", "show", "-n", "deployer", "--credential-name", credName); !strings.Contains(out, "OIDC discovery") {
		t.Errorf("show:\n%s", out)
	}
	if out := c.ok("token", "federated-credential", "show", "-n", "deployer", credName); !strings.Contains(out, credName) {
		t.Errorf("show NAME:\n%s", out)
	}
	c.fails("name the credential", "token", "federated-credential", "delete", "-n", "deployer", "--yes")

	// An image to pull, pushed by the owner.
	ref, err := name.ParseReference(host+"/acme/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "owner", Password: ownerPassword})); err != nil {
		t.Fatal(err)
	}

	sat := iss.Sign(t, testutil.KubernetesClaims("prod", "web", "kubelet-pulls"), testutil.SignOptions{})
	request := func(image, token string) string {
		b, _ := json.Marshal(map[string]any{"kind": "CredentialProviderRequest", "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
			"image": image, "serviceAccountToken": token, "serviceAccountAnnotations": map[string]string{"example.com/team": "web"}})
		return string(b)
	}
	resp, err := runProvider(t, request(host+"/acme/app:v1", sat), "--registry", srv.url)
	if err != nil {
		t.Fatal(err)
	}
	auth, ok := resp.Auth[host]
	if resp.Kind != "CredentialProviderResponse" || resp.APIVersion != "credentialprovider.kubelet.k8s.io/v1" || resp.CacheKeyType != "Registry" || !ok || auth.Username != "deployer" || auth.Password == "" {
		t.Fatalf("response %+v", resp)
	}
	d, err := time.ParseDuration(resp.CacheDuration)
	if err != nil || d <= 0 || d > time.Hour {
		t.Fatalf("cacheDuration %q: the credential lasts as long as the service-account token (an hour), less a margin", resp.CacheDuration)
	}
	if strings.Contains(auth.Password, sat) {
		t.Fatal("the provider handed out the service-account token itself")
	}
	pulled, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password}))
	if err != nil {
		t.Fatalf("pull with the provider's credential: %v", err)
	}
	want, _ := img.Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Fatalf("pulled %s, want %s", got, want)
	}
	img2, _ := random.Image(256, 1)
	if err := remote.Write(ref, img2, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password})); err == nil {
		t.Fatal("pushed with a pull-only token's credential")
	}

	// Refusals: another namespace's account, no token, another registry's
	// image (no credentials, not an error).
	other := iss.Sign(t, testutil.KubernetesClaims("dev", "web", "kubelet-pulls"), testutil.SignOptions{})
	if _, err := runProvider(t, request(host+"/acme/app:v1", other), "--registry", srv.url, "--token", "deployer"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("another namespace: %v", err)
	}
	if _, err := runProvider(t, request(host+"/acme/app:v1", ""), "--registry", srv.url); err == nil || !strings.Contains(err.Error(), "tokenAttributes") {
		t.Fatalf("no token: %v", err)
	}
	if resp, err := runProvider(t, request("docker.io/library/alpine:3", sat), "--registry", srv.url); err != nil || len(resp.Auth) != 0 {
		t.Fatalf("another registry's image: %+v %v", resp, err)
	}

	// Deleting the credential stops the credential already handed out.
	c.ok("token", "federated-credential", "delete", "-n", "deployer", "--credential-name", credName, "--yes")
	if _, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password})); err == nil {
		t.Fatal("pulled with the credential of a deleted federated credential")
	}
	if out := c.ok("token", "federated-credential", "list", "-n", "deployer"); strings.Contains(out, credName) {
		t.Fatalf("list after delete:\n%s", out)
	}
}

// TestFederatedDockerLoginFlow: the JWT as the password of docker's token
// request (GET with Basic) through the whole server, within the scope map.
func TestFederatedDockerLoginFlow(t *testing.T) {
	srv := startFederationServer(t)
	iss := testutil.StartOIDCIssuer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	host := strings.TrimPrefix(srv.url, "http://")
	c.ok("token", "create", "-n", "ci-push", "--repository", "acme/*", "content/read", "content/write", "--no-passwords")
	c.ok("token", "federated-credential", "create", "-n", "ci-push", "--credential-name", "github-main", "--issuer", iss.URL,
		"--subject", "repo:acme/app:ref:refs/heads/main", "--claim", "repository_owner=acme")
	jwt := iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/main", "berth"), testutil.SignOptions{})
	img, _ := random.Image(256, 1)
	login := remote.WithAuth(&authn.Basic{Username: "ci-push", Password: jwt})
	ok, _ := name.ParseReference(host+"/acme/app:v1", name.Insecure)
	if err := remote.Write(ok, img, login); err != nil {
		t.Fatalf("push within the scope map: %v", err)
	}
	outside, _ := name.ParseReference(host+"/other/app:v1", name.Insecure)
	if err := remote.Write(outside, img, login); err == nil {
		t.Fatal("pushed outside the scope map")
	}
	wrong := iss.Sign(t, testutil.GitHubClaims("acme/app", "refs/heads/dev", "berth"), testutil.SignOptions{})
	if err := remote.Write(ok, img, remote.WithAuth(&authn.Basic{Username: "ci-push", Password: wrong})); err == nil {
		t.Fatal("pushed with another branch's token")
	}
}
