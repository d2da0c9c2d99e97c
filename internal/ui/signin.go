package ui

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/repository"
)

type signinData struct {
	Username string
	Next     string
	Notice   string
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, err := h.currentRequest(w, r); err == nil {
		if next == "" {
			next = "/overview"
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d := signinData{Next: next}
	switch {
	case r.URL.Query().Get("expired") == "1":
		d.Notice = "Your session has ended. Sign in again to continue; nothing you had not saved was changed."
	case r.URL.Query().Get("signed-out") == "1":
		d.Notice = "You have signed out."
	}
	h.renderSignin(w, r, http.StatusOK, d, "")
}

// renderSignin shows the sign-in form with a fresh pre-session CSRF token,
// kept in a cookie until sign-in (double submit): a sign-in form on another
// site cannot sign a victim in to the attacker's account.
func (h *Handler) renderSignin(w http.ResponseWriter, r *http.Request, status int, d signinData, errMsg string) {
	tok := randomString(32)
	h.setCookie(w, h.signinCookieName(), tok, 3600)
	h.render(w, r, nil, status, "signin.html", view{Title: "Sign in", Nav: "signin", CSRF: tok, Error: errMsg, Data: d})
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.renderError(w, r, nil, http.StatusForbidden, "Request refused",
			"This sign-in came from another site ("+err.Error()+"), so it was refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("username"))
	pass := r.PostForm.Get("password")
	d := signinData{Username: user, Next: safeNext(r.PostForm.Get("next"))}
	if !tokenEqual(r.PostForm.Get("csrf"), cookieValue(r, h.signinCookieName())) {
		h.renderSignin(w, r, http.StatusForbidden, d,
			"The sign-in form expired or your browser did not send its cookie. Make sure cookies are allowed for this site and try again.")
		return
	}
	if user == "" || pass == "" {
		h.renderSignin(w, r, http.StatusUnprocessableEntity, d, "Enter your username and password.")
		return
	}
	if len(user) > auth.MaxUsernameLength {
		h.renderSignin(w, r, http.StatusUnprocessableEntity, d, "Wrong username or password.")
		return
	}
	if err := h.ids.Current(); err != nil {
		h.unavailable(w, r)
		return
	}
	ip := h.clientIP(r)
	start := h.now()
	var login identity.Login
	err := h.limiter.AttemptVouched(user, ip, func() bool { return h.ids.Remembered(user, pass) }, func() (err error) {
		login, err = h.ids.Authenticate(user, pass)
		return err
	})
	var limited *auth.LimitedError
	if errors.As(err, &limited) {
		h.recordLogin(r, user, "", audit.ResultFailure, "portal: rate limited", start)
		secs := int((limited.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		h.renderSignin(w, r, http.StatusTooManyRequests, d,
			fmt.Sprintf("Too many failed sign-ins. Wait %d seconds and try again.", secs))
		return
	}
	if err != nil {
		reason := err.Error()
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		h.recordLogin(r, user, "", audit.ResultFailure, "portal: "+reason, start)
		msg := "Wrong username or password."
		if reason == "user disabled" { // only reached with the right password
			msg = "This user is disabled. Ask an owner to enable it."
		}
		h.renderSignin(w, r, http.StatusUnauthorized, d, msg)
		return
	}
	if login.Identity.Kind != auth.KindUser {
		h.recordLogin(r, user, login.Identity.Kind.String(), audit.ResultFailure, "portal: not a user", start)
		what := "a token"
		if login.Identity.Kind == auth.KindAdmin {
			what = "the admin user"
		}
		h.renderSignin(w, r, http.StatusForbidden, d,
			fmt.Sprintf("%q is %s: tokens and the admin user are for docker login and other registry clients. Sign in to the portal with a user account.", user, what))
		return
	}
	h.recordLogin(r, user, "user", audit.ResultSuccess, "portal sign-in", start)
	// A new session ID on every sign-in: an ID planted before sign-in is
	// worth nothing after it.
	if old := cookieValue(r, h.sessionCookieName()); old != "" {
		h.sessions.delete(old)
	}
	id, _, err := h.sessions.create(login.Identity.Name, login.Subject.Generation)
	if err != nil {
		h.log.Warn("portal session: begin", "err", err)
		h.unavailable(w, r)
		return
	}
	h.setCookie(w, h.sessionCookieName(), id, int(h.sessions.ttl/time.Second))
	h.setCookie(w, h.signinCookieName(), "", -1)
	next := d.Next
	if next == "" {
		next = "/overview"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) recordLogin(r *http.Request, user, kind, result, reason string, start time.Time) {
	if h.audit == nil {
		return
	}
	h.audit.Record(audit.Event{Kind: audit.KindLogin, Result: result, Identity: user, IdentityKind: kind,
		Reason: reason, CallerIP: h.clientIP(r), UserAgent: r.UserAgent(), DurationMs: h.now().Sub(start).Milliseconds()})
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request, rq *request) {
	h.sessions.delete(rq.sessID)
	h.setCookie(w, h.sessionCookieName(), "", -1)
	http.Redirect(w, r, "/signin?signed-out=1", http.StatusSeeOther)
}

type accountData struct {
	Rights []string
	Errors map[string]string
}

// roleRights says in words what a role may do, for the account page, from
// the tables the decisions are made with: auth's operation table for
// repositories and the role's management rights.
func roleRights(role string) []string {
	r := auth.Role(role)
	var out []string
	if ops := repository.OperationsAllowedBy(r.Actions()); len(ops) > 0 {
		does := make([]string, len(ops))
		for i, op := range ops {
			does[i] = op.Describe()
		}
		out = append(out, "On every repository: "+strings.Join(does, ", ")+".")
	}
	for _, d := range r.Permissions().Describe() {
		out = append(out, strings.ToUpper(d[:1])+d[1:]+".")
	}
	return out
}

func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request, rq *request) {
	h.render(w, r, rq, http.StatusOK, "account.html", view{Title: "Your account", Nav: "account",
		Data: accountData{Rights: roleRights(rq.user.Role)}})
}

// accountPassword changes the signed-in user's own password. The current
// password is asked for, so that a session left open is not enough to take
// the account over; other sessions of the user end.
func (h *Handler) accountPassword(w http.ResponseWriter, r *http.Request, rq *request) {
	cur, pw, pw2 := r.PostForm.Get("current"), r.PostForm.Get("password"), r.PostForm.Get("password2")
	errs := map[string]string{}
	switch {
	case pw == "":
		errs["password"] = "Enter a new password."
	case pw != pw2:
		errs["password2"] = "The two new passwords differ: type the same password twice."
	}
	if cur == "" {
		errs["current"] = "Enter your current password."
	}
	show := func(status int, msg string) {
		h.render(w, r, rq, status, "account.html", view{Title: "Your account", Nav: "account", Error: msg,
			Data: accountData{Rights: roleRights(rq.user.Role), Errors: errs}})
	}
	if len(errs) > 0 {
		show(http.StatusUnprocessableEntity, "The password was not changed: see below.")
		return
	}
	// The current password is checked as a login is: limited and audited.
	ip := h.clientIP(r)
	start := h.now()
	err := h.limiter.Attempt(rq.user.Name, ip, func() error {
		_, err := h.ids.Authenticate(rq.user.Name, cur)
		return err
	})
	var limited *auth.LimitedError
	if errors.As(err, &limited) {
		h.recordLogin(r, rq.user.Name, "", audit.ResultFailure, "portal: current password: rate limited", start)
		show(http.StatusTooManyRequests, fmt.Sprintf("Too many wrong passwords. Wait %d seconds and try again.", int((limited.RetryAfter+time.Second-1)/time.Second)))
		return
	}
	if err != nil {
		reason := err.Error()
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		h.recordLogin(r, rq.user.Name, "", audit.ResultFailure, "portal: current password: "+reason, start)
		errs["current"] = "This is not your current password."
		show(http.StatusUnprocessableEntity, "The password was not changed: see below.")
		return
	}
	h.recordLogin(r, rq.user.Name, "user", audit.ResultSuccess, "portal: current password", start)
	if _, err := h.ids.UpdateUser(r.Context(), rq.id, rq.user.Name, identity.UserUpdate{Password: &pw, Current: &cur}); err != nil {
		if statusOf(err) == http.StatusUnprocessableEntity {
			errs["password"] = h.message(err)
			show(http.StatusUnprocessableEntity, "The password was not changed: see below.")
			return
		}
		h.fail(w, r, rq, err)
		return
	}
	h.sessions.deleteUser(rq.user.Name, rq.sess)
	if g, ok := h.ids.UserGeneration(rq.user.Name); ok {
		h.sessions.setGeneration(rq.sess, g)
	}
	h.redirect(w, r, rq, "/account", "Your password was changed. Your other sessions were signed out.")
}
