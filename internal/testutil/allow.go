package testutil

import (
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/registry"
)

// AllowAll is a registry authorizer that lets every request through as the
// caller "ci", for tests of what lies behind the access decision (storage,
// garbage collection, integrity checks).
type AllowAll struct{}

// Authorize lets the request through.
func (AllowAll) Authorize(*http.Request, []registry.Access) (registry.Caller, error) {
	return AllowAll{}, nil
}

// Name is the caller's name.
func (AllowAll) Name() string { return "ci" }

// Can allows every operation.
func (AllowAll) Can(string, auth.Operation) bool { return true }

// CanSee shows every repository.
func (AllowAll) CanSee(string) bool { return true }

// TagCheck allows every operation on every tag.
func (AllowAll) TagCheck(string, auth.Operation) func(string) error { return nil }

// CatalogTagFilter leaves the catalog to CanSee.
func (AllowAll) CatalogTagFilter(string) func(string) bool { return nil }
