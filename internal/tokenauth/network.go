package tokenauth

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/registry"
)

// NetworkRules are the address checks of package netrule: each returns
// nil, a *netrule.Denied or identity.ErrUnavailable.
type NetworkRules interface {
	CheckRegistry(r *http.Request, ip string) error
	CheckToken(r *http.Request, token, ip string) error
}

// tokenAddress refuses a token used from an address its allowed addresses
// do not name: at login, and on every request its access tokens make, so
// that an access token taken elsewhere is of no use there.
func (s *Service) tokenAddress(r *http.Request, id auth.Identity) error {
	if s.net == nil || id.Kind != auth.KindToken {
		return nil
	}
	return s.net.CheckToken(r, id.Name, s.urls.ClientIP(r))
}

// networkError is the registry's answer to a refusal by the network rules.
func networkError(err error) error {
	var d *netrule.Denied
	if errors.As(err, &d) {
		return &registry.Error{Code: registry.CodeDenied, Message: d.Error()}
	}
	if errors.Is(err, identity.ErrUnavailable) {
		return &registry.Error{Code: registry.CodeUnavailable, Message: err.Error(),
			Header: http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(UnavailableRetryAfter), 10)}}}
	}
	return err
}

// writeNetworkError answers a token request the network rules refused.
func writeNetworkError(w http.ResponseWriter, err error) {
	var d *netrule.Denied
	if errors.As(err, &d) {
		writeOAuthError(w, http.StatusForbidden, "access_denied", d.Error(), nil)
		return
	}
	writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error(),
		http.Header{"Retry-After": {strconv.FormatInt(secondsCeil(UnavailableRetryAfter), 10)}})
}

// registryRules applies the registry-wide rules to a token request that
// asks for registry access (a scope). A request for no scope is a
// management login (berth login, the CLI's tokens), which is fenced by the
// admin listener, not by the data plane's rules, so that an operator who
// set the default action to Deny can still change the rules; its token
// grants nothing on /v2/, which checks every request itself.
func (s *Service) registryRules(w http.ResponseWriter, r *http.Request, scopes []auth.Scope) bool {
	if s.net == nil || len(scopes) == 0 {
		return true
	}
	if err := s.net.CheckRegistry(r, s.urls.ClientIP(r)); err != nil {
		writeNetworkError(w, err)
		return false
	}
	return true
}
