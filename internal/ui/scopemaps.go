package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// grantRow is one row of the repository pattern × actions table.
type grantRow struct {
	Pattern string
	Actions auth.Actions
	// Tags are the tag patterns the row's actions are limited to, as
	// typed ("dev-*, pr-*"); empty means every tag.
	Tags  string
	Error string
}

// grantRows turns stored scope-map actions and their tag limits into
// table rows: one per pattern and set of tag patterns.
func grantRows(actions []string, tags map[string][]string) []grantRow {
	groups, err := auth.GroupRules(auth.ScopeMap{Actions: actions, Tags: tags})
	if err != nil {
		return nil
	}
	rows := make([]grantRow, 0, len(groups))
	for _, g := range groups {
		rows = append(rows, grantRow{Pattern: g.Pattern.String(), Actions: g.Actions, Tags: strings.Join(g.Tags, ", ")})
	}
	return rows
}

// maxGrantRows bounds the rows a form may send: the scope-map limit, and
// some blank rows.
const maxGrantRows = auth.MaxScopeMapPatterns + 50

// parseGrantRows reads the table from a form: fields "pattern-N",
// "action-N" (one value per checked action) and "tags-N" (tag patterns,
// comma-separated; empty for every tag). Blank rows are skipped. Each row
// is checked with the rules the service applies (auth.RepositoryActions,
// auth.NormalizeTagPatterns), so that its message can be shown next to the
// field; the service checks everything again when storing. Rows add up as
// the rules of a scope map do (auth.MergeRules).
func parseGrantRows(r *http.Request) (rows []grantRow, actions []string, tags map[string][]string, ok bool) {
	var rules []auth.Rule
	var idx []int
	for k := range r.PostForm {
		if n, found := strings.CutPrefix(k, "pattern-"); found {
			if i, err := strconv.Atoi(n); err == nil && i >= 0 {
				idx = append(idx, i)
			}
		}
	}
	slices.Sort(idx)
	ok = true
	if len(idx) > maxGrantRows {
		idx = idx[:maxGrantRows]
	}
	for _, i := range idx {
		n := strconv.Itoa(i)
		row := grantRow{Pattern: strings.TrimSpace(r.PostForm.Get("pattern-" + n)), Tags: strings.TrimSpace(r.PostForm.Get("tags-" + n))}
		pats := auth.ParseTagList(row.Tags)
		names := r.PostForm["action-"+n]
		for _, a := range names {
			if b, err := auth.ParseAction(a); err == nil {
				row.Actions |= b
			}
		}
		switch {
		case row.Pattern == "" && len(names) == 0:
			continue
		case row.Pattern == "":
			row.Error = "Enter a repository pattern for these actions (\"team/app\", \"team/*\" or \"*\"), or clear the row's checkboxes."
		case len(names) == 0:
			row.Error = "Choose at least one action for " + strconv.Quote(row.Pattern) + ", or clear the pattern to drop the row."
		default:
			list, err := auth.RepositoryActions(row.Pattern, names...)
			if err != nil {
				row.Error = capitalize(err.Error()) + "."
				break
			}
			if _, _, err := auth.NormalizeTagPatterns(pats); err != nil {
				row.Error = "Tags: " + err.Error() + "."
				break
			}
			for _, a := range list {
				rules = append(rules, auth.Rule{Action: a, Tags: pats})
			}
		}
		if row.Error != "" {
			ok = false
		}
		rows = append(rows, row)
	}
	if ok && len(rules) > 0 {
		var err error
		if actions, tags, err = auth.MergeRules(rules); err != nil {
			// Not expected after the checks above; say so rather than drop it.
			rows = append(rows, grantRow{Error: capitalize(err.Error()) + "."})
			return rows, nil, nil, false
		}
	}
	return rows, actions, tags, ok
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// withBlankRows appends blank rows for typing new patterns without
// JavaScript (the script adds more on demand).
func withBlankRows(rows []grantRow, n int) []grantRow {
	for range n {
		rows = append(rows, grantRow{})
	}
	return rows
}

type scopeMapRow struct {
	identity.ScopeMap
	Builtin bool
	Grants  []grantRow
}

type scopeMapsData struct {
	Maps []scopeMapRow
}

func (h *Handler) scopeMapsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	maps, err := h.ids.ListScopeMaps(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	d := scopeMapsData{}
	for _, m := range maps {
		d.Maps = append(d.Maps, scopeMapRow{ScopeMap: m, Builtin: m.Type == string(auth.SystemDefined), Grants: grantRows(m.Actions, m.Tags)})
	}
	h.render(w, r, rq, http.StatusOK, "scopemaps.html", view{Title: "Scope maps", Nav: "scope-maps", Data: d})
}

// scopeMapForm is the scope map editor, for a new or an existing map.
type scopeMapForm struct {
	New         bool
	Editable    bool
	Builtin     bool
	Name        string
	Description string
	Rows        []grantRow
	Tokens      []string
	Created     time.Time
	Errors      map[string]string
}

func (h *Handler) newScopeMapPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "create scope maps")
		return
	}
	f := scopeMapForm{New: true, Editable: true, Rows: withBlankRows(nil, 1)}
	h.render(w, r, rq, http.StatusOK, "scopemap.html", view{Title: "New scope map", Nav: "scope-maps", Data: f})
}

func (h *Handler) scopeMapPage(w http.ResponseWriter, r *http.Request, rq *request) {
	m, err := h.ids.GetScopeMap(rq.id, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	builtin := m.Type == string(auth.SystemDefined)
	f := scopeMapForm{Name: m.Name, Description: m.Description, Rows: grantRows(m.Actions, m.Tags), Tokens: m.Tokens,
		Created: m.CreatedAt, Builtin: builtin, Editable: !builtin && rq.can(auth.ManageTokens)}
	if f.Editable {
		f.Rows = withBlankRows(f.Rows, 1)
	}
	h.render(w, r, rq, http.StatusOK, "scopemap.html", view{Title: "Scope map " + m.Name, Nav: "scope-maps", Data: f})
}

// readScopeMapForm reads and checks the editor's fields.
func readScopeMapForm(r *http.Request, f *scopeMapForm) (actions []string, tags map[string][]string, ok bool) {
	f.Errors = map[string]string{}
	f.Description = strings.TrimSpace(r.PostForm.Get("description"))
	if n := utf8.RuneCountInString(f.Description); n > auth.MaxDescriptionLength {
		f.Errors["description"] = fmt.Sprintf("The description is %d characters long; shorten it to %d at most.", n, auth.MaxDescriptionLength)
	}
	rows, actions, tags, rowsOK := parseGrantRows(r)
	f.Rows = rows
	if !rowsOK {
		f.Errors["rows"] = "Fix the marked rows."
	}
	return actions, tags, len(f.Errors) == 0
}

func (h *Handler) createScopeMap(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "create scope maps")
		return
	}
	f := scopeMapForm{New: true, Editable: true, Name: strings.TrimSpace(r.PostForm.Get("name"))}
	actions, tags, ok := readScopeMapForm(r, &f)
	if err := auth.ValidateScopeMapName(f.Name); err != nil {
		f.Errors["name"] = capitalize(err.Error()) + "."
		ok = false
	}
	show := func(status int, msg string) {
		f.Rows = withBlankRows(f.Rows, 1)
		h.render(w, r, rq, status, "scopemap.html", view{Title: "New scope map", Nav: "scope-maps", Error: msg, Data: f})
	}
	if !ok {
		show(http.StatusUnprocessableEntity, "The scope map was not created: fix the fields marked below.")
		return
	}
	_, err := h.ids.CreateScopeMap(r.Context(), rq.id, identity.ScopeMapSpec{Name: f.Name, Description: f.Description, Actions: actions, Tags: tags})
	if err != nil {
		if errors.Is(err, identity.ErrConflict) {
			f.Errors["name"] = fmt.Sprintf("A scope map named %q already exists: choose another name, or edit that one.", f.Name)
			show(http.StatusConflict, "The scope map was not created: fix the fields marked below.")
			return
		}
		if errors.Is(err, identity.ErrInvalid) {
			show(http.StatusUnprocessableEntity, "The scope map was not created: "+h.message(err))
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/scope-maps/"+url.PathEscape(f.Name), "Scope map "+f.Name+" created.")
}

func (h *Handler) updateScopeMap(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change scope maps")
		return
	}
	cur, err := h.ids.GetScopeMap(rq.id, name)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	f := scopeMapForm{Editable: true, Name: name, Tokens: cur.Tokens, Created: cur.CreatedAt}
	actions, tags, ok := readScopeMapForm(r, &f)
	show := func(status int, msg string) {
		f.Rows = withBlankRows(f.Rows, 1)
		h.render(w, r, rq, status, "scopemap.html", view{Title: "Scope map " + name, Nav: "scope-maps", Error: msg, Data: f})
	}
	if !ok {
		show(http.StatusUnprocessableEntity, "Nothing was saved: fix the fields marked below.")
		return
	}
	if actions == nil {
		actions = []string{} // an empty table clears the map
	}
	_, err = h.ids.UpdateScopeMap(r.Context(), rq.id, name, identity.ScopeMapUpdate{Description: &f.Description, Actions: actions, Tags: tags})
	if err != nil {
		if errors.Is(err, identity.ErrInvalid) {
			show(http.StatusUnprocessableEntity, "Nothing was saved: "+h.message(err))
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	msg := "Scope map " + name + " saved."
	if n := len(cur.Tokens); n > 0 {
		msg += fmt.Sprintf(" It applies to its %d token(s) from their next request.", n)
	}
	h.redirect(w, r, rq, "/scope-maps/"+url.PathEscape(name), msg)
}

type deleteScopeMapData struct {
	Name   string
	Tokens []string
}

func (h *Handler) deleteScopeMapPage(w http.ResponseWriter, r *http.Request, rq *request) {
	m, err := h.ids.GetScopeMap(rq.id, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "delete scope maps")
		return
	}
	if m.Type == string(auth.SystemDefined) {
		h.renderError(w, r, rq, http.StatusForbidden, "Built-in scope map", m.Name+" is built in and cannot be deleted.")
		return
	}
	h.render(w, r, rq, http.StatusOK, "scopemap_delete.html", view{Title: "Delete scope map " + m.Name, Nav: "scope-maps",
		Data: deleteScopeMapData{Name: m.Name, Tokens: m.Tokens}})
}

func (h *Handler) deleteScopeMap(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "delete scope maps")
		return
	}
	force := r.PostForm.Get("force") != ""
	users, err := h.ids.DeleteScopeMap(r.Context(), rq.id, name, force)
	if err != nil {
		if errors.Is(err, identity.ErrInUse) {
			h.render(w, r, rq, http.StatusConflict, "scopemap_delete.html", view{Title: "Delete scope map " + name, Nav: "scope-maps",
				Error: fmt.Sprintf("%s is used by %d token(s). Move them to another scope map first, or tick the box to delete it anyway. Nothing was deleted.", name, len(users)),
				Data:  deleteScopeMapData{Name: name, Tokens: users}})
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	msg := "Scope map " + name + " deleted."
	if len(users) > 0 {
		msg += " These tokens now have no permissions: " + strings.Join(users, ", ") + "."
	}
	h.redirect(w, r, rq, "/scope-maps", msg)
}
