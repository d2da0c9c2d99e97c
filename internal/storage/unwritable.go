package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The reasons a write can fail that no retry fixes until an operator acts.
var (
	ErrNoSpace  = errors.New("storage is full")
	ErrReadOnly = errors.New("storage is read-only")
)

// Unwritable returns ErrNoSpace when err says the filesystem is full or a
// quota is used up (ENOSPC, EDQUOT), ErrReadOnly when it is read-only
// (EROFS), and nil for any other error.
func Unwritable(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	case errors.Is(err, syscall.EROFS):
		return ErrReadOnly
	}
	return nil
}

// probeSize is what PingWrite writes: one filesystem block, since a full
// filesystem may still take a write that fits a block already allocated.
const probeSize = 4096

// PingWrite reports whether the store can write (see ProbeWrite).
func (s *FS) PingWrite(context.Context) error {
	return ProbeWrite(filepath.Join(s.root, "tmp"))
}

// ProbeWrite reports whether dir takes a write: it writes a block to a new
// file there and removes it. It does not sync: filesystems reserve space
// when written to, so a full one refuses the write itself, and a readiness
// probe must not wait behind the disk's queue.
func ProbeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".write-probe-")
	if err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	defer os.Remove(f.Name())
	b := make([]byte, probeSize)
	rand.Read(b) // incompressible, in case the filesystem compresses
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}
