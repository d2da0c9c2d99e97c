package ui

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/identity"
)

// request is a signed-in user's request: the session and the user as the
// identity service knows them now (a role changed or a user disabled since
// sign-in counts from the next request).
type request struct {
	sessID string
	sess   *session
	user   identity.User
	id     auth.Identity
	flash  flash
}

// can reports whether the user holds p on some pattern: the pages for p
// open to them, and the identity service narrows what they see and change
// to their patterns.
func (rq *request) can(p auth.Permission) bool {
	return rq != nil && auth.CanManageSome(rq.id, p)
}

// canAll reports whether the user holds p registry-wide, on "*".
func (rq *request) canAll(p auth.Permission) bool {
	return rq != nil && auth.CanManage(rq.id, p)
}

// perms are the management rights the layout and pages show forms for.
type perms struct {
	View     bool // scope maps, tokens, access keys (read)
	Tokens   bool // manage tokens and scope maps
	Users    bool // manage users (registry-wide)
	Assign   bool // create and delete role assignments (on some pattern)
	Registry bool // manage the admin user
	Audit    bool // read the audit log
}

// view is what every template gets.
type view struct {
	Title    string
	Nav      string // the active navigation entry
	User     *identity.User
	CSRF     string
	Flash    flash
	Error    string // a page-level error, next to the form that caused it
	Registry string
	Can      perms
	Version  string
	Data     any
}

// pageTemplate is one page: the layout, the shared partials and the page's
// own "content".
type pageTemplate struct {
	t *template.Template
}

func mustParsePages() map[string]*pageTemplate {
	entries, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		panic(err)
	}
	pages := map[string]*pageTemplate{}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		t := template.New(name).Funcs(funcs)
		t = template.Must(t.ParseFS(templateFS, "templates/layout.html", "templates/partials.html", "templates/"+name))
		pages[name] = &pageTemplate{t: t}
	}
	return pages
}

// render writes page with data. The page is rendered into a buffer first,
// so that a template error yields a clean error page, not half of one.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, rq *request, status int, page string, v view) {
	pt := h.pages[page]
	if pt == nil {
		panic("ui: no template " + page)
	}
	v.Registry = h.ids.RegistryName()
	v.Version = h.version
	if rq != nil {
		u := rq.user
		v.User = &u
		v.CSRF = rq.sess.csrf
		if v.Flash.Msg == "" {
			v.Flash = rq.flash
		}
		v.Can = perms{
			View:     rq.can(auth.ViewManagement),
			Tokens:   rq.can(auth.ManageTokens),
			Users:    rq.canAll(auth.ManageUsers),
			Assign:   rq.can(auth.ManageUsers),
			Registry: rq.can(auth.ManageRegistry),
			Audit:    rq.can(auth.ReadAudit) && h.audit != nil,
		}
	}
	var buf bytes.Buffer
	if err := pt.t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show who may do what, and some show a password once: none may
	// be stored by the browser or a proxy.
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorData struct {
	Message string
	Back    string
}

// renderError shows an error page. rq may be nil (signed out).
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, rq *request, status int, title, msg string) {
	back := ""
	if rq != nil {
		back = "/repositories"
	}
	h.render(w, r, rq, status, "error.html", view{Title: title, Data: errorData{Message: msg, Back: back}})
}

// fail shows err from the service layer as an error page, with the status
// that its kind calls for.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	status := statusOf(err)
	title := http.StatusText(status)
	switch status {
	case http.StatusForbidden:
		title = "Not allowed"
	case http.StatusNotFound:
		title = "Not found"
	}
	h.renderError(w, r, rq, status, title, h.message(err))
}

// statusOf maps the service layer's error kinds to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, identity.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, identity.ErrConflict), errors.Is(err, identity.ErrInUse):
		return http.StatusConflict
	case errors.Is(err, identity.ErrInvalid):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// message is what a person is told about err: the service layer's message
// for its own errors, and no internals for anything else (the log has them).
func (h *Handler) message(err error) string {
	var e *identity.Error
	if errors.As(err, &e) {
		return e.Msg
	}
	h.log.Error("portal request failed", "err", err)
	return "Something went wrong on the server and nothing was changed. The server log has the details."
}

// forbidden refuses a change that the user's role does not allow.
func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request, rq *request, what string) {
	h.renderError(w, r, rq, http.StatusForbidden, "Not allowed",
		fmt.Sprintf("Your role (%s) cannot %s. Ask an owner for a role that can; nothing was changed.", roleSummary(rq.user), what))
}

// redirect answers a successful POST with 303 See Other and a message for
// the next page.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, rq *request, to, msg string) {
	if msg != "" {
		h.sessions.setFlash(rq.sess, "ok", msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// currentRequest finds the signed-in user of r.
func (h *Handler) currentRequest(w http.ResponseWriter, r *http.Request) (*request, error) {
	if err := h.ids.Current(); err != nil {
		return nil, err
	}
	id := cookieValue(r, h.sessionCookieName())
	sess, err := h.sessions.get(id)
	if err != nil {
		return nil, err
	}
	self := auth.Identity{Kind: auth.KindUser, Name: sess.user}
	u, err := h.ids.GetUser(self, sess.user)
	gen, _ := h.ids.UserGeneration(sess.user)
	if err != nil || u.Status != identity.StatusEnabled || gen != h.sessions.generation(sess) {
		// Deleted, disabled or given a new password (by any face) since sign-in.
		h.sessions.delete(id)
		return nil, errSessionExpired
	}
	// The identity with the user's role assignments as they are now.
	self, ok := h.ids.UserIdentity(sess.user)
	if !ok {
		h.sessions.delete(id)
		return nil, errSessionExpired
	}
	return &request{sessID: id, sess: sess, user: u, id: self}, nil
}

// signinURL is where an unauthenticated request goes: the sign-in page,
// back to next afterwards.
func signinURL(next string, expired bool) string {
	q := url.Values{}
	if next != "" && next != "/" && next != "/repositories" && next != "/overview" {
		q.Set("next", next)
	}
	if expired {
		q.Set("expired", "1")
	}
	if len(q) == 0 {
		return "/signin"
	}
	return "/signin?" + q.Encode()
}

// page wraps a GET handler that needs a signed-in user.
func (h *Handler) page(fn func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rq, err := h.currentRequest(w, r)
		if errors.Is(err, identity.ErrUnavailable) {
			h.unavailable(w, r)
			return
		}
		if err != nil {
			http.Redirect(w, r, signinURL(r.URL.RequestURI(), errors.Is(err, errSessionExpired)), http.StatusSeeOther)
			return
		}
		rq.flash = h.sessions.popFlash(rq.sess)
		fn(w, r, rq)
	}
}

// maxFormSize bounds a form: a scope map with 500 patterns fits.
const maxFormSize = 512 << 10

// action wraps a POST handler: it needs a signed-in user, a same-origin
// request and the session's CSRF token. Anything else is refused before
// the handler runs, so nothing changes.
func (h *Handler) action(fn func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.checkOrigin(r); err != nil {
			h.renderError(w, r, nil, http.StatusForbidden, "Request refused",
				"This request came from another site ("+err.Error()+"), so it was refused and nothing was changed.")
			return
		}
		rq, err := h.currentRequest(w, r)
		if errors.Is(err, identity.ErrUnavailable) {
			h.unavailable(w, r)
			return
		}
		if err != nil {
			// Nothing is done: the user signs in again and repeats the change.
			http.Redirect(w, r, signinURL(localReferer(r), true), http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
		if err := r.ParseForm(); err != nil {
			h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
			return
		}
		if !tokenEqual(r.PostForm.Get("csrf"), rq.sess.csrf) {
			h.renderError(w, r, rq, http.StatusForbidden, "Form expired",
				"The form's security token is missing or out of date (the page may have been open across a sign-out). Nothing was changed: go back, reload the page and submit it again.")
			return
		}
		fn(w, r, rq)
	}
}

// checkOrigin refuses cross-origin POSTs: by Sec-Fetch-Site, or by Origin
// against the request's host, or against the public URL for a proxy that
// rewrites the host.
func (h *Handler) checkOrigin(r *http.Request) error {
	err := h.cop.Check(r)
	if err == nil {
		return nil
	}
	if origin := r.Header.Get("Origin"); origin != "" && r.Header.Get("Sec-Fetch-Site") == "" &&
		strings.EqualFold(origin, strings.TrimSuffix(h.publicURL(r), "/")) {
		return nil
	}
	if o := r.Header.Get("Origin"); o != "" {
		return fmt.Errorf("origin %s", o)
	}
	return fmt.Errorf("Sec-Fetch-Site: %s", r.Header.Get("Sec-Fetch-Site"))
}

// localReferer is the path of the page a form was sent from, if it was
// one of the portal's.
func localReferer(r *http.Request) string {
	u, err := url.Parse(r.Referer())
	if err != nil || u.Host != r.Host {
		return ""
	}
	return safeNext(u.RequestURI())
}

// safeNext keeps a post-sign-in destination on the portal: a path, not a
// URL of another site ("//evil.example", "/\evil.example").
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') ||
		strings.HasPrefix(next, "/signin") || strings.HasPrefix(next, "/signout") {
		return ""
	}
	// Browsers drop tabs and newlines inside URLs, so "/\t/evil" would
	// become "//evil": no control characters at all.
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f {
			return ""
		}
	}
	return next
}

// Template functions.
var funcs = template.FuncMap{
	"fmtTime":     fmtTime,
	"fmtTimePtr":  fmtTimePtr,
	"isoTime":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"fmtDate":     func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"fmtClock":    func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"shortDigest": shortDigest,
	"size":        func(n int64) string { return config.ByteSize(n).Human() },
	"mediaType":   mediaTypeLabel,
	"join":        strings.Join,
	"actionNames": func() []string { return auth.AllActions.ScopeMapNames() },
	"actionShort": actionShort,
	"hasAction": func(a auth.Actions, name string) bool {
		b, err := auth.ParseAction(name)
		return err == nil && a.Has(b)
	},
	"roles": func() []auth.Role { return auth.Roles() },
	// wideRoles are the registry-wide roles a user may hold, none among them.
	"wideRoles": func() []string {
		out := []string{}
		for _, r := range auth.Roles() {
			out = append(out, string(r))
		}
		return append(out, identity.RoleNone)
	},
	"add": func(a, b int) int { return a + b },
	// writeNoRead flags a scope-map row that cannot push: clients read
	// (HEAD the blobs and manifests) before they write.
	"writeNoRead": func(a auth.Actions) bool { return a.Has(auth.ContentWrite) && !a.Has(auth.ContentRead) },
	"roleRights":  roleRights,
	"list":        func(s ...string) []string { return s },
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	// No-break spaces: a timestamp never breaks across lines.
	return t.UTC().Format("2006-01-02\u00a015:04\u00a0UTC")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return fmtTime(*t)
}

// shortDigest shortens "sha256:<64 hex>" to "sha256:<12 hex>", for
// digests as strings or as digest.Digest.
func shortDigest(d any) string {
	s := fmt.Sprint(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

// actionShort is the label of a scope-map action in table headers.
func actionShort(name string) string {
	switch name {
	case "content/read":
		return "Read (pull)"
	case "content/write":
		return "Write (push)"
	case "content/delete":
		return "Delete"
	case "metadata/read":
		return "List (metadata read)"
	case "metadata/write":
		return "Metadata write"
	case "content/overwrite":
		return "Overwrite tags"
	}
	return name
}

// mediaTypeLabel names the common manifest media types.
func mediaTypeLabel(mt string) string {
	switch mt {
	case "application/vnd.oci.image.manifest.v1+json":
		return "OCI image"
	case "application/vnd.oci.image.index.v1+json":
		return "OCI index"
	case "application/vnd.docker.distribution.manifest.v2+json":
		return "Docker image"
	case "application/vnd.docker.distribution.manifest.list.v2+json":
		return "Docker manifest list"
	case "application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.docker.distribution.manifest.v1+json":
		return "Docker schema 1"
	}
	return mt
}

// unavailable answers 503 when sessions cannot be checked because this
// node cannot confirm that its identities are current.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	h.renderError(w, r, nil, http.StatusServiceUnavailable, "Temporarily unavailable",
		"The registry cannot check sign-ins right now (its database is unreachable). Nothing was changed: try again in a moment.")
}
