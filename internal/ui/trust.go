package ui

import (
	"encoding/pem"
	"errors"
	"net/http"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/trust"
)

// Signature policies (content trust): a list, a form to create one from
// pasted PEM keys and certificates, and per policy a mode switch and
// delete. The trust service checks the rights again.

type trustData struct {
	Policies []trust.Policy
	Form     trustForm
}

type trustForm struct {
	Name, Repository, Require, Mode, Keys, Certificates, Identities string
}

func (h *Handler) trustPage(w http.ResponseWriter, r *http.Request, rq *request) {
	h.renderTrust(w, r, rq, http.StatusOK, trustForm{Require: "any", Mode: "enforce"}, "")
}

func (h *Handler) renderTrust(w http.ResponseWriter, r *http.Request, rq *request, status int, f trustForm, msg string) {
	if h.trust == nil {
		h.notFound(w, r)
		return
	}
	ps, err := h.trust.List(r.Context(), rq.id)
	if err != nil {
		h.trustFail(w, r, rq, err)
		return
	}
	h.render(w, r, rq, status, "trust.html", view{Title: "Signature policies", Nav: "trust", Error: msg, Data: trustData{Policies: ps, Form: f}})
}

func (h *Handler) trustFail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	switch {
	case errors.Is(err, trust.ErrForbidden):
		h.forbidden(w, r, rq, "read or change signature policies")
	case errors.Is(err, trust.ErrNotFound):
		h.renderError(w, r, rq, http.StatusNotFound, "Not found", err.Error())
	default:
		h.fail(w, r, rq, err)
	}
}

// splitPEM splits pasted text into its PEM blocks, one key each; text
// with no block is passed on whole, for the service to refuse with its
// reason.
func splitPEM(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		out = append(out, string(pem.EncodeToMemory(b)))
	}
	if len(out) == 0 {
		return []string{s}
	}
	return out
}

// certificates keeps pasted certificates as one entry (a chain may be
// pasted whole).
func certificates(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return []string{s}
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (h *Handler) createTrustPolicy(w http.ResponseWriter, r *http.Request, rq *request) {
	if h.trust == nil {
		h.notFound(w, r)
		return
	}
	if !rq.can(auth.ManageRegistry) {
		h.forbidden(w, r, rq, "change signature policies")
		return
	}
	pf := r.PostForm
	f := trustForm{Name: strings.TrimSpace(pf.Get("name")), Repository: strings.TrimSpace(pf.Get("repository")), Require: pf.Get("require"), Mode: pf.Get("mode"),
		Keys: pf.Get("keys"), Certificates: pf.Get("certificates"), Identities: pf.Get("identities")}
	p := trust.Policy{Name: f.Name, Repository: f.Repository, Require: trust.Require(f.Require), Mode: trust.Mode(f.Mode),
		Keys: splitPEM(f.Keys), Certificates: certificates(f.Certificates), TrustedIdentities: lines(f.Identities)}
	if _, err := h.trust.Create(r.Context(), rq.id, p); err != nil {
		if errors.Is(err, trust.ErrInvalid) || errors.Is(err, trust.ErrConflict) {
			h.renderTrust(w, r, rq, http.StatusUnprocessableEntity, f, err.Error())
			return
		}
		h.trustFail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/trust", "Signature policy "+p.Name+" created.")
}

func (h *Handler) trustPolicyAction(w http.ResponseWriter, r *http.Request, rq *request) {
	if h.trust == nil {
		h.notFound(w, r)
		return
	}
	if !rq.can(auth.ManageRegistry) {
		h.forbidden(w, r, rq, "change signature policies")
		return
	}
	name := r.PathValue("name")
	switch op := r.PostForm.Get("op"); op {
	case "delete":
		if err := h.trust.Delete(r.Context(), rq.id, name); err != nil {
			h.trustFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/trust", "Signature policy "+name+" deleted.")
	case "enforce", "audit":
		p, err := h.trust.Get(r.Context(), rq.id, name)
		if err != nil {
			h.trustFail(w, r, rq, err)
			return
		}
		p.Mode = trust.Mode(op)
		if _, err := h.trust.Update(r.Context(), rq.id, p); err != nil {
			h.trustFail(w, r, rq, err)
			return
		}
		h.redirect(w, r, rq, "/trust", "Signature policy "+name+" now in "+op+" mode.")
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", "Unknown operation.")
	}
}
