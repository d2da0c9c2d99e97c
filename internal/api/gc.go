package api

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/gc"
)

// GCRequest asks for a garbage collection.
type GCRequest struct {
	// DryRun reports what would be removed without removing it.
	DryRun bool `json:"dryRun"`
	// GracePeriod spares blobs younger than this Go duration ("1h" by default).
	GracePeriod string `json:"gracePeriod,omitempty"`
}

// Collector runs a garbage collection.
type Collector func(ctx context.Context, o gc.Options) (gc.Report, error)

// collectGarbage removes blob links no manifest needs and blob content no
// repository links.
func (h *Handler) collectGarbage(c *call) error {
	if !auth.CanManage(c.id, auth.ManageRegistry) {
		return forbidden("%s may not collect garbage: it needs the contributor or owner role", c.id)
	}
	if h.gc == nil {
		return notFound("garbage collection is not available on this server")
	}
	var req GCRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	o := gc.Options{DryRun: req.DryRun}
	if req.GracePeriod != "" {
		d, err := time.ParseDuration(req.GracePeriod)
		if err != nil || d < time.Minute {
			return badRequest("invalid gracePeriod %q: use a duration of at least 1m, such as \"1h\"", req.GracePeriod)
		}
		o.Grace = d
	}
	rep, err := h.gc(c.ctx(), o)
	if err != nil {
		return err
	}
	if !req.DryRun {
		h.record(c, audit.Event{Kind: audit.KindDelete, Target: "garbage collection",
			Reason: fmt.Sprintf("removed %d blob links and %d blobs, %d bytes", len(rep.UnlinkedBlobs), len(rep.DeletedBlobs), rep.FreedBytes)})
	}
	return c.ok(rep)
}
