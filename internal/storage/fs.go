// Package storage holds berth's content store: blobs addressed by digest, and the
// upload sessions that produce them.
//
// Blobs are written once. An upload is appended to a private file while it is
// hashed; only when the client's digest matches is the file synced and renamed
// into place, so a crash at any moment leaves either no blob or a complete one.
package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "crypto/sha512" // registers sha512 for go-digest
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Errors callers tell apart with errors.Is.
var (
	ErrBlobNotFound    = errors.New("blob not found")
	ErrUploadNotFound  = errors.New("upload not found")
	ErrDigestMismatch  = errors.New("content does not match digest")
	ErrRangeMismatch   = errors.New("chunk does not start at the end of the upload")
	ErrUploadBusy      = errors.New("upload is being written by another request")
	ErrUnsupportedAlgo = errors.New("unsupported digest algorithm")
)

// copyBufSize is large because uploads are multi-gigabyte streams and a small
// buffer makes the syscall count, not the disk, the limit.
const copyBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// FS is the filesystem content store.
type FS struct {
	root string

	mu      sync.Mutex
	uploads map[string]*upload // sessions with live hash state
	// counter caps open sessions; nil means no caps.
	counter UploadCounter

	observe func(op string, d time.Duration)
	// onRepair is told when a push replaced a stored file of the wrong size.
	onRepair func(d digest.Digest, oldSize, newSize int64)

	// gcMu orders garbage collection's deletes against pushes that find
	// their content already stored (see touch).
	gcMu sync.RWMutex

	// sealer, when set, gives what blob files hold in place of content.
	sealer Sealer
}

// SetSealer has every blob written from now on stored as sl seals it
// (encryption at rest). Upload sessions still hold what clients sent
// until their commit seals it. Call it before use.
func (s *FS) SetSealer(sl Sealer) { s.sealer = sl }

// SetObserver has fn told how long each operation took (metrics). Call it
// before use.
func (s *FS) SetObserver(fn func(op string, d time.Duration)) { s.observe = fn }

func (s *FS) timed(op string) func() {
	if s.observe == nil {
		return func() {}
	}
	start := time.Now()
	return func() { s.observe(op, time.Since(start)) }
}

// SetUploadCounter has c count (and cap) upload sessions. Call it before
// use.
func (s *FS) SetUploadCounter(c UploadCounter) { s.counter = c }

// ActiveUploads returns how many upload sessions this process is tracking.
func (s *FS) ActiveUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}

// upload is the in-memory state of one upload session. Its hash state is not
// persisted: after a restart it is rebuilt by reading the data file once.
type upload struct {
	mu   sync.Mutex // held while a request appends; TryLock rejects concurrent writers
	h    hash.Hash  // sha256 over the data so far; nil means "rebuild from disk"
	size int64
}

// NewFS opens (creating if needed) a content store rooted at dir.
func NewFS(dir string) (*FS, error) {
	for _, d := range []string{"blobs", "uploads", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("create content store: %w", err)
		}
	}
	// Files in tmp/ are half-written monolithic uploads from a previous run.
	if entries, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range entries {
			_ = os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return &FS{root: dir, uploads: make(map[string]*upload)}, nil
}

// Ping reports whether the store's directory is usable.
func (s *FS) Ping(context.Context) error {
	_, err := os.Stat(filepath.Join(s.root, "blobs"))
	return err
}

// validate accepts sha256 and sha512 digests only: what the OCI spec
// registers, and nothing a client could use to pick an exotic hash.
func validate(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupportedAlgo, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return fmt.Errorf("%w: %s", ErrUnsupportedAlgo, a)
	}
	return nil
}

func (s *FS) blobPath(d digest.Digest) (string, error) {
	if err := validate(d); err != nil {
		return "", err
	}
	hx := d.Encoded()
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), hx[:2], hx), nil
}

// Stat returns the size of a stored blob.
func (s *FS) Stat(_ context.Context, d digest.Digest) (int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrBlobNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open returns the blob's content. Its dynamic type is *os.File, so that
// serving it through net/http uses sendfile.
func (s *FS) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	defer s.timed("open")()
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrBlobNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// Put stores r as the blob d in one step, verifying the digest while writing.
// It returns the blob's size. It is PutSized with the size unknown.
func (s *FS) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	return s.PutSized(ctx, d, -1, r)
}

// PutSized is Put for a client that declared the content's length (size, or
// -1 if it did not); the filesystem needs no size in advance. What the
// client sends always replaces a stored copy, so a re-push repairs one that
// was damaged, whatever the damage.
func (s *FS) PutSized(ctx context.Context, d digest.Digest, _ int64, r io.Reader) (int64, error) {
	defer s.timed("put")()
	if err := validate(d); err != nil {
		return 0, err
	}
	// Content already stored is written again all the same: the client's
	// bytes are verified against the digest as they arrive, while the
	// stored file may have rotted without changing size (only a full read
	// would tell), and install replaces it at no extra cost. Clients HEAD
	// before they push, so this path rarely sees content that is stored.
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "put-")
	if err != nil {
		return 0, fmt.Errorf("create temporary blob: %w", err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	if s.sealer != nil {
		return s.putSealed(ctx, f, d, r)
	}
	h := d.Algorithm().Hash()
	n, err := hashCopy(f, h, r)
	if err != nil {
		f.Close()
		return n, fmt.Errorf("write blob: %w", err)
	}
	if digest.NewDigest(d.Algorithm(), h) != d {
		f.Close()
		return n, ErrDigestMismatch
	}
	if err := s.install(f, d, n); err != nil {
		return n, err
	}
	return n, nil
}

// putSealed writes the sealed form of r to f and installs it as blob d;
// the sealer verifies the content. It returns the content's size.
func (s *FS) putSealed(ctx context.Context, f *os.File, d digest.Digest, r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	sealed, err := s.sealer.Seal(ctx, d, cr)
	if err != nil {
		f.Close()
		return 0, err
	}
	stored, err := copyBuffered(f, sealed)
	if err != nil {
		f.Close()
		if errors.Is(err, ErrDigestMismatch) {
			return cr.n, ErrDigestMismatch
		}
		return cr.n, fmt.Errorf("write blob: %w", err)
	}
	if err := s.install(f, d, stored); err != nil {
		return cr.n, err
	}
	return cr.n, nil
}

// install syncs f (size bytes, verified to be d), closes it and renames it
// to d's place. A file already there is replaced: the new one is verified
// and already written, so replacing costs nothing, and it repairs a stored
// copy that was damaged without anyone noticing.
func (s *FS) install(f *os.File, d digest.Digest, size int64) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close blob: %w", err)
	}
	dst, err := s.blobPath(d)
	if err != nil {
		return err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create blob directory: %w", err)
	}
	// Under gcMu like touch, so garbage collection cannot delete the new
	// file having judged the old one, and quarantine cannot move it.
	s.gcMu.RLock()
	old, statErr := os.Stat(dst)
	err = os.Rename(f.Name(), dst)
	s.gcMu.RUnlock()
	if err != nil {
		return fmt.Errorf("move blob into place: %w", err)
	}
	if statErr == nil && old.Size() != size && s.onRepair != nil {
		s.onRepair(d, old.Size(), size)
	}
	return syncDir(dir)
}

// touch reports whether blob file p exists and, if so, makes it young:
// garbage collection spares blobs touched within its grace period, so a
// push that found its content already stored cannot lose it to a
// collection running at the same time.
func (s *FS) touch(p string) bool {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	now := time.Now()
	return os.Chtimes(p, now, now) == nil
}

// Touch marks blob d as just used (see touch), or says it is not stored.
func (s *FS) Touch(_ context.Context, d digest.Digest) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if !s.touch(p) {
		return ErrBlobNotFound
	}
	return nil
}

// WalkBlobs calls fn for every stored blob with its last-touched time.
func (s *FS) WalkBlobs(fn func(d digest.Digest, touched time.Time) error) error {
	return s.Walk(context.Background(), func(b BlobInfo) error { return fn(b.Digest, b.Touched) })
}

// DeleteIfUntouched removes blob d unless it was touched at or after
// cutoff (a push stored or found it since), and reports whether it did.
func (s *FS) DeleteIfUntouched(d digest.Digest, cutoff time.Time) (bool, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return false, err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	fi, err := os.Stat(p)
	if err != nil || !fi.ModTime().Before(cutoff) {
		return false, nil
	}
	if err := os.Remove(p); err != nil {
		return false, fmt.Errorf("delete blob %s: %w", d, err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}

// Upload sessions.

func (s *FS) uploadDir(id string) (string, error) {
	// IDs are ours (hex); anything else is a client's guess and must not reach the
	// filesystem as a path.
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", ErrUploadNotFound
	}
	return filepath.Join(s.root, "uploads", id), nil
}

// UploadInfo describes an upload session.
type UploadInfo struct {
	ID         string
	Repository string
	// Owner is the identity that started the session ("" for sessions
	// from before owners were recorded).
	Owner     string
	Size      int64
	StartedAt time.Time
}

// StartUpload creates an empty upload session for repository repo, started
// by identity owner. It fails with ErrTooManyUploads (a
// *TooManyUploadsError) if the owner or the repository has as many open
// sessions as the upload counter allows; then nothing is created.
func (s *FS) StartUpload(ctx context.Context, repo, owner string) (UploadInfo, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return UploadInfo{}, fmt.Errorf("make upload id: %w", err)
	}
	u := UploadInfo{ID: hex.EncodeToString(b[:]), Repository: repo, Owner: owner, StartedAt: time.Now()}
	if s.counter != nil {
		if err := s.counter.Open(ctx, u); err != nil {
			return UploadInfo{}, err
		}
	}
	if err := s.createUpload(u); err != nil {
		if s.counter != nil {
			s.counter.Close(context.WithoutCancel(ctx), u.ID)
		}
		return UploadInfo{}, err
	}
	s.mu.Lock()
	s.uploads[u.ID] = &upload{h: sha256.New()}
	s.mu.Unlock()
	return u, nil
}

func (s *FS) createUpload(u UploadInfo) error {
	dir, _ := s.uploadDir(u.ID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		return fmt.Errorf("create upload: %w", err)
	}
	err := os.WriteFile(filepath.Join(dir, "repository"), []byte(u.Repository), 0o640)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "owner"), []byte(u.Owner), 0o640)
	}
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(filepath.Join(dir, "data"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o640); err == nil {
			f.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("create upload: %w", err)
	}
	return nil
}

// Upload returns the state of an upload session.
func (s *FS) Upload(_ context.Context, id string) (UploadInfo, error) {
	dir, err := s.uploadDir(id)
	if err != nil {
		return UploadInfo{}, err
	}
	return readUpload(id, dir)
}

func readUpload(id, dir string) (UploadInfo, error) {
	repo, err := os.ReadFile(filepath.Join(dir, "repository"))
	if err != nil {
		return UploadInfo{}, ErrUploadNotFound
	}
	owner, _ := os.ReadFile(filepath.Join(dir, "owner")) // none from older versions
	fi, err := os.Stat(filepath.Join(dir, "data"))
	if err != nil {
		return UploadInfo{}, ErrUploadNotFound
	}
	return UploadInfo{ID: id, Repository: string(repo), Owner: string(owner), Size: fi.Size(), StartedAt: fi.ModTime()}, nil
}

// Uploads lists the upload sessions on disk, for counting them at start.
func (s *FS) Uploads() ([]UploadInfo, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "uploads"))
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	var out []UploadInfo
	for _, e := range entries {
		dir, err := s.uploadDir(e.Name())
		if err != nil {
			continue // not a session
		}
		if u, err := readUpload(e.Name(), dir); err == nil {
			out = append(out, u)
		}
	}
	return out, nil
}

// lock finds the session and takes its writer lock, rebuilding the hash state
// from disk if this process has not seen the session before.
func (s *FS) lock(id string) (*upload, string, error) {
	dir, err := s.uploadDir(id)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		return nil, "", ErrUploadNotFound
	}
	s.mu.Lock()
	u := s.uploads[id]
	if u == nil {
		u = &upload{}
		s.uploads[id] = u
	}
	s.mu.Unlock()
	if !u.mu.TryLock() {
		return nil, "", ErrUploadBusy
	}
	if u.h == nil {
		h := sha256.New()
		f, err := os.Open(filepath.Join(dir, "data"))
		if err != nil {
			u.mu.Unlock()
			return nil, "", ErrUploadNotFound
		}
		n, err := copyBuffered(h, f)
		f.Close()
		if err != nil {
			u.mu.Unlock()
			return nil, "", fmt.Errorf("rehash upload: %w", err)
		}
		u.h, u.size = h, n
	}
	return u, dir, nil
}

// Append writes r to the end of the upload. If start is not negative, it must
// equal the current size (the client's Content-Range). It returns the new size.
func (s *FS) Append(_ context.Context, id string, start int64, r io.Reader) (int64, error) {
	defer s.timed("append")()
	u, dir, err := s.lock(id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if start >= 0 && start != u.size {
		return u.size, ErrRangeMismatch
	}
	return s.appendLocked(u, dir, r)
}

func (s *FS) appendLocked(u *upload, dir string, r io.Reader) (int64, error) {
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return u.size, fmt.Errorf("open upload: %w", err)
	}
	n, err := hashCopy(f, u.h, r)
	u.size += n
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		// The hash may have seen bytes the file did not get, or the reverse;
		// the file is the truth, so rebuild from it next time.
		u.h = nil
		if fi, serr := os.Stat(filepath.Join(dir, "data")); serr == nil {
			u.size = fi.Size()
		}
		return u.size, fmt.Errorf("append to upload: %w", err)
	}
	return u.size, nil
}

// Commit appends r (which may be empty) to the upload, checks the content
// against d and moves it into the blob store. The session ends whether or not
// the digest matched, as the spec requires a new upload after a failed PUT.
func (s *FS) Commit(ctx context.Context, id string, d digest.Digest, r io.Reader) (int64, error) {
	defer s.timed("commit")()
	if err := validate(d); err != nil {
		return 0, err
	}
	u, dir, err := s.lock(id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if s.sealer != nil && u.size == 0 && r != nil {
		return s.commitSealed(ctx, id, dir, d, r)
	}
	if r != nil {
		if _, err := s.appendLocked(u, dir, r); err != nil {
			return u.size, err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR, 0)
	if err != nil {
		return u.size, fmt.Errorf("open upload: %w", err)
	}
	var ok bool
	if d.Algorithm() == digest.SHA256 {
		ok = digest.NewDigest(digest.SHA256, u.h) == d
	} else {
		// Only sha256 is hashed while streaming (it is what nearly every client
		// uses); other algorithms cost one more read at the end.
		v := d.Verifier()
		_, err := copyBuffered(v, f)
		ok = err == nil && v.Verified()
	}
	if !ok {
		f.Close()
		s.dropLocked(ctx, id, dir)
		return u.size, ErrDigestMismatch
	}
	stored := u.size
	if s.sealer != nil {
		// The verified content is sealed into a new file, which replaces
		// the session's as the one installed.
		sf, n, err := s.sealFile(ctx, f, d)
		if err != nil {
			return u.size, err
		}
		defer os.Remove(sf.Name()) // no-op once renamed
		f, stored = sf, n
	}
	if err := s.install(f, d, stored); err != nil {
		return u.size, err
	}
	s.dropLocked(ctx, id, dir)
	return u.size, nil
}

// commitSealed commits an empty session whose whole content comes with
// the commit (a monolithic upload) as Put does: sealed straight from r, not
// staged first and sealed from the staging file. If r breaks off, nothing
// was stored and the session stays, empty, for the client to retry.
func (s *FS) commitSealed(ctx context.Context, id, dir string, d digest.Digest, r io.Reader) (int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "put-")
	if err != nil {
		return 0, fmt.Errorf("create temporary blob: %w", err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	n, err := s.putSealed(ctx, f, d, r)
	if errors.Is(err, ErrDigestMismatch) {
		s.dropLocked(ctx, id, dir)
		return n, err
	}
	if err != nil {
		return 0, err
	}
	s.dropLocked(ctx, id, dir)
	return n, nil
}

// sealFile writes the sealed form of the content in f (closing f) to a
// new temporary file, returned open.
func (s *FS) sealFile(ctx context.Context, f *os.File, d digest.Digest) (*os.File, int64, error) {
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("read upload: %w", err)
	}
	sealed, err := s.sealer.Seal(ctx, d, f)
	if err != nil {
		return nil, 0, err
	}
	out, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "seal-")
	if err != nil {
		return nil, 0, fmt.Errorf("create temporary blob: %w", err)
	}
	n, err := copyBuffered(out, sealed)
	if err != nil {
		out.Close()
		os.Remove(out.Name())
		return nil, 0, fmt.Errorf("seal blob: %w", err)
	}
	return out, n, nil
}

// Cancel ends an upload session and removes its data.
func (s *FS) Cancel(ctx context.Context, id string) error {
	u, dir, err := s.lock(id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	s.dropLocked(ctx, id, dir)
	return nil
}

func (s *FS) dropLocked(ctx context.Context, id, dir string) {
	_ = os.RemoveAll(dir)
	s.mu.Lock()
	delete(s.uploads, id)
	s.mu.Unlock()
	if s.counter != nil {
		// The session is gone even if the client that ended it is too.
		s.counter.Close(context.WithoutCancel(ctx), id)
	}
}

// PurgeUploads removes upload sessions untouched for longer than age, and
// those that received no bytes for longer than emptyAge (sessions opened
// and abandoned, or opened only to hold a slot), and returns how many it
// removed.
func (s *FS) PurgeUploads(age, emptyAge time.Duration) (int, error) {
	ctx := context.Background()
	entries, err := os.ReadDir(filepath.Join(s.root, "uploads"))
	if err != nil {
		return 0, fmt.Errorf("list uploads: %w", err)
	}
	n := 0
	for _, e := range entries {
		dir := filepath.Join(s.root, "uploads", e.Name())
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err == nil {
			idle := time.Since(fi.ModTime())
			if idle < age && (fi.Size() > 0 || idle < emptyAge) {
				continue
			}
		}
		s.mu.Lock()
		u := s.uploads[e.Name()]
		s.mu.Unlock()
		if u != nil && !u.mu.TryLock() {
			continue // a request is writing to it right now
		}
		s.dropLocked(ctx, e.Name(), dir)
		if u != nil {
			u.mu.Unlock()
		}
		n++
	}
	return n, nil
}
