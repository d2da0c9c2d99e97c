package api

import "github.com/berth-registry/berth/internal/identity"

// listSigningKeys lists the keys that verify access and refresh tokens,
// and which one signs them now (never a private key).
func (h *Handler) listSigningKeys(c *call) error {
	keys, err := h.ids.SigningKeys(c.id)
	if err != nil {
		return err
	}
	return c.ok(List[identity.SigningKey]{Value: keys})
}

// rotateSigningKey adds a signing key: every node verifies with it at once
// and signs with it after identity.KeyPublishDelay.
func (h *Handler) rotateSigningKey(c *call) error {
	k, err := h.ids.RotateSigningKey(c.ctx(), c.id)
	if err != nil {
		return err
	}
	return c.created(k)
}

// retireSigningKey deletes a key that no longer signs; tokens it signed
// stop verifying.
func (h *Handler) retireSigningKey(c *call) error {
	if err := h.ids.RetireSigningKey(c.ctx(), c.id, c.r.PathValue("kid")); err != nil {
		return err
	}
	return c.noContent()
}
