package ui

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
)

// TestRepositoryListSortPageAndColumns: the repository list says how many
// there are, sorts by name, last push or creation, pages by the chosen
// size, and shows last pushed, pulls and size.
func TestRepositoryListSortPageAndColumns(t *testing.T) {
	f := newFixture(t)
	for _, r := range []string{"b/app", "a/app", "c/app"} {
		putImage(t, f.store, r, "v1")
		time.Sleep(3 * time.Millisecond) // distinct push times
	}
	for range 2 {
		f.audit.Record(audit.Event{Kind: audit.KindPull, Result: audit.ResultSuccess, Identity: "ci", Repository: "a/app", Tag: "v1", CallerIP: "127.0.0.1"})
	}
	f.audit.Flush()
	b := f.signIn("reader", readerPassword)
	order := func(q string) string {
		t.Helper()
		r := b.get("/repositories" + q)
		wantStatus(t, r, http.StatusOK)
		var out []string
		for _, m := range regexp.MustCompile(`<a class="strong" href="/repositories/([^"]+)">`).FindAllStringSubmatch(r.body, -1) {
			out = append(out, m[1])
		}
		return strings.Join(out, " ")
	}
	for q, want := range map[string]string{
		"":                            "a/app b/app c/app",
		"?sort=lastPushed":            "c/app a/app b/app",
		"?sort=created":               "c/app a/app b/app",
		"?sort=name&pageSize=25":      "a/app b/app c/app",
		"?q=b/":                       "b/app",
		"?sort=lastPushed&pageSize=x": "c/app a/app b/app",
	} {
		if got := order(q); got != want {
			t.Errorf("/repositories%s lists %q, want %q", q, got, want)
		}
	}
	r := b.get("/repositories")
	if !strings.Contains(r.body, `id="repo-count">3 repositories`) {
		t.Errorf("no total count")
	}
	for _, col := range []string{">Last pushed<", ">Pulls<", ">Size<"} {
		if !strings.Contains(r.body, col) {
			t.Errorf("no %s column", col)
		}
	}
	// a/app: 2 pulls; its size is its manifests' and blobs'.
	row := regexp.MustCompile(`(?s)href="/repositories/a/app">.*?</tr>`).FindString(r.body)
	if !strings.Contains(row, `<td class="num">2</td>`) {
		t.Errorf("a/app's pull count is not 2:\n%s", row)
	}
	wantStatus(t, b.get("/repositories?sort=size"), http.StatusBadRequest)
}
