package api

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
)

// Limits of GET /api/v1/audit.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

var auditKinds = audit.Kinds

// listAudit lists audit events, newest first.
func (h *Handler) listAudit(c *call) error {
	if !auth.CanManageSome(c.id, auth.ReadAudit) {
		return forbidden("%s may not read the audit log: it needs the reader, contributor or owner role", c.id)
	}
	f, err := auditFilter(c.r)
	if err != nil {
		return err
	}
	// A delegated reader reads the events on their repositories only.
	f.Repositories, f.Own = auth.ManagedScope(c.id, auth.ReadAudit), c.id.Name
	switch format := c.r.URL.Query().Get("format"); format {
	case "":
	case "csv", "json":
		return h.exportAudit(c, f, format)
	default:
		return badRequest("invalid format=%q: use csv or json, or leave it out for a page of events", format)
	}
	out := auditEvents{Value: []audit.Event{}}
	if h.audit != nil {
		events, err := h.audit.List(c.ctx(), f)
		if err != nil {
			return err
		}
		out.Value = append(out.Value, events...)
	}
	return c.ok(out)
}

func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Identity: q.Get("identity"), Repository: q.Get("repository"), Kind: q.Get("kind"), Limit: defaultAuditLimit}
	if f.Kind != "" && !slices.Contains(auditKinds, f.Kind) {
		return f, badRequest("invalid kind=%q: use one of %v", f.Kind, auditKinds)
	}
	res, err := audit.ParseResult(q.Get("result"))
	if err != nil {
		return f, badRequest("invalid result=%q: use success (or allowed) or failure (or denied)", q.Get("result"))
	}
	f.Result = res
	for _, t := range []struct {
		param string
		dst   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.param)
		if v == "" {
			continue
		}
		ts, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, badRequest("invalid %s=%q: use an RFC 3339 time such as 2025-01-31T12:00:00Z", t.param, v)
		}
		*t.dst = ts
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Since.After(f.Until) {
		return f, badRequest("since=%s is after until=%s: nothing can match; swap them", q.Get("since"), q.Get("until"))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return f, badRequest("invalid limit=%q: use a number from 1 to %d", v, maxAuditLimit)
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, badRequest("invalid before=%q: use the id of an event", v)
		}
		f.Before = n
	}
	return f, nil
}

// exportAudit answers every event matching f (up to audit.MaxExport, or
// limit when given) as a CSV or JSON download.
func (h *Handler) exportAudit(c *call, f audit.Filter, format string) error {
	events := []audit.Event{}
	if h.audit != nil {
		max := 0
		if c.r.URL.Query().Get("limit") != "" {
			max = f.Limit
		}
		list, err := h.audit.ListAll(c.ctx(), f, max)
		if err != nil {
			return err
		}
		events = append(events, list...)
	}
	return audit.Export(c.w, format, events)
}
