package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
)

// TestPortalNetwork: the network page shows and changes the rules and the
// default action, the token page its allowed addresses; readers see them
// and change nothing.
func TestPortalNetwork(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.newToken("ci-token", actions("app", "content/read")...)
	p := e.portalSignIn("owner", ownerPassword)

	if st, body := p.do("GET", "/network", ""); st != http.StatusOK || !strings.Contains(body, "No rules.") || !strings.Contains(body, `href="/network" aria-current="page"`) {
		t.Fatalf("GET /network: %d\n%.500s", st, body)
	}
	if st, body := p.do("POST", "/network", url.Values{"op": {"add"}, "rules": {"10.1.0.0/16\n192.0.2.7, 2001:db8::/32"}}.Encode()); st != http.StatusSeeOther {
		t.Fatalf("add rules: %d\n%.500s", st, body)
	}
	st, body := p.do("POST", "/network", url.Values{"op": {"add"}, "rules": {"10.2.0.0/16\nnot-an-address"}}.Encode())
	if st != http.StatusUnprocessableEntity || !strings.Contains(body, "is not an IP address or CIDR range") || !strings.Contains(body, "not-an-address</textarea>") {
		t.Errorf("add a bad rule: %d\n%.2000s", st, body)
	}
	if st, _ := p.do("POST", "/network", url.Values{"op": {"default-action"}, "defaultAction": {"Deny"}}.Encode()); st != http.StatusSeeOther {
		t.Fatalf("set Deny: %d", st)
	}
	if st, _ := p.do("POST", "/network", url.Values{"op": {"remove"}, "rule": {"192.0.2.7/32"}}.Encode()); st != http.StatusSeeOther {
		t.Fatalf("remove a rule: %d", st)
	}
	s, _ := e.srv.Rules().Settings(owner)
	var got []string
	for _, r := range s.IPRules {
		got = append(got, r.IPAddressOrRange)
	}
	if s.DefaultAction != netrule.Deny || strings.Join(got, " ") != "10.1.0.0/16 2001:db8::/32" {
		t.Errorf("after the portal's changes: %s %v", s.DefaultAction, got)
	}
	// The portal itself is not fenced by the rules it just set.
	if st, body := p.do("GET", "/network", ""); st != http.StatusOK || !strings.Contains(body, "2001:db8::/32") || !strings.Contains(body, "Rules (2)") {
		t.Errorf("GET /network after the changes: %d\n%.500s", st, body)
	}

	// The token page: set, refuse a bad address, lift.
	if st, body := p.do("POST", "/tokens/ci-token/allowed-addresses", url.Values{"addresses": {"127.0.0.2\n10.9.0.0/16"}}.Encode()); st != http.StatusSeeOther {
		t.Fatalf("set allowed addresses: %d\n%.500s", st, body)
	}
	if got := e.srv.Rules().Token("ci-token"); strings.Join(got, " ") != "10.9.0.0/16 127.0.0.2/32" {
		t.Errorf("allowed addresses after the portal set them: %v", got)
	}
	if st, body := p.do("GET", "/tokens/ci-token", ""); st != http.StatusOK || !strings.Contains(body, "may be used only from: <code>10.9.0.0/16</code>, <code>127.0.0.2/32</code>") {
		t.Errorf("token page: %d\n%.3000s", st, body)
	}
	if st, body := p.do("POST", "/tokens/ci-token/allowed-addresses", url.Values{"addresses": {"10.0.0.0/40"}}.Encode()); st != http.StatusUnprocessableEntity || !strings.Contains(body, "10.0.0.0/40</textarea>") {
		t.Errorf("a bad allowed address: %d\n%.500s", st, body)
	}
	if st, _ := p.do("POST", "/tokens/ci-token/allowed-addresses", url.Values{"addresses": {""}}.Encode()); st != http.StatusSeeOther {
		t.Errorf("lift the restriction: %d", st)
	}
	if got := e.srv.Rules().Token("ci-token"); len(got) != 0 {
		t.Errorf("allowed addresses after lifting: %v", got)
	}

	// A reader sees the page and may change nothing.
	if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: "reader", Role: "reader", Password: "reader password 123"}); err != nil {
		t.Fatal(err)
	}
	r := e.portalSignIn("reader", "reader password 123")
	st, body = r.do("GET", "/network", "")
	if st != http.StatusOK || strings.Contains(body, `id="add-rule"`) || strings.Contains(body, `id="set-allow"`) {
		t.Errorf("reader's network page: %d (forms shown?)\n%.500s", st, body)
	}
	if st, _ := r.do("POST", "/network", url.Values{"op": {"default-action"}, "defaultAction": {"Allow"}}.Encode()); st != http.StatusForbidden {
		t.Errorf("reader sets the default action: %d, want 403", st)
	}
	if st, _ := r.do("POST", "/tokens/ci-token/allowed-addresses", url.Values{"addresses": {"10.0.0.1"}}.Encode()); st != http.StatusForbidden {
		t.Errorf("reader sets allowed addresses: %d, want 403", st)
	}
}
