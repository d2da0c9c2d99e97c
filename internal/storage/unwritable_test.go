package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

func TestUnwritable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no space", &fs.PathError{Op: "write", Path: "/data/blobs/x", Err: syscall.ENOSPC}, ErrNoSpace},
		{"quota, wrapped", fmt.Errorf("append to upload: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), ErrNoSpace},
		{"read-only", fmt.Errorf("create upload: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.EROFS}), ErrReadOnly},
		{"joined", errors.Join(errors.New("close"), syscall.ENOSPC), ErrNoSpace},
		{"permission", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, nil},
		{"other", errors.New("database or disk is full"), nil},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		if got := Unwritable(tt.err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
