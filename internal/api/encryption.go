package api

import (
	"context"
	"fmt"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/encryption"
)

// Encryption is the registry's encryption at rest, as the API shows it.
type Encryption interface {
	Status(ctx context.Context) (encryption.Status, error)
	// RotateKey records a new key version (version of the key provider if
	// not 0, else one the provider makes) and starts rewrapping every data
	// key with it; it returns the status once the version is recorded.
	RotateKey(ctx context.Context, version int) (encryption.Status, error)
}

// RotateKeyRequest asks for a key rotation.
type RotateKeyRequest struct {
	// Version is a version the key provider already holds (added to every
	// node's key file, or made in the HSM); 0 has the provider make one.
	Version int `json:"version,omitempty"`
}

// encryptionStatus shows the key, its versions and the background work.
func (h *Handler) encryptionStatus(c *call) error {
	if !auth.CanManage(c.id, auth.ViewManagement) {
		return forbidden("%s may not see the encryption status: it needs the reader, contributor or owner role", c.id)
	}
	if h.enc == nil {
		return notFound("encryption is not available on this server")
	}
	st, err := h.enc.Status(c.ctx())
	if err != nil {
		return err
	}
	return c.ok(st)
}

// rotateEncryptionKey starts a key rotation.
func (h *Handler) rotateEncryptionKey(c *call) error {
	if !auth.CanManage(c.id, auth.ManageRegistry) {
		return forbidden("%s may not rotate the encryption key: it needs the contributor or owner role", c.id)
	}
	if h.enc == nil {
		return notFound("encryption is not available on this server")
	}
	var req RotateKeyRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Version < 0 {
		return badRequest("invalid version %d: give a positive version, or none", req.Version)
	}
	st, err := h.enc.RotateKey(c.ctx(), req.Version)
	if err != nil {
		return err
	}
	h.record(c, auditKeyRotation(st))
	return c.ok(st)
}

func auditKeyRotation(st encryption.Status) audit.Event {
	return audit.Event{Kind: audit.KindPermission, Target: "encryption key " + st.KeyID,
		Reason: fmt.Sprintf("rotated to version %d; %d data keys to rewrap", st.Version, st.Rewrapping)}
}
