package encryption

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

func benchContent(b *testing.B) ([]byte, digest.Digest, []byte) {
	content := make([]byte, 32<<20)
	rand.Read(content)
	dek := make([]byte, 32)
	rand.Read(dek)
	return content, digest.FromBytes(content), dek
}

// BenchmarkSeal is the sealing of content as a push does it (sha256 of
// the content included).
func BenchmarkSeal(b *testing.B) {
	content, d, dek := benchContent(b)
	b.SetBytes(int64(len(content)))
	buf := make([]byte, 1<<20)
	for b.Loop() {
		s, err := newSealer(d, dek, bytes.NewReader(content), SegmentSize)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{s}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is the decryption of content as a pull does it.
func BenchmarkOpen(b *testing.B) {
	content, d, dek := benchContent(b)
	s, _ := newSealer(d, dek, bytes.NewReader(content), SegmentSize)
	sealed, err := io.ReadAll(s)
	if err != nil {
		b.Fatal(err)
	}
	h, _, _, _ := readHeader(bytes.NewReader(sealed))
	b.SetBytes(int64(len(content)))
	buf := make([]byte, 32<<10)
	for b.Loop() {
		o, err := newOpener(d, dek, h, bytes.NewReader(sealed), nil, int64(len(sealed)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{o}, buf); err != nil {
			b.Fatal(err)
		}
	}
}
