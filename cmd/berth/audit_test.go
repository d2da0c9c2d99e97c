package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Repeated identical failed logins are one record, and `audit list` says
// how many it stands for.
func TestCLIAuditListShowsCount(t *testing.T) {
	srv := startServer(t)
	for range 3 {
		resp, err := http.PostForm(srv.url+"/oauth2/token", url.Values{"grant_type": {"password"}, "service": {"berth"},
			"username": {"owner"}, "password": {"not-the-password"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password: %s", resp.Status)
		}
	}
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	out := c.ok("audit", "list", "--kind", "login", "--result", "failure")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one folded record:\n%s", out)
	}
	header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(header) < 4 || header[3] != "COUNT" || len(row) < 5 || row[3] != "3" || row[4] != "owner" {
		t.Errorf("want COUNT 3 for owner's failed logins:\n%s", out)
	}
}
