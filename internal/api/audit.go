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

var (
	auditKinds   = []string{audit.KindLogin, audit.KindPush, audit.KindPull, audit.KindDelete, audit.KindUntag, audit.KindPermission, audit.KindNetwork, audit.KindLimited}
	auditResults = []string{audit.ResultSuccess, audit.ResultFailure}
)

// listAudit lists audit events, newest first.
func (h *Handler) listAudit(c *call) error {
	if !auth.CanManage(c.id, auth.ReadAudit) {
		return forbidden("%s may not read the audit log: it needs the reader, contributor or owner role", c.id)
	}
	f, err := auditFilter(c.r)
	if err != nil {
		return err
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
	f := audit.Filter{Identity: q.Get("identity"), Kind: q.Get("kind"), Result: q.Get("result"), Limit: defaultAuditLimit}
	if f.Kind != "" && !slices.Contains(auditKinds, f.Kind) {
		return f, badRequest("invalid kind=%q: use one of %v", f.Kind, auditKinds)
	}
	if f.Result != "" && !slices.Contains(auditResults, f.Result) {
		return f, badRequest("invalid result=%q: use success or failure", f.Result)
	}
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
