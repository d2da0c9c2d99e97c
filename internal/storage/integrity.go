package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob files can be damaged after they were written (a failing disk, a
// stray write, a restore gone wrong). What finds the damage (the check
// before each response, the scrub, fsck) moves the file into quarantine/:
// the blob is then unknown, HEAD says so, and the next push of it writes
// it again. The file is kept for the operator, never deleted by berth.

// BlobInfo describes one stored blob file.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	Touched time.Time
	// fi identifies the file: a push that replaces the content makes a
	// new one, which Quarantine must not move for the old one's faults.
	fi os.FileInfo
}

// Damage says what is wrong with a blob file, as recorded in quarantine.
type Damage struct {
	Digest       digest.Digest `json:"digest"`
	Size         int64         `json:"size"`                   // of the file
	ExpectedSize int64         `json:"expectedSize,omitempty"` // recorded when the blob was pushed; 0 if unknown
	ActualDigest digest.Digest `json:"actualDigest,omitempty"` // of the file's content, if it was read
	FoundBy      string        `json:"foundBy"`                // serve, scrub or fsck
}

// QuarantinedBlob is a blob file moved aside.
type QuarantinedBlob struct {
	Damage
	Path          string    `json:"path"`
	QuarantinedAt time.Time `json:"quarantinedAt"`
}

// OpenFS opens an existing content store without creating or cleaning
// anything, for tools that inspect a data directory a server may be using.
func OpenFS(dir string) (*FS, error) {
	if fi, err := os.Stat(filepath.Join(dir, "blobs")); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a berth data directory: no blobs directory", dir)
	}
	return &FS{root: dir, uploads: make(map[string]*upload)}, nil
}

// SetRepairObserver has fn told when a push replaced a stored file of the
// wrong size (logs, metrics). Call it before use.
func (s *FS) SetRepairObserver(fn func(d digest.Digest, oldSize, newSize int64)) { s.onRepair = fn }

// Opened describes blob d, open as f (from a store's Open). A file is
// described by fstat, which also identifies it for Quarantine; any other
// reader by its length, found by seeking to its end and back.
func Opened(d digest.Digest, f io.ReadSeeker) (BlobInfo, error) {
	if file, ok := f.(*os.File); ok {
		fi, err := file.Stat()
		if err != nil {
			return BlobInfo{}, fmt.Errorf("stat blob %s: %w", d, err)
		}
		return BlobInfo{Digest: d, Size: fi.Size(), Touched: fi.ModTime(), fi: fi}, nil
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return BlobInfo{}, fmt.Errorf("size of blob %s: %w", d, err)
	}
	return BlobInfo{Digest: d, Size: end}, nil
}

// StatBlob describes stored blob d.
func (s *FS) StatBlob(_ context.Context, d digest.Digest) (BlobInfo, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return BlobInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return BlobInfo{}, ErrBlobNotFound
	}
	if err != nil {
		return BlobInfo{}, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return BlobInfo{Digest: d, Size: fi.Size(), Touched: fi.ModTime(), fi: fi}, nil
}

// ReadBlob opens stored blob d and describes the file it opened.
func (s *FS) ReadBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, BlobInfo, error) {
	f, err := s.Open(ctx, d)
	if err != nil {
		return nil, BlobInfo{}, err
	}
	b, err := Opened(d, f)
	if err != nil {
		f.Close()
		return nil, BlobInfo{}, err
	}
	return f, b, nil
}

// Walk calls fn for every stored blob, in no particular order, until
// fn returns an error or ctx ends.
func (s *FS) Walk(ctx context.Context, fn func(BlobInfo) error) error {
	root := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, alg := range algs {
		err := filepath.WalkDir(filepath.Join(root, alg.Name()), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if validate(d) != nil {
				return nil // not ours
			}
			fi, err := e.Info()
			if err != nil {
				return nil // removed meanwhile
			}
			return fn(BlobInfo{Digest: d, Size: fi.Size(), Touched: fi.ModTime(), fi: fi})
		})
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
	}
	return nil
}

// Quarantine moves blob b's file into quarantine/ with a note of what is
// wrong with it, so the blob reads as not stored until pushed again. It
// does nothing and returns false if the file is no longer the one b
// describes (a push replaced it, or something else moved it meanwhile).
func (s *FS) Quarantine(_ context.Context, b BlobInfo, why Damage) (bool, error) {
	p, err := s.blobPath(b.Digest)
	if err != nil {
		return false, err
	}
	qdir := filepath.Join(s.root, "quarantine")
	if err := os.MkdirAll(qdir, 0o750); err != nil {
		return false, fmt.Errorf("create quarantine directory: %w", err)
	}
	now := time.Now().UTC()
	name := fmt.Sprintf("%s-%s-%s", b.Digest.Algorithm(), b.Digest.Encoded(), now.Format("20060102T150405.000000000Z"))
	why.Digest = b.Digest
	note, _ := json.Marshal(QuarantinedBlob{Damage: why, Path: filepath.Join("quarantine", name), QuarantinedAt: now})
	if err := os.WriteFile(filepath.Join(qdir, name+".json"), note, 0o640); err != nil {
		return false, fmt.Errorf("write quarantine note: %w", err)
	}
	moved, err := s.moveIfSame(p, b.fi, filepath.Join(qdir, name))
	if !moved {
		os.Remove(filepath.Join(qdir, name+".json"))
		return false, err
	}
	if err := errors.Join(syncDir(filepath.Dir(p)), syncDir(qdir)); err != nil {
		return true, err
	}
	return true, nil
}

// moveIfSame renames p to dst if p is still the file fi describes. The
// lock orders it against installs and garbage collection.
func (s *FS) moveIfSame(p string, fi os.FileInfo, dst string) (bool, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	cur, err := os.Stat(p)
	if err != nil || fi == nil || !os.SameFile(cur, fi) {
		return false, nil
	}
	if err := os.Rename(p, dst); err != nil {
		return false, fmt.Errorf("quarantine blob: %w", err)
	}
	return true, nil
}

// Quarantined lists the blob files in quarantine, oldest first.
func (s *FS) Quarantined(context.Context) ([]QuarantinedBlob, error) {
	qdir := filepath.Join(s.root, "quarantine")
	entries, err := os.ReadDir(qdir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	var out []QuarantinedBlob
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(qdir, e.Name()))
		if err != nil {
			continue
		}
		var q QuarantinedBlob
		if json.Unmarshal(b, &q) == nil {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b QuarantinedBlob) int { return a.QuarantinedAt.Compare(b.QuarantinedAt) })
	return out, nil
}
