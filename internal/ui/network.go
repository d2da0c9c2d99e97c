package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
)

// NetworkRules is what the portal needs of the network rules
// (netrule.Service).
type NetworkRules interface {
	Settings(actor auth.Identity) (netrule.Settings, error)
	AddRules(ctx context.Context, actor auth.Identity, values []string) (netrule.Settings, error)
	RemoveRules(ctx context.Context, actor auth.Identity, values []string) (netrule.Settings, error)
	SetDefaultAction(ctx context.Context, actor auth.Identity, a netrule.Action) (netrule.Settings, error)
	TokenAddresses(actor auth.Identity, token string) ([]string, error)
	SetTokenAddresses(ctx context.Context, actor auth.Identity, token string, values []string) ([]string, error)
}

func (h *Handler) networkRoutes() {
	if h.network == nil {
		return
	}
	h.mux.HandleFunc("GET /network", h.page(h.networkPage))
	h.mux.HandleFunc("POST /network", h.action(h.networkAction))
	h.mux.HandleFunc("POST /tokens/{name}/allowed-addresses", h.action(h.tokenAddressesAction))
}

type networkData struct {
	Settings netrule.Settings
	Add      string // the form's rules, kept after an error
	Errors   map[string]string
}

func (h *Handler) networkPage(w http.ResponseWriter, r *http.Request, rq *request) {
	h.renderNetwork(w, r, rq, http.StatusOK, "", nil, "")
}

func (h *Handler) renderNetwork(w http.ResponseWriter, r *http.Request, rq *request, status int, add string, errs map[string]string, msg string) {
	s, err := h.network.Settings(rq.id)
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.render(w, r, rq, status, "network.html", view{Title: "Network", Nav: "network", Error: msg,
		Data: networkData{Settings: s, Add: add, Errors: errs}})
}

// splitAddresses reads one address or range per line (or separated by
// commas or spaces).
func splitAddresses(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (h *Handler) networkAction(w http.ResponseWriter, r *http.Request, rq *request) {
	if !rq.can(auth.ManageRegistry) {
		h.forbidden(w, r, rq, "change the network rules")
		return
	}
	ctx := r.Context()
	switch r.PostForm.Get("op") {
	case "default-action":
		a := netrule.Action(r.PostForm.Get("defaultAction"))
		if _, err := h.network.SetDefaultAction(ctx, rq.id, a); err != nil {
			h.networkError(w, r, rq, err, "", "defaultAction")
			return
		}
		msg := "Default action Allow: every address may reach the registry."
		if a == netrule.Deny {
			msg = "Default action Deny: only addresses in a rule may reach the registry, from their next request on. The portal and the management API are not affected."
		}
		h.redirect(w, r, rq, "/network", msg)
	case "add":
		add := r.PostForm.Get("rules")
		rules := splitAddresses(add)
		if _, err := h.network.AddRules(ctx, rq.id, rules); err != nil {
			h.networkError(w, r, rq, err, add, "rules")
			return
		}
		h.redirect(w, r, rq, "/network", "Rules added: "+strings.Join(rules, ", ")+".")
	case "remove":
		rule := r.PostForm.Get("rule")
		if _, err := h.network.RemoveRules(ctx, rq.id, []string{rule}); err != nil {
			h.networkError(w, r, rq, err, "", "remove")
			return
		}
		h.redirect(w, r, rq, "/network", "Rule "+rule+" removed.")
	default:
		h.renderError(w, r, rq, http.StatusBadRequest, "Bad request", "Unknown operation.")
	}
}

func (h *Handler) networkError(w http.ResponseWriter, r *http.Request, rq *request, err error, add, field string) {
	if errors.Is(err, identity.ErrInvalid) || errors.Is(err, identity.ErrNotFound) {
		h.renderNetwork(w, r, rq, http.StatusUnprocessableEntity, add, map[string]string{field: h.message(err)}, "Nothing was changed: see below.")
		return
	}
	h.fail(w, r, rq, err)
}

// tokenAddresses is the allowed-addresses section of a token's page.
type tokenAddresses struct {
	List []string
	Text string // the form's value
}

// tokenAddressesView builds that section; nil when the portal keeps no
// network rules.
func (h *Handler) tokenAddressesView(r *http.Request, rq *request, t identity.Token) *tokenAddresses {
	if h.network == nil {
		return nil
	}
	a, err := h.network.TokenAddresses(rq.id, t.Name)
	if err != nil {
		h.log.Warn("portal: could not read a token's allowed addresses", "token", t.Name, "err", err)
		return nil
	}
	v := &tokenAddresses{List: a, Text: strings.Join(a, "\n")}
	if r.Method == http.MethodPost && r.PostForm.Has("addresses") {
		v.Text = r.PostForm.Get("addresses") // shown again after an error
	}
	return v
}

func (h *Handler) tokenAddressesAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change tokens")
		return
	}
	text := r.PostForm.Get("addresses")
	set, err := h.network.SetTokenAddresses(r.Context(), rq.id, name, splitAddresses(text))
	if errors.Is(err, identity.ErrInvalid) {
		h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, map[string]string{"addresses": h.message(err)}, "The allowed addresses were not changed: see below.")
		return
	}
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	msg := "Token " + name + " may be used from any address the registry allows."
	if len(set) > 0 {
		msg = "Token " + name + " may be used only from " + strings.Join(set, ", ") + ", from its next request on."
	}
	h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name), msg)
}
