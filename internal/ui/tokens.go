package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// tokenActivity is how many audit events a token's page shows.
const tokenActivity = 10

// expiryWarning is how early a password's coming expiry is flagged.
const expiryWarning = 7 * 24 * time.Hour

// passwordView is one password slot as the pages show it.
type passwordView struct {
	Slot     string
	Present  bool
	Created  time.Time
	Expiry   *time.Time
	LastUsed *time.Time
	State    string // "", "soon" or "expired"
	Expires  string // "never", "2026-12-01 00:00 UTC (in 3 days)", ...
}

func (h *Handler) passwordViews(pws []identity.Password, slots ...string) []passwordView {
	now := h.now()
	out := make([]passwordView, 0, len(slots))
	for _, s := range slots {
		v := passwordView{Slot: s, Expires: "never"}
		for _, p := range pws {
			if p.Name != s {
				continue
			}
			v.Present, v.Created, v.Expiry, v.LastUsed = true, p.CreationTime, p.Expiry, p.LastUsed
			if p.Expiry != nil {
				left := p.Expiry.Sub(now)
				switch {
				case left <= 0:
					v.State = "expired"
					v.Expires = fmt.Sprintf("expired %s (%s ago)", fmtTime(*p.Expiry), roughDuration(-left))
				case left <= expiryWarning:
					v.State = "soon"
					v.Expires = fmt.Sprintf("%s (in %s)", fmtTime(*p.Expiry), roughDuration(left))
				default:
					v.Expires = fmtTime(*p.Expiry)
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// roughDuration says "3 days", "5 hours", "12 minutes".
func roughDuration(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int(d/time.Minute), "minute")
	}
	return "less than a minute"
}

type tokenRow struct {
	identity.Token
	Passwords []passwordView
	Warn      bool
}

type tokensData struct {
	Tokens   []tokenRow
	Expiring []string // tokens with a password expiring within a week
	// The filter, as the form shows it, and what it matched.
	Q, Status, ScopeMap, ExpiringDays, UnusedDays string
	NeverUsed                                     bool
	Filtered                                      bool
	Total                                         int
	ScopeMaps                                     []string
	FilterError                                   string
}

func (h *Handler) tokensPage(w http.ResponseWriter, r *http.Request, rq *request) {
	toks, err := h.ids.ListTokens(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	q := r.URL.Query()
	d := tokensData{Q: q.Get("q"), Status: q.Get("status"), ScopeMap: q.Get("scopeMap"), ExpiringDays: q.Get("expiringWithinDays"),
		UnusedDays: q.Get("unusedDays"), NeverUsed: q.Get("neverUsed") != "", Total: len(toks)}
	seen := map[string]bool{}
	for _, t := range toks {
		if !seen[t.ScopeMap] {
			seen[t.ScopeMap] = true
			d.ScopeMaps = append(d.ScopeMaps, t.ScopeMap)
		}
	}
	slices.Sort(d.ScopeMaps)
	status := http.StatusOK
	f, err := identity.ParseTokenFilter(q)
	if err != nil {
		d.FilterError, status = capitalize(h.message(err))+".", http.StatusUnprocessableEntity
		f = identity.TokenFilter{}
	}
	d.Filtered = f != (identity.TokenFilter{})
	toks = identity.FilterTokens(toks, f, h.now())
	for _, t := range toks {
		row := tokenRow{Token: t, Passwords: h.passwordViews(t.Passwords, identity.SlotPassword1, identity.SlotPassword2)}
		for _, p := range row.Passwords {
			if p.State == "soon" {
				row.Warn = true
			}
		}
		if row.Warn {
			d.Expiring = append(d.Expiring, t.Name)
		}
		d.Tokens = append(d.Tokens, row)
	}
	h.render(w, r, rq, status, "tokens.html", view{Title: "Tokens", Nav: "tokens", Data: d})
}

// tokenForm is the new-token form.
type tokenForm struct {
	Name      string
	Status    string
	Mode      string // "existing" or "new"
	ScopeMap  string
	ScopeMaps []identity.ScopeMap
	Rows      []grantRow
	Errors    map[string]string
}

func (h *Handler) newTokenPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "create tokens")
		return
	}
	f := tokenForm{Status: identity.StatusEnabled, Mode: "existing", ScopeMap: r.URL.Query().Get("scope-map"), Rows: withBlankRows(nil, 1)}
	h.renderTokenForm(w, r, rq, http.StatusOK, f, "")
}

func (h *Handler) renderTokenForm(w http.ResponseWriter, r *http.Request, rq *request, status int, f tokenForm, msg string) {
	maps, err := h.ids.ListScopeMaps(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	f.ScopeMaps = maps
	h.render(w, r, rq, status, "token_new.html", view{Title: "New token", Nav: "tokens", Error: msg, Data: f})
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "create tokens")
		return
	}
	f := tokenForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Status: r.PostForm.Get("status"),
		Mode: r.PostForm.Get("mode"), ScopeMap: r.PostForm.Get("scopeMap"), Errors: map[string]string{}}
	if err := auth.ValidateTokenName(f.Name); err != nil {
		f.Errors["name"] = capitalize(err.Error()) + "."
	}
	if f.Status != identity.StatusDisabled {
		f.Status = identity.StatusEnabled
	}
	spec := identity.TokenSpec{Name: f.Name, Status: f.Status}
	rows, actions, tags, rowsOK := parseGrantRows(r)
	switch f.Mode {
	case "new":
		f.Rows = rows
		if !rowsOK {
			f.Errors["rows"] = "Fix the marked rows."
		} else if len(actions) == 0 {
			f.Errors["rows"] = "Add at least one repository pattern with its actions, or choose an existing scope map."
		}
		spec.Actions, spec.Tags = actions, tags
	default:
		f.Mode = "existing"
		f.Rows = rows
		if f.ScopeMap == "" {
			f.Errors["scopeMap"] = "Choose the scope map that says what the token may do."
		}
		spec.ScopeMap = f.ScopeMap
	}
	f.Rows = withBlankRows(f.Rows, 1)
	if len(f.Errors) > 0 {
		h.renderTokenForm(w, r, rq, http.StatusUnprocessableEntity, f, "The token was not created: fix the fields marked below.")
		return
	}
	_, _, err := h.ids.CreateToken(r.Context(), rq.id, spec)
	if err != nil {
		switch {
		case errors.Is(err, identity.ErrConflict):
			f.Errors["name"] = nameTaken(f.Name)
			h.renderTokenForm(w, r, rq, http.StatusConflict, f, "The token was not created: fix the fields marked below.")
		case errors.Is(err, identity.ErrInvalid):
			h.renderTokenForm(w, r, rq, http.StatusUnprocessableEntity, f, "The token was not created: "+h.message(err))
		default:
			h.fail(w, r, rq, err)
		}
		return
	}
	h.redirect(w, r, rq, "/tokens/"+url.PathEscape(f.Name), "Token "+f.Name+" created. Generate a password below to use it.")
}

// secretView is a password shown once, in the response to the request
// that generated it.
type secretView struct {
	Username string
	Slot     string
	Password string
	Command  string
	// CommandStdin keeps the password out of the shell's arguments;
	// CommandPodman is podman's, with --tls-verify=false when the
	// registry is served over plain HTTP.
	CommandStdin  string
	CommandPodman string
	Expiry        *time.Time
}

// newSecret is the view of a password just generated, with its login
// commands.
func (h *Handler) newSecret(r *http.Request, user, slot, password string, expiry *time.Time) secretView {
	host := h.registryHost(r)
	podman := "podman login -u " + user + " --password-stdin"
	if strings.HasPrefix(h.publicURL(r), "http://") {
		podman += " --tls-verify=false"
	}
	return secretView{Username: user, Slot: slot, Password: password, Expiry: expiry,
		Command:       loginCommand(user, password, host),
		CommandStdin:  fmt.Sprintf("echo '%s' | docker login -u %s --password-stdin %s", password, user, host),
		CommandPodman: fmt.Sprintf("echo '%s' | %s %s", password, podman, host)}
}

type tokenData struct {
	Token     identity.Token
	Passwords []passwordView
	ScopeMaps []identity.ScopeMap
	Grants    []grantRow
	NoMap     bool // the scope map was deleted with force
	Secrets   []secretView
	Once      string
	MinDate   string
	Errors    map[string]string
	Limits    *limitsView     // nil without a limiter
	Addresses *tokenAddresses // nil without network rules
	Federated *federatedSection
	// Activity is the token's latest audit events (logins, pushes,
	// pulls, refusals), for those who may read the audit log.
	Activity   []audit.Event
	ShowsAudit bool
}

func (h *Handler) tokenPage(w http.ResponseWriter, r *http.Request, rq *request) {
	h.renderToken(w, r, rq, http.StatusOK, r.PathValue("name"), nil, nil, "")
}

// renderToken shows a token's page; secrets, when given, are the
// passwords just generated, shown this once.
func (h *Handler) renderToken(w http.ResponseWriter, r *http.Request, rq *request, status int, name string, secrets []secretView, errs map[string]string, msg string) {
	t, err := h.ids.GetToken(rq.id, name)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	d := tokenData{Token: t, Passwords: h.passwordViews(t.Passwords, identity.SlotPassword1, identity.SlotPassword2),
		Secrets: secrets, Once: randomString(16), MinDate: h.now().UTC().AddDate(0, 0, 1).Format("2006-01-02"), Errors: errs}
	if h.audit != nil && rq.can(auth.ReadAudit) {
		d.ShowsAudit = true
		// A delegated reader reads the events on their repositories only.
		f := audit.Filter{Identity: t.Name, Limit: tokenActivity, Repositories: auth.ManagedScope(rq.id, auth.ReadAudit)}
		if d.Activity, err = h.audit.List(r.Context(), f); err != nil {
			h.fail(w, r, rq, err)
			return
		}
	}
	if m, err := h.ids.GetScopeMap(rq.id, t.ScopeMap); err == nil {
		d.Grants = grantRows(m.Actions, m.Tags)
	} else {
		d.NoMap = true
	}
	if rq.can(auth.ManageTokens) {
		if d.ScopeMaps, err = h.ids.ListScopeMaps(rq.id); err != nil {
			h.fail(w, r, rq, err)
			return
		}
	}
	d.Limits = h.tokenLimits(r, rq, t)
	d.Addresses = h.tokenAddressesView(r, rq, t)
	d.Federated = h.federatedView(r, rq, t)
	h.render(w, r, rq, status, "token.html", view{Title: "Token " + t.Name, Nav: "tokens", Error: msg, Data: d})
}

// parseExpiry reads an optional date input (YYYY-MM-DD): the password
// stops working at 00:00 UTC on that day.
func parseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date: use the form YYYY-MM-DD, as in 2030-01-31", s)
	}
	return t.UTC(), nil
}

// pastExpiry is the portal's words for an expiry date that has passed.
func pastExpiry(t time.Time) error {
	return fmt.Errorf("the expiry date %s is in the past: choose a later date, or leave it empty for a password that does not expire", t.UTC().Format("2006-01-02"))
}

// nameTaken is the portal's words for a name a token or user already has.
func nameTaken(name string) string {
	return fmt.Sprintf("The name %s is taken: a token or a user already has it (names are case-insensitive, so %s and %s are the same). Choose another name.",
		name, strings.ToUpper(name), strings.ToLower(name))
}

// loginCommand is the command the portal shows with a new password.
func loginCommand(user, password, host string) string {
	return fmt.Sprintf("docker login -u %s -p %s %s", user, password, host)
}

func (h *Handler) tokenAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change tokens")
		return
	}
	switch op := r.PostForm.Get("op"); op {
	case "status":
		st := r.PostForm.Get("status")
		if _, err := h.ids.UpdateToken(r.Context(), rq.id, name, identity.TokenUpdate{Status: &st}); err != nil {
			h.fail(w, r, rq, err)
			return
		}
		msg := "Token " + name + " enabled."
		if st == identity.StatusDisabled {
			msg = "Token " + name + " disabled: it is refused from its next request, including access tokens already issued."
		}
		h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name), msg)
	case "scope-map":
		sm := r.PostForm.Get("scopeMap")
		if _, err := h.ids.UpdateToken(r.Context(), rq.id, name, identity.TokenUpdate{ScopeMap: &sm}); err != nil {
			if errors.Is(err, identity.ErrInvalid) {
				h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, map[string]string{"scopeMap": h.message(err)}, "Nothing was changed: see below.")
				return
			}
			h.fail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name), "Token "+name+" now uses scope map "+sm+".")
	case "generate":
		slot := r.PostForm.Get("slot")
		errs := map[string]string{}
		expiry, err := parseExpiry(r.PostForm.Get("expiry"))
		if err == nil && !expiry.IsZero() && !expiry.After(h.now()) {
			err = pastExpiry(expiry)
		}
		if err != nil {
			errs["expiry-"+slot] = capitalize(err.Error()) + "."
			h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, errs, "No password was generated: see below.")
			return
		}
		if !h.sessions.useNonce(rq.sess, r.PostForm.Get("once")) {
			h.renderToken(w, r, rq, http.StatusConflict, name, nil, nil,
				"This form was already submitted (the page was reloaded or sent twice), so no new password was generated. "+
					"A generated password is shown only once: if you did not copy it, generate a new one.")
			return
		}
		creds, err := h.ids.GenerateCredentials(r.Context(), rq.id, name, []string{slot}, expiry)
		if err != nil {
			if errors.Is(err, identity.ErrInvalid) {
				// The only invalid input left is an expiry that passed
				// between the check above and the service's.
				errs["expiry-"+slot] = capitalize(pastExpiry(expiry).Error()) + "."
				h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, errs, "No password was generated: see below.")
				return
			}
			h.fail(w, r, rq, err)
			return
		}
		var secrets []secretView
		for _, p := range creds.Passwords {
			secrets = append(secrets, h.newSecret(r, creds.Username, p.Name, p.Value, p.Expiry))
		}
		// Rendered straight into this response (200, no-store), never
		// redirected: the value is in no URL, cookie or session.
		h.renderToken(w, r, rq, http.StatusOK, name, secrets, nil, "")
	case "delete-password":
		slot := r.PostForm.Get("slot")
		if _, err := h.ids.DeletePassword(r.Context(), rq.id, name, slot); err != nil {
			h.fail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name), slot+" of "+name+" deleted: it no longer works, from the next request on.")
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", fmt.Sprintf("Unknown operation %q.", op))
	}
}

func (h *Handler) deleteTokenPage(w http.ResponseWriter, r *http.Request, rq *request) {
	t, err := h.ids.GetToken(rq.id, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "delete tokens")
		return
	}
	h.render(w, r, rq, http.StatusOK, "token_delete.html", view{Title: "Delete token " + t.Name, Nav: "tokens", Data: t})
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "delete tokens")
		return
	}
	if err := h.ids.DeleteToken(r.Context(), rq.id, name); err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/tokens", "Token "+name+" deleted. Clients using it are refused from their next request.")
}
