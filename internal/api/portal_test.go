package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestPatternMatches counts the repositories a pattern matches among
// those the caller may see: a token scoped to team/* counts only team/*.
func TestPatternMatches(t *testing.T) {
	f := newFixture(t)
	f.putManifest("team/app", "v1")
	f.putManifest("team/other", "v1")
	f.putManifest("private/db", "v1")
	var m struct {
		Count int      `json:"count"`
		First []string `json:"first"`
	}
	for _, c := range []struct {
		user, pattern string
		count         int
		first         string
	}{
		{"owner", "*", 3, "private/db,team/app"},
		{"owner", "team/*", 2, "team/app,team/other"},
		{"owner", "team/app", 1, "team/app"},
		{"team-tok", "*", 2, "team/app,team/other"},
		{"team-tok", "private/*", 0, ""},
	} {
		rec := f.must(http.StatusOK, c.user, "GET", "/api/v1/patternMatches?first=2&pattern="+c.pattern, nil)
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.Count != c.count || strings.Join(m.First, ",") != c.first {
			t.Errorf("%s, %s: %d %v, want %d %s", c.user, c.pattern, m.Count, m.First, c.count, c.first)
		}
	}
	f.must(http.StatusBadRequest, "owner", "GET", "/api/v1/patternMatches?pattern=a/*/b", nil)
	f.must(http.StatusBadRequest, "owner", "GET", "/api/v1/patternMatches", nil)
}

// TestOverviewAPI: GET /api/v1/overview leaves out what the caller may
// not see.
func TestOverviewAPI(t *testing.T) {
	f := newFixture(t)
	f.putManifest("team/app", "v1")
	f.putManifest("private/db", "v1")
	var o map[string]any
	json.Unmarshal(f.must(http.StatusOK, "owner", "GET", "/api/v1/overview", nil).Body.Bytes(), &o)
	if o["repositories"] != float64(2) || o["tokens"] == nil || o["storageBytes"] == nil || o["denialsLast24h"] == nil {
		t.Errorf("owner's overview: %v", o)
	}
	o = nil
	json.Unmarshal(f.must(http.StatusOK, "team-tok", "GET", "/api/v1/overview", nil).Body.Bytes(), &o)
	if o["repositories"] != float64(1) || o["tokens"] != nil || o["storageBytes"] != nil || o["denialsLast24h"] != nil {
		t.Errorf("a token's overview: %v", o)
	}
}
