package ui

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/audit"
)

// TestAuditDenialsFiltersAndExport: the audit page shows refused requests
// with what was asked and what is missing, filters by repository, result
// and identity, and exports the filtered list as CSV and JSON.
func TestAuditDenialsFiltersAndExport(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.audit.Record(audit.Event{Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: "sc-external-users", IdentityKind: "token",
			Repository: "team/app", Action: "push", Missing: "content/write", Reason: "denied", CallerIP: "127.0.0.9", UserAgent: "docker/27"})
	}
	f.audit.Record(audit.Event{Kind: audit.KindPull, Result: audit.ResultSuccess, Identity: "ci", Repository: "team/app", Tag: "v1"})
	f.audit.Record(audit.Event{Kind: audit.KindAccess, Result: audit.ResultFailure, Identity: "other", Repository: "other/app", Action: "pull", Missing: "content/read"})
	f.audit.Flush()
	b := f.signIn("reader", readerPassword)

	r := b.get("/audit?result=denied&repository=team/app")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "asked <code>push</code>, lacks <code>content/write</code>") || !strings.Contains(r.body, "×3") {
		t.Errorf("the denial row lacks what was asked, what is missing or its count:\n%s", r.body)
	}
	if strings.Contains(r.body, "other/app") || strings.Contains(r.body, `<span class="chip">pull</span>`) {
		t.Errorf("the filter lets other repositories or allowed events through")
	}
	if !strings.Contains(r.body, `href="/audit/export?format=csv&amp;repository=team%2Fapp&amp;result=denied"`) {
		t.Errorf("no CSV export link for the filtered list:\n%s", r.body)
	}

	csvR := b.get("/audit/export?format=csv&repository=team%2Fapp&result=denied")
	wantStatus(t, csvR, http.StatusOK)
	if ct := csvR.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") || !strings.Contains(csvR.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("CSV export headers: %v", csvR.header)
	}
	recs, err := csv.NewReader(strings.NewReader(csvR.body)).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("CSV export: %v\n%s", err, csvR.body)
	}
	jsR := b.get("/audit/export?format=json&identity=other")
	var events []audit.Event
	if err := json.Unmarshal([]byte(jsR.body), &events); err != nil || len(events) != 1 || events[0].Repository != "other/app" || events[0].Missing != "content/read" {
		t.Errorf("JSON export by identity: %v %+v", err, events)
	}
	wantStatus(t, b.get("/audit/export?format=csv&since=2030-02-01&until=2030-01-01"), http.StatusUnprocessableEntity)
	wantStatus(t, b.get("/audit/export?format=xml"), http.StatusBadRequest)
	wantStatus(t, f.signIn("puller", pullPassword).get("/audit/export?format=csv"), http.StatusForbidden)
}

// A cell a spreadsheet would run as a formula is quoted.
func TestAuditCSVDefusesFormulas(t *testing.T) {
	var sb strings.Builder
	if err := audit.WriteCSV(&sb, []audit.Event{{Kind: audit.KindAccess, UserAgent: "=HYPERLINK(\"http://x\")", Repository: "a"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), `'=HYPERLINK`) {
		t.Errorf("formula not defused:\n%s", sb.String())
	}
}
