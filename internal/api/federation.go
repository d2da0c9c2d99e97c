package api

import (
	"encoding/json"

	"github.com/berth-registry/berth/internal/identity"
)

// FederatedCredentialCreate is the body of PUT
// /tokens/{name}/federatedCredentials/{credential}.
type FederatedCredentialCreate struct {
	Issuer   string            `json:"issuer"`
	Subject  string            `json:"subject"`
	Audience string            `json:"audience,omitempty"`
	Claims   map[string]string `json:"claims,omitempty"`
	JWKS     json.RawMessage   `json:"jwks,omitempty"`
}

func (h *Handler) listFederatedCredentials(c *call) error {
	creds, err := h.ids.ListFederatedCredentials(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(List[identity.FederatedCredential]{Value: creds})
}

func (h *Handler) getFederatedCredential(c *call) error {
	fc, err := h.ids.GetFederatedCredential(c.id, c.r.PathValue("name"), c.r.PathValue("credential"))
	if err != nil {
		return err
	}
	return c.ok(fc)
}

func (h *Handler) createFederatedCredential(c *call) error {
	var req FederatedCredentialCreate
	if err := c.decode(&req); err != nil {
		return err
	}
	fc, err := h.ids.CreateFederatedCredential(c.ctx(), c.id, c.r.PathValue("name"), identity.FederatedCredential{
		Name: c.r.PathValue("credential"), Issuer: req.Issuer, Subject: req.Subject, Audience: req.Audience, Claims: req.Claims, JWKS: req.JWKS})
	if err != nil {
		return err
	}
	return c.created(fc)
}

func (h *Handler) deleteFederatedCredential(c *call) error {
	if err := h.ids.DeleteFederatedCredential(c.ctx(), c.id, c.r.PathValue("name"), c.r.PathValue("credential")); err != nil {
		return err
	}
	return c.noContent()
}
