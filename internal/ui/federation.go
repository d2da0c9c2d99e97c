package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
)

func (h *Handler) federationRoutes() {
	h.mux.HandleFunc("POST /tokens/{name}/federated-credentials", h.action(h.createFederatedAction))
	h.mux.HandleFunc("POST /tokens/{name}/federated-credentials/{credential}/delete", h.action(h.deleteFederatedAction))
}

// federatedSection is the federated-credentials section of a token's page.
type federatedSection struct {
	List []federatedRow
	// The add form's values, kept after an error.
	Name, Issuer, Subject, Audience, Claims, JWKS string
	// DefaultAudience is what an empty audience means.
	DefaultAudience string
	Host            string
}

type federatedRow struct {
	identity.FederatedCredential
	ClaimList []string
	Keys      string
}

func (h *Handler) federatedView(r *http.Request, rq *request, t identity.Token) *federatedSection {
	list, err := h.ids.ListFederatedCredentials(rq.id, t.Name)
	if err != nil {
		h.log.Warn("portal: could not read a token's federated credentials", "token", t.Name, "err", err)
		return nil
	}
	v := &federatedSection{DefaultAudience: h.ids.RegistryName(), Host: h.registryHost(r)}
	for _, fc := range list {
		keys := "OIDC discovery"
		if len(fc.JWKS) > 0 {
			keys = "JWKS given"
		}
		v.List = append(v.List, federatedRow{FederatedCredential: fc, ClaimList: federation.FormatClaims(fc.Claims), Keys: keys})
	}
	if r.Method == http.MethodPost && r.PostForm.Has("fc-issuer") {
		f := r.PostForm
		v.Name, v.Issuer, v.Subject, v.Audience, v.Claims, v.JWKS = f.Get("fc-name"), f.Get("fc-issuer"), f.Get("fc-subject"), f.Get("fc-audience"), f.Get("fc-claims"), f.Get("fc-jwks")
	}
	return v
}

func (h *Handler) createFederatedAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name := r.PathValue("name")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change tokens")
		return
	}
	f := r.PostForm
	refuse := func(msg string) {
		h.renderToken(w, r, rq, http.StatusUnprocessableEntity, name, nil, map[string]string{"federated": msg}, "The federated credential was not added: see below.")
	}
	claims, err := federation.ParseClaimConditions(strings.FieldsFunc(f.Get("fc-claims"), func(r rune) bool { return r == '\n' || r == '\r' }))
	if err != nil {
		refuse(err.Error())
		return
	}
	spec := identity.FederatedCredential{Name: strings.TrimSpace(f.Get("fc-name")), Issuer: strings.TrimSpace(f.Get("fc-issuer")),
		Subject: strings.TrimSpace(f.Get("fc-subject")), Audience: strings.TrimSpace(f.Get("fc-audience")), Claims: claims}
	if jwks := strings.TrimSpace(f.Get("fc-jwks")); jwks != "" {
		if !json.Valid([]byte(jwks)) {
			refuse("The JWKS is not JSON: paste the issuer's JWK Set, as its jwks_uri serves it.")
			return
		}
		spec.JWKS = json.RawMessage(jwks)
	}
	_, err = h.ids.CreateFederatedCredential(r.Context(), rq.id, name, spec)
	if errors.Is(err, identity.ErrInvalid) || errors.Is(err, identity.ErrConflict) {
		refuse(h.message(err))
		return
	}
	if err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name)+"#federated-credentials", "Federated credential "+spec.Name+" added: workloads with such an OIDC token log in as "+name+".")
}

func (h *Handler) deleteFederatedAction(w http.ResponseWriter, r *http.Request, rq *request) {
	name, cred := r.PathValue("name"), r.PathValue("credential")
	if !rq.can(auth.ManageTokens) {
		h.forbidden(w, r, rq, "change tokens")
		return
	}
	if err := h.ids.DeleteFederatedCredential(r.Context(), rq.id, name, cred); err != nil {
		h.fail(w, r, rq, err)
		return
	}
	h.redirect(w, r, rq, "/tokens/"+url.PathEscape(name)+"#federated-credentials", "Federated credential "+cred+" deleted: its logins are refused from their next request.")
}
