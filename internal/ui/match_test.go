package ui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestEditorSuggestionsAndPreview: the scope map editor's script gets
// repository names as a pattern is typed and the count a pattern matches.
func TestEditorSuggestionsAndPreview(t *testing.T) {
	f := newFixture(t)
	for _, r := range []string{"team/app", "team/web", "other/db"} {
		putImage(t, f.store, r, "v1")
	}
	b := f.signIn("owner", ownerPassword)
	r := b.get("/repository-suggestions?q=team/")
	wantStatus(t, r, http.StatusOK)
	var s struct{ Names []string }
	if err := json.Unmarshal([]byte(r.body), &s); err != nil || strings.Join(s.Names, " ") != "team/app team/web" {
		t.Errorf("suggestions for team/: %v %v", s.Names, err)
	}
	r = b.get("/repository-matches?pattern=team/*")
	var m struct {
		Count int
		First []string
	}
	if err := json.Unmarshal([]byte(r.body), &m); err != nil || m.Count != 2 || len(m.First) != 2 {
		t.Errorf("matches of team/*: %+v %v", m, err)
	}
	if r := b.get("/repository-matches?pattern=a/*/b"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("a bad pattern: %d", r.status)
	}
	page := b.get("/scope-maps/new")
	if !strings.Contains(page.body, `list="repo-suggestions"`) || !strings.Contains(page.body, `class="hint pattern-preview"`) {
		t.Errorf("the editor lacks the picker or the preview")
	}
	// Signed out: nothing.
	if r := f.browser().get("/repository-matches?pattern=*"); r.status != http.StatusSeeOther {
		t.Errorf("signed out: %d", r.status)
	}
}
