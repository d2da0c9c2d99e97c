package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// Code is one OCI error code, registered once with its HTTP status.
type Code struct {
	Name    string
	Message string
	Status  int
}

// The error codes of the OCI Distribution Spec, plus the Docker ones clients
// know (TOOMANYREQUESTS, UNAVAILABLE).
var (
	CodeBlobUnknown         = Code{"BLOB_UNKNOWN", "blob unknown to registry", http.StatusNotFound}
	CodeBlobUploadInvalid   = Code{"BLOB_UPLOAD_INVALID", "blob upload invalid", http.StatusBadRequest}
	CodeBlobUploadUnknown   = Code{"BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", http.StatusNotFound}
	CodeDigestInvalid       = Code{"DIGEST_INVALID", "provided digest did not match uploaded content", http.StatusBadRequest}
	CodeManifestBlobUnknown = Code{"MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", http.StatusBadRequest}
	CodeManifestInvalid     = Code{"MANIFEST_INVALID", "manifest invalid", http.StatusBadRequest}
	CodeManifestUnknown     = Code{"MANIFEST_UNKNOWN", "manifest unknown to registry", http.StatusNotFound}
	CodeNameInvalid         = Code{"NAME_INVALID", "invalid repository name", http.StatusBadRequest}
	CodeNameUnknown         = Code{"NAME_UNKNOWN", "repository name not known to registry", http.StatusNotFound}
	CodeSizeInvalid         = Code{"SIZE_INVALID", "provided length did not match content length", http.StatusBadRequest}
	CodeUnauthorized        = Code{"UNAUTHORIZED", "authentication required", http.StatusUnauthorized}
	CodeDenied              = Code{"DENIED", "requested access to the resource is denied", http.StatusForbidden}
	CodeUnsupported         = Code{"UNSUPPORTED", "the operation is unsupported", http.StatusMethodNotAllowed}
	CodeTooManyRequests     = Code{"TOOMANYREQUESTS", "too many requests", http.StatusTooManyRequests}
	CodeRangeInvalid        = Code{"BLOB_UPLOAD_INVALID", "requested range does not match the upload", http.StatusRequestedRangeNotSatisfiable}
	CodeManifestTooLarge    = Code{"MANIFEST_INVALID", "manifest too large", http.StatusRequestEntityTooLarge}
	CodeUnavailable         = Code{"UNAVAILABLE", "service unavailable", http.StatusServiceUnavailable}
	// Clients know only the spec's codes, so bad parameters are UNSUPPORTED,
	// with a status that says what kind of mistake it was.
	CodePaginationInvalid  = Code{"UNSUPPORTED", "invalid number of results requested", http.StatusBadRequest}
	CodeRangeUnsatisfiable = Code{"UNSUPPORTED", "requested range is not satisfiable", http.StatusRequestedRangeNotSatisfiable}
	CodeInternal           = Code{"UNKNOWN", "internal server error", http.StatusInternalServerError}
	// A write the storage cannot take (full, read-only) is no fault of the
	// client's, and no retry helps until an operator acts.
	CodeStorageUnwritable = Code{"UNAVAILABLE", "storage cannot be written", http.StatusInsufficientStorage}
)

// unwritableError is the answer to a write that failed because the blob
// store or the database is full or read-only, with which of the two it was
// ("storage" or "database"); nil if err is anything else.
func unwritableError(err error) (*Error, string) {
	part, what, cause := "storage", "blob storage", storage.Unwritable(err)
	if cause == nil {
		part, what, cause = "database", "the registry's database", meta.Unwritable(err)
	}
	var msg string
	switch {
	case cause == nil:
		return nil, ""
	case errors.Is(cause, storage.ErrNoSpace), errors.Is(cause, meta.ErrNoSpace):
		msg = what + " is full: nothing can be pushed until space is freed; pulls keep working"
	default:
		msg = what + " is read-only: nothing can be pushed until it is writable again; pulls keep working"
	}
	return &Error{Code: CodeStorageUnwritable, Message: msg}, part
}

// Error is an error a handler returns to be written as an OCI error body.
type Error struct {
	Code   Code
	Detail any
	// Message overrides Code.Message when set.
	Message string
	// Header is added to the response (WWW-Authenticate, Retry-After, Range).
	Header http.Header
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.Message
	}
	return fmt.Sprintf("%s: %s", e.Code.Name, msg)
}

func newError(c Code, format string, args ...any) *Error {
	e := &Error{Code: c}
	if format != "" {
		e.Message = fmt.Sprintf(format, args...)
	}
	return e
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// WriteError writes e as an OCI error response.
func WriteError(w http.ResponseWriter, e *Error) {
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	msg := e.Message
	if msg == "" {
		msg = e.Code.Message
	}
	b, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code.Name, Message: msg, Detail: e.Detail}}})
	w.Header().Set("Content-Type", "application/json")
	// Set again here: a net/http helper's error answer, rewritten into this
	// one, has had its headers cleared.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(e.Code.Status)
	w.Write(b)
}
