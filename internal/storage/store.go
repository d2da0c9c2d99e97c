package storage

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// BlobInfo describes a stored blob, as a content store's walk reports it.
type BlobInfo struct {
	Digest   digest.Digest
	Size     int64
	Modified time.Time
}
