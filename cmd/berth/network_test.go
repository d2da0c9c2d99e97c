package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/netrule"
)

// TestCLINetworkRules manages the network rules through the CLI, sets the
// default action to Deny with no rule for the CLI's own address, and goes on
// managing: the rules fence the data plane, not the management API or
// berth login.
func TestCLINetworkRules(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, nil)
	if _, _, err := c.run(ownerPassword+"\n", "login", srv.url, "-u", "owner", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	out := c.ok("network-rule", "add", "--ip-address", "10.1.0.0/16", "--ip-address", "192.0.2.7", "--ip-address", "::ffff:198.51.100.0/120")
	for _, want := range []string{"Default action: Allow", "10.1.0.0/16", "192.0.2.7/32", "198.51.100.0/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("network-rule add output lacks %q:\n%s", want, out)
		}
	}
	c.fails("is not an IP address or CIDR range", "network-rule", "add", "--ip-address", "10.1.0.0/99")
	c.fails("--ip-address", "network-rule", "add")
	c.fails("no network rule 203.0.113.1/32", "network-rule", "remove", "--ip-address", "203.0.113.1")
	c.fails("invalid default action", "config", "network", "--default-action", "Maybe")

	out = c.ok("config", "network", "--default-action", "deny")
	if !strings.Contains(out, "Default action: Deny") {
		t.Errorf("config network --default-action deny:\n%s", out)
	}
	// The data plane refuses this address now...
	resp, err := http.Get(srv.url + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /v2/ from 127.0.0.1 with default Deny: %d, want 403", resp.StatusCode)
	}
	// ...and management goes on: log in again, remove a rule, list.
	if _, _, err := c.run(ownerPassword+"\n", "login", srv.url, "-u", "owner", "--password-stdin"); err != nil {
		t.Fatalf("berth login with default Deny: %v", err)
	}
	c.ok("network-rule", "remove", "--ip-address", "192.0.2.7")
	var s netrule.Settings
	if err := json.Unmarshal([]byte(c.ok("network-rule", "list", "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.DefaultAction != netrule.Deny || len(s.IPRules) != 2 || s.IPRules[0].IPAddressOrRange != "10.1.0.0/16" {
		t.Errorf("network-rule list -o json: %+v", s)
	}
	c.ok("config", "network", "--default-action", "Allow")
	if out := c.ok("config", "network"); !strings.Contains(out, "Default action: Allow (every address may reach the registry; the rules apply once it is Deny)") {
		t.Errorf("config network:\n%s", out)
	}
}

func TestCLITokenAllowedAddresses(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, nil)
	if _, _, err := c.run(ownerPassword+"\n", "login", srv.url, "-u", "owner", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	c.ok("scope-map", "create", "-n", "readers", "--repository", "app", "content/read")
	c.ok("token", "create", "-n", "ci-reader", "--scope-map", "readers")
	out := c.ok("token", "update", "-n", "ci-reader", "--allowed-ip", "10.1.0.0/16", "--allowed-ip", "192.0.2.7")
	if !strings.Contains(out, "Allowed addresses: 10.1.0.0/16, 192.0.2.7/32") {
		t.Errorf("token update --allowed-ip:\n%s", out)
	}
	if out := c.ok("token", "show", "-n", "ci-reader"); !strings.Contains(out, "Allowed addresses: 10.1.0.0/16, 192.0.2.7/32") {
		t.Errorf("token show:\n%s", out)
	}
	var tok tokenWithAddresses
	if err := json.Unmarshal([]byte(c.ok("token", "update", "-n", "ci-reader", "--status", "enabled", "--allowed-ip", "127.0.0.2", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.Name != "ci-reader" || len(tok.AllowedAddresses) != 1 || tok.AllowedAddresses[0] != "127.0.0.2/32" {
		t.Errorf("token update -o json: %+v", tok)
	}
	c.fails("is not an IP address", "token", "update", "-n", "ci-reader", "--allowed-ip", "nope")
	c.fails("not both", "token", "update", "-n", "ci-reader", "--allowed-ip", "10.0.0.1", "--no-allowed-ips")
	c.fails("not found", "token", "update", "-n", "no-such-token", "--allowed-ip", "10.0.0.1")
	if out := c.ok("token", "update", "-n", "ci-reader", "--no-allowed-ips"); !strings.Contains(out, "Allowed addresses: any") {
		t.Errorf("token update --no-allowed-ips:\n%s", out)
	}
}
