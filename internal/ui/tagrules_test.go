package ui

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestScopeMapEditorTags: the editor's tags field per row limits the row's
// actions to tag patterns, shows an invalid pattern's message next to the
// row with what was typed, and shows the stored limits again.
func TestScopeMapEditorTags(t *testing.T) {
	f := newFixture(t)
	b := f.signIn("owner", ownerPassword)
	form := url.Values{"name": {"ci-dev-tags"},
		"pattern-0": {"team/app"}, "action-0": {"content/read"},
		"pattern-1": {"team/app"}, "action-1": {"content/write", "content/overwrite"}, "tags-1": {"dev-*, pr-*"},
		"pattern-2": {"team/app"}, "action-2": {"metadata/read"}, "tags-2": {"v1/x"}}
	r := b.post("/scope-maps", form)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(r.body, "invalid tag pattern") || !strings.Contains(r.body, `value="v1/x"`) {
		t.Errorf("no message next to the bad tag pattern, or the form lost it:\n%s", r.body)
	}
	if f.scopeMapExists("ci-dev-tags") {
		t.Fatal("a scope map with a bad tag pattern was stored")
	}
	form.Set("tags-2", "v*")
	r = b.post("/scope-maps", form)
	if r.status != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", r.status, r.body)
	}
	m, err := f.ids.GetScopeMap(owner, "ci-dev-tags")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Tags["repositories/team/app/content/write"]; !slices.Equal(got, []string{"dev-*", "pr-*"}) {
		t.Errorf("content/write limited to %q", got)
	}
	if got := m.Tags["repositories/team/app/content/overwrite"]; !slices.Equal(got, []string{"dev-*", "pr-*"}) {
		t.Errorf("content/overwrite limited to %q", got)
	}
	if got := m.Tags["repositories/team/app/metadata/read"]; !slices.Equal(got, []string{"v*"}) {
		t.Errorf("metadata/read limited to %q", got)
	}
	if _, ok := m.Tags["repositories/team/app/content/read"]; ok {
		t.Error("content/read limited, though its row has no tags")
	}
	r = b.get("/scope-maps/ci-dev-tags")
	if !strings.Contains(r.body, `value="dev-*, pr-*"`) || !strings.Contains(r.body, `value="v*"`) {
		t.Errorf("the editor does not show the stored tags:\n%s", r.body)
	}
	// Saving the page as shown keeps the limits.
	save := url.Values{"pattern-0": {"team/app"}, "action-0": {"content/read"},
		"pattern-1": {"team/app"}, "action-1": {"content/write", "content/overwrite"}, "tags-1": {"dev-*, pr-*"},
		"pattern-2": {"team/app"}, "action-2": {"metadata/read"}, "tags-2": {""}}
	if r := b.post("/scope-maps/ci-dev-tags", save); r.status != http.StatusSeeOther {
		t.Fatalf("save: %d\n%s", r.status, r.body)
	}
	m, _ = f.ids.GetScopeMap(owner, "ci-dev-tags")
	if _, ok := m.Tags["repositories/team/app/metadata/read"]; ok || len(m.Tags) != 2 {
		t.Errorf("after clearing the tags of metadata/read the map has %q", m.Tags)
	}
}
