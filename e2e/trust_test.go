package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-registry/berth/internal/testutil"
)

// The signing tools the trust tests run; scripts/test installs them at
// these versions.
const (
	cosignPackage = "github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"
	// notation is built from test/notation (go build
	// github.com/notaryproject/notation/cmd/notation there), at v1.3.2.
	notationPackage = "github.com/notaryproject/notation/cmd/notation@v1.3.2 from test/notation"
)

// signers runs the real cosign and notation CLIs with a home, docker
// credentials and notation configuration of their own, and the keys the
// test made: cosign key pairs "main" and "other", and notation test
// certificates "berth-test" and "other-test".
type signers struct {
	t        *testing.T
	cosign   string
	notation string
	dir      string
	host     string
	user     string // the signing identity (it may push)
	password string
}

func newSigners(t *testing.T, srv *testutil.Server, user, password string) *signers {
	t.Helper()
	s := &signers{t: t, cosign: testutil.LookGoTool(t, "cosign", cosignPackage), notation: testutil.LookGoTool(t, "notation", notationPackage),
		dir: t.TempDir(), host: srv.Host, user: user, password: password}
	// cosign reads registry credentials from the docker configuration.
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{srv.Host: map[string]string{"auth": auth}}})
	if err := os.MkdirAll(filepath.Join(s.dir, "docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "docker", "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"main", "other"} {
		if err := os.MkdirAll(filepath.Join(s.dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		s.mustRun(filepath.Join(s.dir, name), nil, s.cosign, "generate-key-pair")
	}
	for _, name := range []string{"berth-test", "other-test"} {
		s.mustRun(s.dir, nil, s.notation, "cert", "generate-test", name)
	}
	return s
}

func (s *signers) env(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "COSIGN_PASSWORD", "COSIGN_EXPERIMENTAL", "NOTATION_USERNAME", "NOTATION_PASSWORD":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+filepath.Join(s.dir, "home"), "DOCKER_CONFIG="+filepath.Join(s.dir, "docker"),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"), "COSIGN_PASSWORD=", "SIGSTORE_NO_CACHE=1"), extra...)
}

func (s *signers) run(dir string, extra []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, s.env(extra)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	return out.String(), err
}

func (s *signers) mustRun(dir string, extra []string, argv ...string) string {
	s.t.Helper()
	out, err := s.run(dir, extra, argv...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *signers) cosignPub(name string) string { return filepath.Join(s.dir, name, "cosign.pub") }
func (s *signers) notationCert(name string) string {
	return filepath.Join(s.dir, "config", "notation", "localkeys", name+".crt")
}

// cosignSign signs ref (repo@digest) with key pair name, offline: no
// transparency log. referrers stores the signature as an OCI 1.1
// referrer instead of under the sha256-<hex>.sig tag.
func (s *signers) cosignSign(name, ref string, referrers bool) {
	s.t.Helper()
	args := []string{s.cosign, "sign", "--key", filepath.Join(s.dir, name, "cosign.key"), "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", "--yes"}
	var extra []string
	if referrers {
		args = append(args, "--registry-referrers-mode=oci-1-1")
		extra = []string{"COSIGN_EXPERIMENTAL=1"}
	}
	s.mustRun(s.dir, extra, append(args, s.host+"/"+ref)...)
}

// cosignVerify runs cosign verify as user with key pair name.
func (s *signers) cosignVerify(name, ref, user, password string) (string, error) {
	return s.run(s.dir, nil, s.cosign, "verify", "--key", s.cosignPub(name), "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry",
		"--registry-username", user, "--registry-password", password, s.host+"/"+ref)
}

// notationSign signs ref with notation test key name (referrers API).
func (s *signers) notationSign(name, ref string) {
	s.t.Helper()
	s.mustRun(s.dir, nil, s.notation, "sign", "--insecure-registry", "--key", name, "--username", s.user, "--password", s.password, s.host+"/"+ref)
}

// pushImage pushes a new random image as repo:tag (as the owner) and
// returns repo@digest.
func pushImage(t *testing.T, srv *testutil.Server, repoTag string) string {
	t.Helper()
	img := testutil.RandomImage(t, 1, 16<<10)
	if err := remote.Write(srv.Ref(t, repoTag), img, srv.RemoteOptions(t.Context())...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, _ := img.Digest()
	repo, _, _ := strings.Cut(repoTag, ":")
	return repo + "@" + d.String()
}

// pushIndex pushes a two-platform index as repo:tag and returns
// repo@digest of the index.
func pushIndex(t *testing.T, srv *testutil.Server, repoTag string) string {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img := testutil.RandomPlatformImage(t, 1, 16<<10, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(srv.Ref(t, repoTag), idx, srv.RemoteOptions(t.Context())...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, _ := idx.Digest()
	repo, _, _ := strings.Cut(repoTag, ":")
	return repo + "@" + d.String()
}

// refusedBy is what docker, podman and skopeo print of berth's 403 DENIED
// for policy name.
func refusedBy(name string) string { return fmt.Sprintf("signature policy %q requires a valid", name) }

// trustFixture is a registry with signed and unsigned images under prod/,
// signed by the real tools as a token that may push, and a pull-only token.
type trustFixture struct {
	srv    *testutil.Server
	cli    *berthCLI
	sign   *signers
	puller token
	refs   map[string]string // tag → repo@digest
}

func newTrustFixture(t *testing.T, srv *testutil.Server) *trustFixture {
	t.Helper()
	cli := newBerthCLI(t, srv)
	signer := cli.createToken("signer", "--repository", "prod/*", "content/read", "content/write")
	puller := cli.createToken("puller", "--repository", "prod/*", "content/read", "--repository", "dev/*", "content/read")
	f := &trustFixture{srv: srv, cli: cli, puller: puller, refs: map[string]string{}}
	f.sign = newSigners(t, srv, signer.name, signer.password["password1"])
	for _, tag := range []string{"cosign", "cosignref", "notation", "unsigned", "otherkey", "othercert"} {
		f.refs[tag] = pushImage(t, srv, "prod/app:"+tag)
	}
	f.refs["multi"] = pushIndex(t, srv, "prod/app:multi")
	f.refs["dev"] = pushImage(t, srv, "dev/app:unsigned")

	// The policy comes first: signing must work under it (cosign and
	// notation read the unsigned manifest they sign).
	cli.must("trust", "policy", "create", "-n", "prod", "--repository", "prod/*", "--require", "any",
		"--key", f.sign.cosignPub("main"), "--certificate", f.sign.notationCert("berth-test"))
	f.sign.cosignSign("main", f.refs["cosign"], false)
	f.sign.cosignSign("main", f.refs["cosignref"], true)
	f.sign.cosignSign("main", f.refs["multi"], false)
	f.sign.cosignSign("other", f.refs["otherkey"], false)
	f.sign.notationSign("berth-test", f.refs["notation"])
	f.sign.notationSign("other-test", f.refs["othercert"])
	return f
}

// skopeoCopy copies tag of prod/app (or a whole reference) to a new OCI
// layout as the puller.
func (f *trustFixture) skopeoCopy(t *testing.T, sk *testutil.Skopeo, repoTag string) (string, error) {
	return sk.Run("copy", "--src-tls-verify=false", "--src-creds="+f.puller.name+":"+f.puller.password["password1"],
		"docker://"+f.srv.Host+"/"+repoTag, "oci:"+filepath.Join(t.TempDir(), "out")+":x")
}

// checkSkopeo pulls every fixture image with skopeo: allowed lists the
// tags of prod/app that must be served, every other tag must be refused
// by policy.
func (f *trustFixture) checkSkopeo(t *testing.T, sk *testutil.Skopeo, policy string, allowed ...string) {
	t.Helper()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, tag := range []string{"cosign", "cosignref", "notation", "unsigned", "otherkey", "othercert", "multi"} {
		out, err := f.skopeoCopy(t, sk, "prod/app:"+tag)
		if ok[tag] {
			if err != nil {
				t.Errorf("skopeo copy prod/app:%s: %v", tag, err)
			}
			continue
		}
		mustFail(t, "skopeo copy prod/app:"+tag, out, err, refusedBy(policy))
	}
	if out, err := f.skopeoCopy(t, sk, "dev/app:unsigned"); err != nil {
		t.Errorf("skopeo copy outside the policy: %v\n%s", err, out)
	}
}

type trustRecord struct{ Result, Reason, Repository, Identity string }

// auditTrust lists the audit log's trust records, waiting for the batch
// of pull records to be written until want is among them.
func auditTrust(t *testing.T, cli *berthCLI, want func(trustRecord) bool) []trustRecord {
	t.Helper()
	var list []trustRecord
	for range 50 {
		out := cli.must("audit", "list", "--kind", "trust", "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("audit list: %v\n%s", err, out)
		}
		for _, e := range list {
			if want(e) {
				return list
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("no such trust record in the audit log: %+v", list)
	return list
}

// TestTrustSignedPulls runs signature policies with the real cosign and
// notation CLIs against berth on the filesystem: images signed by the
// policy's key (cosign's .sig tag and OCI 1.1 referrers) or certificate
// (Notation) are pulled with docker, podman and skopeo, unsigned ones and
// ones signed by another key are refused with the policy's name, a policy
// change applies to the next pull, and audit mode serves and records.
func TestTrustSignedPulls(t *testing.T) {
	srv := startBerth(t)
	f := newTrustFixture(t, srv)
	sk := testutil.NewSkopeo(t)
	signedTags := []string{"cosign", "cosignref", "notation", "multi"}

	t.Run("Skopeo", func(t *testing.T) { f.checkSkopeo(t, sk, "prod", signedTags...) })

	t.Run("Docker", func(t *testing.T) {
		d := testutil.StartDockerd(t)
		dc := dockerClient{t, d, srv}
		dc.mustLogin(f.puller.name, f.puller.password["password1"])
		for _, tag := range []string{"cosign", "notation", "multi"} {
			if out, err := d.Run("pull", srv.Host+"/prod/app:"+tag); err != nil {
				t.Errorf("docker pull prod/app:%s: %v\n%s", tag, err, out)
			}
		}
		for _, tag := range []string{"unsigned", "otherkey"} {
			out, err := d.Run("pull", srv.Host+"/prod/app:"+tag)
			mustFail(t, "docker pull prod/app:"+tag, out, err, refusedBy("prod"))
		}
	})

	t.Run("Podman", func(t *testing.T) {
		pm := testutil.NewPodman(t)
		if out, err := pm.RunInput(f.puller.password["password1"], "login", "--tls-verify=false", "--username", f.puller.name, "--password-stdin", srv.Host); err != nil {
			t.Fatalf("podman login: %v\n%s", err, out)
		}
		for _, tag := range []string{"cosignref", "notation"} {
			if out, err := pm.Run("pull", "--tls-verify=false", srv.Host+"/prod/app:"+tag); err != nil {
				t.Errorf("podman pull prod/app:%s: %v\n%s", tag, err, out)
			}
		}
		for _, tag := range []string{"unsigned", "othercert"} {
			out, err := pm.Run("pull", "--tls-verify=false", srv.Host+"/prod/app:"+tag)
			mustFail(t, "podman pull prod/app:"+tag, out, err, refusedBy("prod"))
		}
	})

	t.Run("VerifyingClientsReadSignatures", func(t *testing.T) {
		// A pull-only identity verifies with cosign: the signature
		// artifacts are never held back.
		if out, err := f.sign.cosignVerify("main", "prod/app:cosign", f.puller.name, f.puller.password["password1"]); err != nil {
			t.Errorf("cosign verify as the puller: %v\n%s", err, out)
		}
		// The owner is held to the policy too: only signing tools of
		// identities that may push read unsigned manifests.
		_, err := remote.Head(srv.Ref(t, "prod/app:unsigned"), srv.RemoteOptions(t.Context())...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
			t.Errorf("owner HEAD of an unsigned manifest: %v, want 403", err)
		}
	})

	t.Run("PolicyChangeAppliesToNextPull", func(t *testing.T) {
		f.cli.must("trust", "policy", "update", "-n", "prod", "--key", f.sign.cosignPub("other"))
		// The certificate stays: Notation's berth-test signature still counts.
		f.checkSkopeo(t, sk, "prod", "otherkey", "notation")
		f.cli.must("trust", "policy", "update", "-n", "prod", "--require", "cosign")
		f.checkSkopeo(t, sk, "prod", "otherkey")
		f.cli.must("trust", "policy", "update", "-n", "prod", "--require", "any", "--key", f.sign.cosignPub("main"))
		f.checkSkopeo(t, sk, "prod", signedTags...)
	})

	t.Run("AuditMode", func(t *testing.T) {
		f.cli.must("trust", "policy", "update", "-n", "prod", "--mode", "audit")
		f.checkSkopeo(t, sk, "prod", "cosign", "cosignref", "notation", "multi", "unsigned", "otherkey", "othercert")
		// The served pull is recorded as a success that says what was
		// missing; the refusals before it as failures.
		auditTrust(t, f.cli, func(e trustRecord) bool {
			return e.Result == "success" && e.Repository == "prod/app" && e.Identity == f.puller.name && strings.Contains(e.Reason, `signature policy "prod"`)
		})
		auditTrust(t, f.cli, func(e trustRecord) bool { return e.Result == "failure" && e.Identity == f.puller.name })
		f.cli.must("trust", "policy", "delete", "-n", "prod", "--yes")
		f.checkSkopeo(t, sk, "prod", "cosign", "cosignref", "notation", "multi", "unsigned", "otherkey", "othercert")
	})
}

// TestTrustCluster runs the policy on PostgreSQL and S3 with two nodes
// behind a load balancer: signatures pushed through one node and policy
// changes made on one apply to pulls answered by either.
func TestTrustCluster(t *testing.T) {
	requireE2E(t)
	c := testutil.StartCluster(t, 2, testutil.WithArgs("--login-failure-threshold", "1000"))
	f := newTrustFixture(t, c.Front)
	sk := testutil.NewSkopeo(t)
	// Each copy is several requests, spread over both nodes.
	for range 2 {
		f.checkSkopeo(t, sk, "prod", "cosign", "cosignref", "notation", "multi")
	}
	f.cli.must("trust", "policy", "update", "-n", "prod", "--key", f.sign.cosignPub("other"), "--require", "cosign")
	for range 2 {
		f.checkSkopeo(t, sk, "prod", "otherkey")
	}
	// A new signature, pushed through the load balancer, is seen by both
	// nodes at once.
	f.sign.cosignSign("other", f.refs["unsigned"], true)
	for range 2 {
		f.checkSkopeo(t, sk, "prod", "otherkey", "unsigned")
	}
}
