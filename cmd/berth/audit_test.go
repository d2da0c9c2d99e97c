package main

import (
	"encoding/csv"
	"encoding/json"
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

// A token refused a push leaves an audit record, which `audit list`
// finds by result, repository and identity, and exports as CSV and JSON.
func TestCLIAuditDenials(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	out := c.ok("token", "create", "-n", "sc-external-users", "--repository", "team/app", "content/read", "-o", "json")
	var created struct {
		Credentials struct {
			Passwords []struct{ Value string } `json:"passwords"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created.Credentials.Passwords) == 0 {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	pw := created.Credentials.Passwords[0].Value
	for range 2 {
		req, _ := http.NewRequest("POST", srv.url+"/v2/team/app/blobs/uploads/", nil)
		req.SetBasicAuth("sc-external-users", pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("push beyond the scope map: %s", resp.Status)
		}
	}
	out = c.ok("audit", "list", "--result", "denied", "--repository", "team/app", "--identity", "sc-external-users")
	if !strings.Contains(out, "push on team/app, lacks content/write") {
		t.Errorf("audit list does not show the refused push:\n%s", out)
	}
	csvOut := c.ok("audit", "list", "--result", "denied", "--repository", "team/app", "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
	if err != nil || len(recs) != 2 || recs[0][0] != "id" {
		t.Fatalf("CSV export: %v\n%s", err, csvOut)
	}
	row := map[string]string{}
	for i, h := range recs[0] {
		row[h] = recs[1][i]
	}
	if row["kind"] != "access" || row["count"] != "2" || row["action"] != "push" || row["missing"] != "content/write" || row["identity"] != "sc-external-users" {
		t.Errorf("CSV row: %v", row)
	}
	var events []map[string]any
	if err := json.Unmarshal([]byte(c.ok("audit", "list", "--result", "denied", "--format", "json")), &events); err != nil || len(events) == 0 {
		t.Errorf("JSON export: %v %v", events, err)
	}
	if len(c.ok("audit", "list", "--result", "allowed", "--repository", "team/app", "--format", "json")) > 4 {
		t.Errorf("allowed events for team/app where none were")
	}
	c.fails("is after until", "audit", "list", "--since", "2030-02-01T00:00:00Z", "--until", "2030-01-01T00:00:00Z")
}

// `token list` filters as the portal's token list does.
func TestCLITokenListFilters(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	c.ok("token", "create", "-n", "ci-push", "--scope-map", "_repositories_push")
	c.ok("token", "create", "-n", "old-bot", "--scope-map", "_repositories_pull", "--status", "disabled")
	c.ok("token", "credential", "generate", "-n", "ci-push", "--password1", "--expiration-in-days", "3")
	names := func(args ...string) string {
		t.Helper()
		var list []struct{ Name string }
		if err := json.Unmarshal([]byte(c.ok(append([]string{"token", "list", "-o", "json"}, args...)...)), &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range list {
			out = append(out, x.Name)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "ci-push old-bot"},
		{[]string{"--status", "disabled"}, "old-bot"},
		{[]string{"--expiring-within-days", "7"}, "ci-push"},
		{[]string{"--scope-map", "_repositories_pull"}, "old-bot"},
		{[]string{"--never-used", "--contains", "CI"}, "ci-push"},
		{[]string{"--unused-days", "90", "--status", "enabled"}, "ci-push"},
	} {
		if got := names(tc.args...); got != tc.want {
			t.Errorf("token list %v = %q, want %q", tc.args, got, tc.want)
		}
	}
	c.fails("not a number of days", "token", "list", "--expiring-within-days", "-1")
}

// `repository list --sort` asks for the detailed list, with its total.
func TestCLIRepositoryListDetailed(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	out := c.ok("repository", "list", "--sort", "lastPushed", "-o", "json")
	var list struct {
		Total *int `json:"total"`
		Page  int  `json:"page"`
		Pages int  `json:"pages"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Total == nil || *list.Total != 0 || list.Page != 1 || list.Pages != 1 {
		t.Errorf("detailed list of an empty registry: %v\n%s", err, out)
	}
	if out := c.ok("repository", "list", "--page-size", "25"); !strings.Contains(out, "LAST PUSHED") {
		t.Errorf("no detailed table:\n%s", out)
	}
	c.fails("pageSize", "repository", "list", "--page-size", "7")
	c.fails("invalid sort", "repository", "list", "--sort", "size")
}

// `berth overview` shows the overview page's counts.
func TestCLIOverview(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	c.ok("token", "create", "-n", "ci-push", "--scope-map", "_repositories_push")
	var o struct {
		Repositories int    `json:"repositories"`
		Tokens       *int   `json:"tokens"`
		NeverUsed    *int   `json:"tokensNeverUsed"`
		Denials      *int64 `json:"denialsLast24h"`
		Storage      *int64 `json:"storageBytes"`
	}
	if err := json.Unmarshal([]byte(c.ok("overview", "-o", "json")), &o); err != nil {
		t.Fatal(err)
	}
	if o.Tokens == nil || *o.Tokens != 1 || o.NeverUsed == nil || *o.NeverUsed != 1 || o.Denials == nil || o.Storage == nil {
		t.Errorf("overview: %+v", o)
	}
	if out := c.ok("overview"); !strings.Contains(out, "tokens never used") {
		t.Errorf("overview table:\n%s", out)
	}
}

// `scope-map match` counts what a pattern matches.
func TestCLIScopeMapMatch(t *testing.T) {
	srv := startServer(t)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})
	var m struct {
		Pattern string `json:"pattern"`
		Count   int    `json:"count"`
	}
	if err := json.Unmarshal([]byte(c.ok("scope-map", "match", "--pattern", "team/*", "-o", "json")), &m); err != nil || m.Pattern != "team/*" || m.Count != 0 {
		t.Errorf("match on an empty registry: %+v %v", m, err)
	}
	c.fails("invalid pattern", "scope-map", "match", "--pattern", "a/*/b")
}
