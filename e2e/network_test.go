package e2e

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testutil"
)

// TestDockerNetworkRules: docker, whose daemon dials berth from 127.0.0.1,
// is refused by a default action of Deny whose only rule is 127.0.0.2, and
// gets in once its address is allowed; a token allowed only 127.0.0.2 is
// refused at docker login, and works once its list names 127.0.0.1. The
// berth CLI keeps managing throughout: the rules fence the data plane.
func TestDockerNetworkRules(t *testing.T) {
	srv := startRegistry(t)
	if srv.Kind != testutil.KindBerth {
		t.Skip("network rules are berth's")
	}
	d := testutil.StartDockerd(t)
	cli := newBerthCLI(t, srv)
	docker := dockerClient{t: t, d: d, srv: srv}

	cli.must("network-rule", "add", "--ip-address", "127.0.0.2")
	cli.must("config", "network", "--default-action", "Deny")
	out, err := docker.login(srv.Username, srv.Password)
	if err == nil {
		t.Fatalf("docker login from 127.0.0.1 with only 127.0.0.2 allowed succeeded:\n%s", out)
	}
	if !strings.Contains(out+err.Error(), "403") && !strings.Contains(out+err.Error(), "not allowed") {
		t.Errorf("docker login refused without saying why:\n%s\n%v", out, err)
	}

	cli.must("network-rule", "add", "--ip-address", "127.0.0.0/30")
	docker.mustLogin(srv.Username, srv.Password)
	if out, err := docker.push("e2e/net:v1"); err != nil {
		t.Fatalf("docker push from an allowed address: %v\n%s", err, out)
	}

	// Per token: allowed 127.0.0.2 only, so docker (127.0.0.1) is refused.
	tok := cli.createToken("ci-network", "--repository", "e2e/net", "content/read", "content/write", "metadata/read")
	cli.must("token", "update", "-n", tok.name, "--allowed-ip", "127.0.0.2")
	out, err = docker.login(tok.name, tok.password["password1"])
	if err == nil {
		t.Fatalf("docker login of a token allowed only 127.0.0.2 succeeded from 127.0.0.1:\n%s", out)
	}
	cli.must("token", "update", "-n", tok.name, "--allowed-ip", "127.0.0.1", "--allowed-ip", "127.0.0.2")
	docker.mustLogin(tok.name, tok.password["password1"])
	if out, err := docker.push("e2e/net:v2"); err != nil {
		t.Fatalf("docker push as the token from an allowed address: %v\n%s", err, out)
	}

	// The registry's rules no longer name 127.0.0.1: the logged-in docker
	// is refused on its next pull, and audited.
	cli.must("network-rule", "remove", "--ip-address", "127.0.0.0/30")
	d.MustRun("rmi", srv.Host+"/e2e/net:v2")
	if out, err := d.Run("pull", srv.Host+"/e2e/net:v2"); err == nil {
		t.Fatalf("docker pull from an address the rules no longer allow succeeded:\n%s", out)
	}
	if out := cli.must("audit", "list", "--kind", "network"); !strings.Contains(out, "127.0.0.1") {
		t.Errorf("no network audit record for 127.0.0.1:\n%s", out)
	}
	cli.must("config", "network", "--default-action", "Allow")
	if out, err := d.Run("pull", srv.Host+"/e2e/net:v2"); err != nil {
		t.Fatalf("docker pull after the default action is Allow again: %v\n%s", err, out)
	}
}
