package ui

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/berth-registry/berth/internal/repository"
)

// The scope map editor's helpers, fetched by its script: suggestions of
// existing repositories as a pattern is typed, and how many repositories
// a pattern matches. Both count only repositories the user may see, through
// the repository service, as GET /api/v1/patternMatches does.

const suggestions = 8

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// repositorySuggestions answers {"names": [...]}: repositories whose name
// contains q (a trailing "/*" or "*" of a pattern being typed ignored).
func (h *Handler) repositorySuggestions(w http.ResponseWriter, r *http.Request, rq *request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	q = strings.TrimSuffix(strings.TrimSuffix(q, "*"), "/")
	page, err := h.repos.List(r.Context(), rq.id, repository.ListQuery{N: suggestions, Contains: q, IncludeHidden: true, ScanLimit: scanLimit})
	if err != nil {
		h.writeJSON(w, statusOf(err), map[string]string{"error": h.message(err)})
		return
	}
	names := page.Names
	if names == nil {
		names = []string{}
	}
	h.writeJSON(w, http.StatusOK, map[string][]string{"names": names})
}

// repositoryMatches answers repository.MatchResult for ?pattern=.
func (h *Handler) repositoryMatches(w http.ResponseWriter, r *http.Request, rq *request) {
	m, err := h.repos.Match(r.Context(), rq.id, r.URL.Query().Get("pattern"), 5)
	if err != nil {
		h.writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": capitalize(err.Error()) + "."})
		return
	}
	h.writeJSON(w, http.StatusOK, m)
}
