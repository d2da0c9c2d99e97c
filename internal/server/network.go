package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/tokenauth"
)

// networkDenied records a refusal by the network rules: counted, and
// audited in the log's batch (refusals from one address fold into one
// record a minute, so a flood costs no more than that).
func (s *Server) networkDenied(r *http.Request, d *netrule.Denied) {
	s.networkDenials.Add(1)
	ev := audit.Event{Kind: audit.KindNetwork, Result: audit.ResultFailure, Reason: d.Error(),
		CallerIP: d.Addr, UserAgent: r.UserAgent()}
	if d.Token != "" {
		ev.Identity, ev.IdentityKind = d.Token, "token"
	}
	s.audit.Record(ev)
}

// networkRegistryError is the OCI error for a /v2/ request the rules refused.
func networkRegistryError(err error) *registry.Error {
	var d *netrule.Denied
	if errors.As(err, &d) {
		return &registry.Error{Code: registry.CodeDenied, Message: d.Error()}
	}
	if errors.Is(err, identity.ErrUnavailable) {
		return &registry.Error{Code: registry.CodeUnavailable, Message: err.Error(),
			Header: http.Header{"Retry-After": {strconv.Itoa(int(tokenauth.UnavailableRetryAfter.Seconds()))}}}
	}
	return &registry.Error{Code: registry.CodeInternal, Message: err.Error()}
}

// adminElsewhere answers, on the registry's address, what only the admin
// listener serves.
func adminElsewhere(w http.ResponseWriter, r *http.Request) {
	msg := "not found: the management API and the portal are served on the registry's admin address (--admin-addr), not on this one"
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":"NotFound","message":"` + msg + `"}}` + "\n"))
		return
	}
	http.Error(w, msg, http.StatusNotFound)
}

// AdminHandler returns the admin listener's handler, or nil when the
// management API and the portal are served by Handler (for tests).
func (s *Server) AdminHandler() http.Handler { return s.adminHandler }

// Rules returns the network rules (for tests and embedding).
func (s *Server) Rules() *netrule.Service { return s.rules }
