package e2e

// Federated credentials end to end: a local OIDC issuer (discovery and
// JWKS on loopback) signs tokens shaped like GitHub Actions' and like
// Kubernetes service-account tokens; docker and podman log in with them
// as the password of a berth token and push within its scope map; every
// kind of bad token is refused with the check named in the audit log; a
// key rotation at the issuer is followed.

import (
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testutil"
)

const fedAudience = "berth-e2e"

type auditEvent struct {
	Result string `json:"result"`
	Reason string `json:"reason"`
	Slot   string `json:"credential"`
}

// lastLoginReason waits for the audit record of identity's last login
// (logins are written in batches) and returns it.
func lastLogin(t *testing.T, cli *berthCLI, identity string, after int) auditEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var evs []auditEvent
		cli.json(&evs, "audit", "list", "--identity", identity, "--kind", "login", "--limit", "100")
		if len(evs) > after || time.Now().After(deadline) {
			if len(evs) <= after {
				t.Fatalf("no new login record for %s", identity)
			}
			return evs[0]
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func loginCount(t *testing.T, cli *berthCLI, identity string) int {
	t.Helper()
	var evs []auditEvent
	cli.json(&evs, "audit", "list", "--identity", identity, "--kind", "login", "--limit", "100")
	return len(evs)
}

func TestFederatedLoginDockerPodman(t *testing.T) {
	srv := startBerth(t, testutil.WithArgs("--federation-allow-http-loopback"))
	iss := testutil.StartOIDCIssuer(t)
	cli := newBerthCLI(t, srv)
	d := testutil.StartDockerd(t)
	dc := dockerClient{t, d, srv}

	cli.must("token", "create", "-n", "fed-ci", "--repository", "fed/*", "content/read", "content/write", "--no-passwords")
	cli.must("token", "federated-credential", "create", "-n", "fed-ci", "--credential-name", "github-main", "--issuer", iss.URL,
		"--subject", "repo:acme/app:ref:refs/heads/main", "--audience", fedAudience, "--claim", "repository_owner=acme")
	cli.must("token", "federated-credential", "create", "-n", "fed-ci", "--credential-name", "k8s-deployer", "--issuer", iss.URL,
		"--subject", "system:serviceaccount:prod:*", "--audience", fedAudience)
	github := func() map[string]any { return testutil.GitHubClaims("acme/app", "refs/heads/main", fedAudience) }

	t.Run("DockerPushWithinTheScopeMap", func(t *testing.T) {
		dc.mustLogin("fed-ci", iss.Sign(t, github(), testutil.SignOptions{}))
		dc.mustPush("fed/app:v1")
		out, err := dc.push("other/app:v1")
		mustFail(t, "push outside the scope map", out, err, msgDenied)
		if ev := lastLogin(t, cli, "fed-ci", 0); ev.Result != "success" || ev.Slot != "federated:github-main" {
			t.Fatalf("audit %+v", ev)
		}
	})

	t.Run("PodmanWithAServiceAccountToken", func(t *testing.T) {
		pm := testutil.NewPodman(t)
		jwt := iss.Sign(t, testutil.KubernetesClaims("prod", "deployer", fedAudience), testutil.SignOptions{})
		out, err := pm.RunInput(jwt, "login", "--tls-verify=false", "--username", "fed-ci", "--password-stdin", srv.Host)
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("podman login: %v\n%s", err, out)
		}
		img := testutil.RandomImage(t, 1, 16<<10)
		layout := testutil.WriteOCILayout(t, img, "v1")
		id := strings.TrimSpace(pm.MustRun("pull", "--quiet", "oci:"+layout+":v1"))
		pm.MustRun("tag", id, srv.Host+"/fed/pod:v1")
		if out, err := pm.Run("push", "--tls-verify=false", srv.Host+"/fed/pod:v1"); err != nil {
			t.Fatalf("podman push: %v\n%s", err, out)
		}
		if ownerManifest(t, srv, "fed/pod:v1") == "" {
			t.Fatal("the registry does not hold podman's push")
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		other := testutil.NewOIDCKey(t, "RS256")
		with := func(k string, v any) map[string]any { c := github(); c[k] = v; return c }
		now := time.Now()
		for _, tc := range []struct {
			name, jwt, reason string
		}{
			{"wrong issuer", iss.Sign(t, with("iss", "https://token.actions.githubusercontent.com"), testutil.SignOptions{}), "federated login: issuer:"},
			{"wrong audience", iss.Sign(t, with("aud", "berth"), testutil.SignOptions{}), "federated login: audience:"},
			{"wrong subject", iss.Sign(t, with("sub", "repo:acme/app:ref:refs/heads/feature"), testutil.SignOptions{}), "federated login: subject:"},
			{"expired", iss.Sign(t, with("exp", now.Add(-10*time.Minute).Unix()), testutil.SignOptions{}), "federated login: expired:"},
			{"not yet valid", iss.Sign(t, with("nbf", now.Add(10*time.Minute).Unix()), testutil.SignOptions{}), "federated login: not yet valid:"},
			{"unknown kid", iss.Sign(t, github(), testutil.SignOptions{Kid: "no-such-kid"}), "federated login: kid:"},
			{"alg other than the issuer's", iss.Sign(t, github(), testutil.SignOptions{Alg: "PS256"}), "federated login: algorithm:"},
			{"signed by another key", iss.Sign(t, github(), testutil.SignOptions{Key: other, Kid: iss.Key().Kid}), "federated login: signature:"},
		} {
			n := loginCount(t, cli, "fed-ci")
			out, err := dc.login("fed-ci", tc.jwt)
			if err == nil {
				t.Errorf("%s: docker login succeeded:\n%s", tc.name, out)
				continue
			}
			if !strings.Contains(out, "federated login refused") {
				t.Errorf("%s: docker says:\n%s", tc.name, out)
			}
			if ev := lastLogin(t, cli, "fed-ci", n); ev.Result != "failure" || !strings.HasPrefix(ev.Reason, tc.reason) {
				t.Errorf("%s: audit %+v, want a failure with reason %q...", tc.name, ev, tc.reason)
			}
		}
	})

	t.Run("KeyRotationIsFollowed", func(t *testing.T) {
		iss.Rotate(t, "ES256", true)
		dc.mustLogin("fed-ci", iss.Sign(t, github(), testutil.SignOptions{}))
		dc.mustPush("fed/app:v2")
	})

	t.Run("DisableAndDeleteApplyOnTheNextRequest", func(t *testing.T) {
		dc.mustLogin("fed-ci", iss.Sign(t, github(), testutil.SignOptions{}))
		cli.must("token", "update", "-n", "fed-ci", "--status", "disabled")
		out, err := dc.push("fed/app:v3")
		mustFail(t, "push of a disabled token", out, err)
		cli.must("token", "update", "-n", "fed-ci", "--status", "enabled")
		dc.mustPush("fed/app:v3")
		cli.must("token", "federated-credential", "delete", "-n", "fed-ci", "--credential-name", "github-main", "--yes")
		out, err = dc.push("fed/app:v4")
		mustFail(t, "push after the credential was deleted", out, err)
		out, err = dc.login("fed-ci", iss.Sign(t, github(), testutil.SignOptions{}))
		mustFail(t, "login through a deleted credential", out, err, "federated login refused")
	})
}
