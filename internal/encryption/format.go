package encryption

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// The stored form of an encrypted blob:
//
//	header   magic "BERTHENC" | format 1 | 3 zero bytes | segment size (uint32 BE) | salt (16 bytes)
//	segments AES-256-GCM of each SegmentSize bytes of content (the last may be shorter, or empty
//	         for empty content), each followed by its 16-byte tag
//
// Each blob's content key is derived (HKDF-SHA256) from the blob's data key
// and the object's random salt, so that two writes of one blob never share a
// key and nonce whatever they hold; the nonce is the segment's index. Each
// segment's additional data binds the blob's digest, the segment's index
// and whether it is the last: a segment moved, dropped, swapped with
// another blob's, or a blob cut short at a segment boundary fails to open.
const (
	magic       = "BERTHENC"
	formatV1    = 1
	headerSize  = 32
	saltSize    = 16
	tagSize     = 16
	SegmentSize = 64 << 10
)

// ErrTampered means stored ciphertext does not authenticate: it was
// damaged or changed.
var ErrTampered = storage.ErrTampered

// CipherSize returns the stored size of plain bytes of content.
func CipherSize(plain int64, seg int) int64 {
	n := (plain + int64(seg) - 1) / int64(seg)
	if n == 0 {
		n = 1
	}
	return headerSize + plain + n*tagSize
}

// PlainSize returns the content size of a stored object of size c, or an
// error if no content has that stored size.
func PlainSize(c int64, seg int) (int64, error) {
	x := c - headerSize
	if x < tagSize {
		return 0, fmt.Errorf("%w: %d bytes is too short", ErrTampered, c)
	}
	full := int64(seg) + tagSize
	k, r := x/full, x%full
	if r == 0 {
		return k * int64(seg), nil
	}
	if r < tagSize {
		return 0, fmt.Errorf("%w: %d bytes is no whole number of segments", ErrTampered, c)
	}
	return k*int64(seg) + r - tagSize, nil
}

type header struct {
	seg  int
	salt [saltSize]byte
}

func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	b[8] = formatV1
	binary.BigEndian.PutUint32(b[12:], uint32(h.seg))
	copy(b[16:], h.salt[:])
	return b
}

// parseHeader reads a header; ok is false if b does not start with one
// (content stored before encryption was turned on).
func parseHeader(b []byte) (h header, ok bool, err error) {
	if len(b) < headerSize || string(b[:8]) != magic {
		return header{}, false, nil
	}
	if b[8] != formatV1 {
		return header{}, true, fmt.Errorf("encrypted blob: unknown format %d", b[8])
	}
	h.seg = int(binary.BigEndian.Uint32(b[12:]))
	if h.seg < 1024 || h.seg > 16<<20 {
		return header{}, true, fmt.Errorf("%w: segment size %d", ErrTampered, h.seg)
	}
	copy(h.salt[:], b[16:])
	return h, true, nil
}

// contentAEAD derives the content key of one stored object.
func contentAEAD(dek []byte, salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, dek, salt, "berth blob content v1", 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func nonce(i uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], i)
	return n[:]
}

func aad(d digest.Digest, i uint64, final bool) []byte {
	b := make([]byte, 0, len(d)+9)
	b = append(b, d...)
	b = binary.BigEndian.AppendUint64(b, i)
	if final {
		return append(b, 1)
	}
	return append(b, 0)
}

// sealer is the stored form of blob d read from plain: the header, then
// each segment as it fills. It hashes plain as it goes, and fails instead
// of ending when plain is not d's content, so that a store copying it
// keeps nothing.
type sealer struct {
	d     digest.Digest
	plain io.Reader
	aead  cipher.AEAD
	h     digest.Digester
	seg   int
	buf   []byte // plaintext of the next segment, plus one byte read ahead
	fill  int
	out   []byte // sealed bytes not yet read
	obuf  []byte // out's storage, reused for every segment
	index uint64
	done  bool
	err   error
}

func newSealer(d digest.Digest, dek []byte, plain io.Reader, seg int) (*sealer, error) {
	var h header
	h.seg = seg
	if _, err := rand.Read(h.salt[:]); err != nil {
		return nil, err
	}
	a, err := contentAEAD(dek, h.salt[:])
	if err != nil {
		return nil, err
	}
	s := &sealer{d: d, plain: plain, aead: a, h: d.Algorithm().Digester(), seg: seg, buf: make([]byte, seg+1)}
	s.obuf = make([]byte, 0, seg+tagSize)
	s.out = h.marshal()
	return s, nil
}

func (s *sealer) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.done {
			return 0, io.EOF
		}
		s.next()
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// next seals the next segment into out, or sets err.
func (s *sealer) next() {
	// Fill seg+1 bytes: the extra one tells whether this segment is the last.
	n, err := io.ReadFull(s.plain, s.buf[s.fill:])
	s.fill += n
	final := false
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		final = true
	case err != nil:
		s.err = err
		return
	}
	take := min(s.fill, s.seg)
	s.h.Hash().Write(s.buf[:take])
	if final && s.fill > s.seg {
		final = false // the read-ahead byte is the start of one more segment
	}
	if final && s.h.Digest() != s.d {
		s.err = fmt.Errorf("%w: content is %s", storage.ErrDigestMismatch, s.h.Digest())
		return
	}
	s.out = s.aead.Seal(s.obuf[:0], nonce(s.index), s.buf[:take], aad(s.d, s.index, final))
	s.index++
	s.fill = copy(s.buf, s.buf[take:s.fill])
	s.done = final
}

// opener reads the content of blob d from its stored form src (of size
// stored bytes), decrypting only the segments a read needs: seeks are
// free, a read at an offset reads from the segment that holds it.
type opener struct {
	d      digest.Digest
	src    io.ReadSeeker
	closer io.Closer
	aead   cipher.AEAD
	seg    int
	size   int64 // of the content
	nseg   uint64

	off   int64  // where the next Read reads, in the content
	cur   []byte // plaintext of segment curIx
	curIx uint64
	have  bool
	srcAt int64 // where src is, in the stored form
	cbuf  []byte
}

func newOpener(d digest.Digest, dek []byte, h header, src io.ReadSeeker, closer io.Closer, stored int64) (*opener, error) {
	size, err := PlainSize(stored, h.seg)
	if err != nil {
		return nil, err
	}
	a, err := contentAEAD(dek, h.salt[:])
	if err != nil {
		return nil, err
	}
	nseg := uint64((size + int64(h.seg) - 1) / int64(h.seg))
	if nseg == 0 {
		nseg = 1
	}
	// A small blob (most configs, signatures) needs no full segment's buffer.
	return &opener{d: d, src: src, closer: closer, aead: a, seg: h.seg, size: size, nseg: nseg, srcAt: -1,
		cbuf: make([]byte, min(int64(h.seg), size)+tagSize)}, nil
}

func (o *opener) load(ix uint64) error {
	at := headerSize + int64(ix)*int64(o.seg+tagSize)
	if o.srcAt != at {
		if _, err := o.src.Seek(at, io.SeekStart); err != nil {
			return err
		}
		o.srcAt = at
	}
	final := ix == o.nseg-1
	n := o.seg + tagSize
	if final {
		n = int(o.size-int64(ix)*int64(o.seg)) + tagSize
	}
	if _, err := io.ReadFull(o.src, o.cbuf[:n]); err != nil {
		o.srcAt = -1
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read encrypted blob %s: %w", o.d, err)
	}
	o.srcAt += int64(n)
	pt, err := o.aead.Open(o.cur[:0], nonce(ix), o.cbuf[:n], aad(o.d, ix, final))
	if err != nil {
		o.have = false
		return fmt.Errorf("blob %s segment %d: %w", o.d, ix, ErrTampered)
	}
	o.cur, o.curIx, o.have = pt, ix, true
	return nil
}

func (o *opener) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	ix := uint64(o.off / int64(o.seg))
	if !o.have || o.curIx != ix {
		if err := o.load(ix); err != nil {
			return 0, err
		}
	}
	n := copy(p, o.cur[o.off-int64(ix)*int64(o.seg):])
	o.off += int64(n)
	return n, nil
}

// WriteTo writes the content from the current position to its end,
// a decrypted segment at a time (io.Copy, http.ServeContent).
func (o *opener) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for o.off < o.size {
		ix := uint64(o.off / int64(o.seg))
		if !o.have || o.curIx != ix {
			if err := o.load(ix); err != nil {
				return total, err
			}
		}
		n, err := w.Write(o.cur[o.off-int64(ix)*int64(o.seg):])
		o.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (o *opener) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	o.off = abs
	return abs, nil
}

func (o *opener) Close() error {
	if o.closer != nil {
		return o.closer.Close()
	}
	return nil
}

// readHeader reads the start of a stored object; ok is false if it holds
// content stored before encryption was on.
func readHeader(r io.Reader) (header, bool, []byte, error) {
	b := make([]byte, headerSize)
	n, err := io.ReadFull(r, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return header{}, false, nil, err
	}
	h, ok, err := parseHeader(b[:n])
	return h, ok, b[:n], err
}
