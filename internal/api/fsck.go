package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/fsck"
)

// FsckRequest asks for a consistency check of the content store.
type FsckRequest struct {
	// Repair moves damaged blob files into quarantine, so that the next
	// push of each restores it.
	Repair bool `json:"repair"`
}

// Checker runs a consistency check.
type Checker func(ctx context.Context, o fsck.Options) (fsck.Report, error)

// checkContent verifies every blob against its digest and every manifest's
// references. Like garbage collection it needs the registry-management
// permission: a repair moves content aside, and is audited.
func (h *Handler) checkContent(c *call) error {
	if !auth.CanManage(c.id, auth.ManageRegistry) {
		return forbidden("%s may not check the content store: it needs the contributor or owner role", c.id)
	}
	if h.fsck == nil {
		return notFound("checking the content store is not available on this server")
	}
	var req FsckRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	rep, err := h.fsck(c.ctx(), fsck.Options{Repair: req.Repair})
	if err != nil {
		return err
	}
	var moved []string
	for _, b := range rep.DamagedBlobs {
		if b.Quarantined {
			moved = append(moved, b.Digest.String())
		}
	}
	if len(moved) > 0 {
		h.record(c, audit.Event{Kind: audit.KindDelete, Target: "content check",
			Reason: fmt.Sprintf("quarantined %d damaged blobs: %s", len(moved), strings.Join(moved, ", "))})
	}
	return c.ok(rep)
}
