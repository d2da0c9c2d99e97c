package ui

import (
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/overview"
)

// tile is one figure of the overview, linking to the list it counts.
type tile struct {
	ID, Value, Label, Href, Tone string
}

// overviewPage is the page after sign-in: counts of what the user may
// see, each linking to the list it counts, filtered.
func (h *Handler) overviewPage(w http.ResponseWriter, r *http.Request, rq *request) {
	o, err := h.overview.Get(r.Context(), rq.id, h.now())
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	tone := func(n int64, t string) string {
		if n > 0 {
			return t
		}
		return ""
	}
	tiles := []tile{{"repositories", itoa(int64(o.Repositories)), "repositories", "/repositories", ""}}
	if o.Tokens != nil {
		tiles = append(tiles,
			tile{"tokens", itoa(int64(*o.Tokens)), "tokens", "/tokens", ""},
			tile{"expiring", itoa(int64(*o.PasswordsExpiring)), "passwords expiring within 7 days", "/tokens?expiringWithinDays=7", tone(int64(*o.PasswordsExpiring), "warn")},
			tile{"never-used", itoa(int64(*o.TokensNeverUsed)), "tokens never used", "/tokens?neverUsed=true", ""},
			tile{"unused", itoa(int64(*o.TokensUnused)), "tokens unused for 90 days (or never used)", "/tokens?unusedDays=90", ""})
	}
	if o.DenialsLastDay != nil {
		tiles = append(tiles, tile{"denials", itoa(*o.DenialsLastDay), "refused requests in the last 24 hours",
			"/audit?kind=access&result=denied&since=" + h.now().Add(-overview.DenialsWithin).UTC().Format("2006-01-02 15:04"), tone(*o.DenialsLastDay, "danger")})
	}
	if o.StorageBytes != nil {
		tiles = append(tiles, tile{"storage", config.ByteSize(*o.StorageBytes).Human(), "storage used", "/repositories?sort=lastPushed", ""})
	}
	h.render(w, r, rq, http.StatusOK, "overview.html", view{Title: "Overview", Nav: "overview", Data: tiles})
}
