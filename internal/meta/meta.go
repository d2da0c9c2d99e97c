// Package meta holds berth's metadata store: repositories, the blobs each
// repository may see, manifests, tags and referrers, behind transactions so a
// crash never leaves half a change.
package meta

import (
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// Errors callers tell apart with errors.Is.
var (
	ErrRepositoryNotFound = errors.New("repository not found")
	ErrManifestNotFound   = errors.New("manifest not found")
	ErrTagNotFound        = errors.New("tag not found")
	ErrBlobNotFound       = errors.New("blob not found in repository")
	// ErrLocked means an attribute (writeEnabled, deleteEnabled) forbids the change.
	ErrLocked = errors.New("locked")
)

// BlobUnknownError names a blob a manifest refers to that the repository does
// not have.
type BlobUnknownError struct{ Digest digest.Digest }

func (e *BlobUnknownError) Error() string { return "blob unknown to repository: " + e.Digest.String() }

// LockedError says which attribute forbids a change.
type LockedError struct {
	What string // "repository team/app" or "manifest sha256:..."
	Attr string // "writeEnabled" or "deleteEnabled"
	// Reason, when set, replaces "has <Attr>=false" in the message.
	Reason string
}

func (e *LockedError) Error() string {
	if e.Reason != "" {
		return e.What + " " + e.Reason
	}
	return e.What + " has " + e.Attr + "=false"
}
func (e *LockedError) Unwrap() error { return ErrLocked }

// Attributes are ACR's changeable attributes, on a repository or a manifest.
type Attributes struct {
	ReadEnabled   bool `json:"readEnabled"`
	WriteEnabled  bool `json:"writeEnabled"`
	DeleteEnabled bool `json:"deleteEnabled"`
	ListEnabled   bool `json:"listEnabled"`
}

// DefaultAttributes allow everything.
var DefaultAttributes = Attributes{true, true, true, true}

// Repository is one repository's record.
type Repository struct {
	Name       string
	CreatedAt  time.Time
	Attributes Attributes
}

// Manifest is a stored manifest with what berth indexed from it.
type Manifest struct {
	Digest       digest.Digest
	MediaType    string
	ArtifactType string        // the manifest's artifactType, or its config's media type
	Subject      digest.Digest // empty when the manifest has no subject
	Size         int64
	Content      []byte
	Annotations  map[string]string
	CreatedAt    time.Time
	Attributes   Attributes
	// Summary is what lists show of it, worked out when it was stored.
	Summary Summary
}

// TaggedManifest is a tag with the manifest it points at.
type TaggedManifest struct {
	Tag string
	Manifest
}

// Referrer is a manifest that names another as its subject, as the referrers
// API lists it.
type Referrer struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// PutManifestRequest is what PutManifest stores in one transaction.
type PutManifestRequest struct {
	Repository string
	Manifest   Manifest
	Tags       []string
	// Requires lists blobs the repository must already have (config and layers).
	Requires []digest.Digest
	// Keep lists tags of Tags that may be created but not moved: if one
	// points at another manifest, nothing is stored and PutManifest returns
	// a *TagMoveError (a caller without content/overwrite). It is checked
	// in the write transaction, so a tag created meanwhile is not moved.
	Keep []string
	// Platform is an image's platform ("linux/arm64/v8") as its config
	// says, which only the content store can tell; empty when unknown.
	// It becomes the Summary's one platform.
	Platform string
}

// TagMoveError refuses to move a tag that PutManifestRequest.Keep names.
type TagMoveError struct {
	Tag     string
	Current digest.Digest // what the tag points at
}

func (e *TagMoveError) Error() string {
	return "tag " + e.Tag + " points at " + e.Current.String() + " and may not be moved"
}
