package storage

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// ErrKeyUnavailable means content cannot be read or written because the
// key it is encrypted with cannot be used now; nothing is lost, and it
// can be once the key is back (answer 503).
var ErrKeyUnavailable = errors.New("the encryption key is unavailable")

// ErrTampered means a blob's sealed form does not authenticate: it was
// damaged or changed where it is stored. It is damage, like content that
// does not hash to its digest.
var ErrTampered = errors.New("encrypted blob does not authenticate (damaged or tampered with)")

// A Sealer turns a blob's content into what a store keeps of it
// (encryption at rest, see internal/encryption). A store with a sealer
// writes what Seal returns in place of the content; what it reads back is
// the sealed form, which the sealer's own store opens.
type Sealer interface {
	// Seal returns the stored form of blob d, whose content is read from
	// plain. It verifies the content against d: its Read fails with an
	// error wrapping ErrDigestMismatch (instead of returning io.EOF) when
	// the content is not d's, so that the store keeps nothing of it.
	Seal(ctx context.Context, d digest.Digest, plain io.Reader) (io.Reader, error)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
