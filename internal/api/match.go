package api

import (
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
)

// matchFirstMax bounds the names a pattern preview returns.
const matchFirstMax = 50

// matchPattern counts the repositories a scope-map pattern matches among
// those the caller may see, with the first few names: the scope map
// editor's live preview.
func (h *Handler) matchPattern(c *call) error {
	q := c.r.URL.Query()
	first := 5
	if v := q.Get("first"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > matchFirstMax {
			return badRequest("invalid first=%q: use a number from 0 to %d", v, matchFirstMax)
		}
		first = n
	}
	if q.Get("pattern") == "" {
		return badRequest("missing pattern: give a repository pattern such as team/app, team/* or *")
	}
	m, err := h.repos.Match(c.ctx(), c.id, q.Get("pattern"), first)
	if err != nil {
		if _, perr := auth.ParsePattern(q.Get("pattern")); perr != nil {
			return badRequest("invalid pattern %q: %s", q.Get("pattern"), perr)
		}
		return err
	}
	return c.ok(m)
}
