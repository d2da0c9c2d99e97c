package ui

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
)

// Access keys: the admin user.

type accessKeysData struct {
	Admin     identity.Admin
	Passwords []passwordView
	Secrets   []secretView
	Once      string
}

func (h *Handler) accessKeysPage(w http.ResponseWriter, r *http.Request, rq *request) {
	h.renderAccessKeys(w, r, rq, http.StatusOK, nil, "")
}

func (h *Handler) renderAccessKeys(w http.ResponseWriter, r *http.Request, rq *request, status int, creds *identity.Credentials, msg string) {
	a, err := h.ids.GetAdmin(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	d := accessKeysData{Admin: a, Passwords: h.passwordViews(a.Passwords, identity.SlotAdminPassword, identity.SlotAdminPassword2), Once: randomString(16)}
	if creds != nil {
		for _, p := range creds.Passwords {
			d.Secrets = append(d.Secrets, h.newSecret(r, creds.Username, p.Name, p.Value, nil))
		}
	}
	h.render(w, r, rq, status, "accesskeys.html", view{Title: "Access keys", Nav: "access-keys", Error: msg, Data: d})
}

func (h *Handler) accessKeysAction(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageRegistry) {
		h.forbidden(w, r, rq, "change the admin user")
		return
	}
	op := r.PostForm.Get("op")
	if (op == "enable" || op == "renew") && !h.sessions.useNonce(rq.sess, r.PostForm.Get("once")) {
		h.renderAccessKeys(w, r, rq, http.StatusConflict, nil,
			"This form was already submitted (the page was reloaded or sent twice), so nothing was changed. A password is shown only once: if you did not copy it, renew it.")
		return
	}
	switch op {
	case "enable", "disable":
		_, creds, err := h.ids.SetAdminEnabled(r.Context(), rq.id, op == "enable")
		if err != nil {
			h.fail(w, r, rq, err)
			return
		}
		if creds != nil {
			h.renderAccessKeys(w, r, rq, http.StatusOK, creds, "")
			return
		}
		h.redirect(w, r, rq, "/access-keys", "Admin user "+op+"d.")
	case "renew":
		creds, err := h.ids.RenewAdminPassword(r.Context(), rq.id, r.PostForm.Get("slot"))
		if err != nil {
			h.fail(w, r, rq, err)
			return
		}
		h.renderAccessKeys(w, r, rq, http.StatusOK, creds, "")
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", fmt.Sprintf("Unknown operation %q.", op))
	}
}

// Users (owners only).

type usersData struct {
	Users  []identity.User
	Form   userForm
	Errors map[string]string
}

type userForm struct {
	Name string
	Role string
}

// The users pages are read by every role that sees management settings
// (auth.ViewManagement, as GET /api/v1/users is); only ManageUsers gets
// their forms.
func (h *Handler) usersPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ViewManagement) {
		h.forbidden(w, r, rq, "see users")
		return
	}
	h.renderUsers(w, r, rq, http.StatusOK, userForm{Role: string(auth.RoleReader)}, nil, "")
}

func (h *Handler) renderUsers(w http.ResponseWriter, r *http.Request, rq *request, status int, f userForm, errs map[string]string, msg string) {
	users, err := h.ids.ListUsers(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.render(w, r, rq, status, "users.html", view{Title: "Users", Nav: "users", Error: msg, Data: usersData{Users: users, Form: f, Errors: errs}})
}

// userFieldError puts a service message next to the field it is about.
func userFieldError(msg string) string {
	switch {
	case strings.Contains(msg, "password"):
		return "password"
	case strings.Contains(msg, "role"):
		return "role"
	}
	return "name"
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageUsers) {
		h.forbidden(w, r, rq, "manage users (only owners can)")
		return
	}
	f := userForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Role: r.PostForm.Get("role")}
	pw, pw2 := r.PostForm.Get("password"), r.PostForm.Get("password2")
	errs := map[string]string{}
	if pw != pw2 {
		errs["password2"] = "The two passwords differ: type the same password twice."
		h.renderUsers(w, r, rq, http.StatusUnprocessableEntity, f, errs, "The user was not created: fix the fields marked below.")
		return
	}
	if _, err := h.ids.CreateUser(r.Context(), rq.id, identity.UserSpec{Name: f.Name, Role: f.Role, Password: pw}); err != nil {
		if st := statusOf(err); st == http.StatusUnprocessableEntity || st == http.StatusConflict {
			msg := h.message(err)
			if st == http.StatusConflict {
				errs["name"] = nameTaken(f.Name)
			} else {
				errs[userFieldError(msg)] = capitalize(msg) + "."
			}
			h.renderUsers(w, r, rq, st, f, errs, "The user was not created: fix the fields marked below.")
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/users/"+url.PathEscape(f.Name), "User "+f.Name+" created with role "+f.Role+".")
}

type userData struct {
	User        identity.User
	Self        bool
	Rights      []string
	Assignments []assignmentRow
	Errors      map[string]string
}

func (h *Handler) userPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ViewManagement) {
		h.forbidden(w, r, rq, "see users")
		return
	}
	h.renderUser(w, r, rq, http.StatusOK, r.PathValue("name"), nil, "")
}

func (h *Handler) renderUser(w http.ResponseWriter, r *http.Request, rq *request, status int, name string, errs map[string]string, msg string) {
	u, err := h.ids.GetUser(rq.id, name)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.render(w, r, rq, status, "user.html", view{Title: "User " + u.Name, Nav: "users", Error: msg,
		Data: userData{User: u, Self: u.Name == rq.user.Name, Rights: roleRights(u.Role), Assignments: assignmentRows(u.Assignments), Errors: errs}})
}

func (h *Handler) userAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageUsers) {
		h.forbidden(w, r, rq, "manage users (only owners can)")
		return
	}
	var u identity.UserUpdate
	var msg string
	switch op := r.PostForm.Get("op"); op {
	case "role":
		role := r.PostForm.Get("role")
		u.Role, msg = &role, "Role of "+name+" set to "+role+"."
	case "status":
		st := r.PostForm.Get("status")
		u.Status, msg = &st, "User "+name+" "+st+"."
	case "password":
		pw, pw2 := r.PostForm.Get("password"), r.PostForm.Get("password2")
		if pw != pw2 {
			h.renderUser(w, r, rq, http.StatusUnprocessableEntity, name, map[string]string{"password2": "The two passwords differ: type the same password twice."}, "The password was not changed.")
			return
		}
		u.Password, msg = &pw, "Password of "+name+" changed; their portal sessions were signed out."
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", fmt.Sprintf("Unknown operation %q.", op))
		return
	}
	if _, err := h.ids.UpdateUser(r.Context(), rq.id, name, u); err != nil {
		if errors.Is(err, identity.ErrForbidden) && (u.Role != nil || u.Status != nil) {
			// The one refusal an owner meets here: the last enabled owner
			// may not be demoted or disabled. Said on the form, in place.
			field, what := "role", "given another role"
			if u.Status != nil {
				field, what = "status", "disabled"
			}
			h.renderUser(w, r, rq, http.StatusConflict, name, map[string]string{field: fmt.Sprintf(
				"%s is the only enabled owner, so they cannot be %s: make another user owner first.", name, what)},
				"Nothing was changed: see below.")
			return
		}
		if st := statusOf(err); st == http.StatusUnprocessableEntity {
			m := h.message(err)
			h.renderUser(w, r, rq, st, name, map[string]string{userFieldError(m): capitalize(m) + "."}, "Nothing was changed: see below.")
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	if u.Password != nil || (u.Status != nil && *u.Status == identity.StatusDisabled) {
		keep := rq.sess
		if name != rq.user.Name {
			keep = nil
		}
		h.sessions.deleteUser(name, keep)
		if g, ok := h.ids.UserGeneration(name); ok && keep != nil {
			h.sessions.setGeneration(keep, g)
		}
	}
	h.redirect(w, r, rq, "/users/"+url.PathEscape(name), msg)
}

func (h *Handler) deleteUserPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageUsers) {
		h.forbidden(w, r, rq, "manage users (only owners can)")
		return
	}
	u, err := h.ids.GetUser(rq.id, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.render(w, r, rq, http.StatusOK, "user_delete.html", view{Title: "Delete user " + u.Name, Nav: "users", Data: userData{User: u, Self: u.Name == rq.user.Name}})
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageUsers) {
		h.forbidden(w, r, rq, "manage users (only owners can)")
		return
	}
	if err := h.ids.DeleteUser(r.Context(), rq.id, name); err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.sessions.deleteUser(name, nil)
	if name == rq.user.Name {
		http.Redirect(w, r, "/signin?signed-out=1", http.StatusSeeOther)
		return
	}
	h.redirect(w, r, rq, "/users", "User "+name+" deleted.")
}

// Audit log.

type auditData struct {
	Filter  auditFilter
	Kinds   []string
	Events  []audit.Event
	Older   template.URL // the next (older) page
	Query   template.URL // the filter, for the export links
	Errors  map[string]string
	Newest  bool
	Results []string
}

type auditFilter struct {
	Identity, Repository, Kind, Result, Since, Until string
}

// query is the filter as URL parameters, for links to other pages and
// exports of the same list.
func (f auditFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"identity": f.Identity, "repository": f.Repository, "kind": f.Kind, "result": f.Result, "since": f.Since, "until": f.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

const auditPerPage = 50

// parseLocal reads a datetime-local input ("2006-01-02T15:04"), as UTC.
func parseLocal(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "UTC"))
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date and time: use YYYY-MM-DD HH:MM (or just YYYY-MM-DD), in UTC", s)
}

func (h *Handler) auditPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ReadAudit) {
		h.forbidden(w, r, rq, "read the audit log")
		return
	}
	if h.audit == nil {
		h.renderError(w, r, rq, http.StatusNotFound, "No audit log", "This server keeps no audit log.")
		return
	}
	q := r.URL.Query()
	f := auditFilter{Identity: strings.TrimSpace(q.Get("identity")), Repository: strings.TrimSpace(q.Get("repository")),
		Kind: q.Get("kind"), Result: q.Get("result"), Since: q.Get("since"), Until: q.Get("until")}
	d := auditData{Filter: f, Errors: map[string]string{}, Newest: q.Get("before") == "", Kinds: audit.Kinds,
		Results: []string{"allowed", "denied"}}
	filter, err := h.auditFilter(f, d.Errors)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	// A delegated reader reads the events on their repositories only.
	filter.Repositories, filter.Own = auth.ManagedScope(rq.id, auth.ReadAudit), rq.id.Name
	filter.Limit = auditPerPage
	if b := q.Get("before"); b != "" {
		fmt.Sscan(b, &filter.Before)
	}
	status := http.StatusOK
	if len(d.Errors) > 0 {
		status = http.StatusUnprocessableEntity
	} else {
		if d.Events, err = h.audit.List(r.Context(), filter); err != nil {
			h.fail(w, r, rq, err)
			return
		}
		if len(d.Events) == auditPerPage {
			next := f.query()
			next.Set("before", fmt.Sprint(d.Events[len(d.Events)-1].ID))
			d.Older = template.URL("/audit?" + next.Encode())
		}
	}
	d.Query = template.URL(f.query().Encode())
	h.render(w, r, rq, status, "audit.html", view{Title: "Audit log", Nav: "audit", Data: d})
}

// auditExport downloads the filtered audit log as CSV or JSON, every
// matching event (up to audit.MaxExport), as GET /api/v1/audit?format=
// does.
func (h *Handler) auditExport(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ReadAudit) || h.audit == nil {
		h.forbidden(w, r, rq, "read the audit log")
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format != "csv" && format != "json" {
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", fmt.Sprintf("Unknown export format %q: use csv or json.", format))
		return
	}
	f := auditFilter{Identity: strings.TrimSpace(q.Get("identity")), Repository: strings.TrimSpace(q.Get("repository")),
		Kind: q.Get("kind"), Result: q.Get("result"), Since: q.Get("since"), Until: q.Get("until")}
	errs := map[string]string{}
	filter, err := h.auditFilter(f, errs)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	filter.Repositories, filter.Own = auth.ManagedScope(rq.id, auth.ReadAudit), rq.id.Name
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, m := range errs {
			msgs = append(msgs, m)
		}
		h.renderError(w, r, rq, http.StatusUnprocessableEntity, "Nothing to export", strings.Join(msgs, " "))
		return
	}
	events, err := h.audit.ListAll(r.Context(), filter, 0)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	if err := audit.Export(w, format, events); err != nil {
		h.log.Error("audit export", "err", err)
	}
}

// auditFilter checks the audit page's filter fields, putting messages
// for people into errs by field.
func (h *Handler) auditFilter(f auditFilter, errs map[string]string) (audit.Filter, error) {
	filter := audit.Filter{Identity: f.Identity, Repository: f.Repository, Kind: f.Kind}
	var err error
	if filter.Result, err = audit.ParseResult(f.Result); err != nil {
		errs["result"] = capitalize(err.Error()) + "."
	}
	if filter.Since, err = parseLocal(f.Since); err != nil {
		errs["since"] = capitalize(err.Error()) + "."
	}
	if filter.Until, err = parseLocal(f.Until); err != nil {
		errs["until"] = capitalize(err.Error()) + "."
	}
	if len(errs) == 0 && !filter.Since.IsZero() && !filter.Until.IsZero() && filter.Since.After(filter.Until) {
		errs["until"] = fmt.Sprintf("The until date (%s) is before the from date (%s): swap them, or clear one.", f.Until, f.Since)
	}
	return filter, nil
}
