package server

import (
	"net/http"

	"github.com/berth-registry/berth/internal/registry"
)

// allowAll is the authorizer of a registry without authentication.
type allowAll struct{}

func (allowAll) Authorize(*http.Request, []registry.Access) (registry.Caller, error) {
	return anonymous{}, nil
}

type anonymous struct{}

func (anonymous) Name() string                     { return "anonymous" }
func (anonymous) Can(string, registry.Action) bool { return true }
func (anonymous) CanSee(string) bool               { return true }
