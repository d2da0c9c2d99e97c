package storage

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPutVerifiesAndDeduplicates(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := digest.FromString("hello")
	if _, err := s.Put(ctx, digest.FromString("other"), strings.NewReader("hello")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("wrong digest: %v", err)
	}
	if _, err := s.Stat(ctx, digest.FromString("other")); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("mismatched content was stored: %v", err)
	}
	for range 2 {
		if n, err := s.Put(ctx, d, strings.NewReader("hello")); err != nil || n != 5 {
			t.Fatalf("put: %d %v", n, err)
		}
	}
	f, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello" {
		t.Fatalf("content %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if _, err := s.Stat(ctx, digest.Digest("md5:abc")); err == nil {
		t.Fatal("unsupported algorithm accepted")
	}
}

func TestUploadResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFS(dir)
	ctx := context.Background()
	up, err := s.StartUpload(ctx, "repo", "tester")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, up.ID, 0, strings.NewReader("hello ")); err != nil {
		t.Fatal(err)
	}
	// A new process knows nothing of the session's hash state.
	s2, _ := NewFS(dir)
	if _, err := s2.Append(ctx, up.ID, 0, strings.NewReader("x")); !errors.Is(err, ErrRangeMismatch) {
		t.Fatalf("append at a stale offset: %v", err)
	}
	if n, err := s2.Append(ctx, up.ID, 6, strings.NewReader("world")); err != nil || n != 11 {
		t.Fatalf("append after restart: %d %v", n, err)
	}
	d := digest.FromString("hello world")
	if _, err := s2.Commit(ctx, up.ID, d, nil); err != nil {
		t.Fatal(err)
	}
	if size, err := s2.Stat(ctx, d); err != nil || size != 11 {
		t.Fatalf("stat: %d %v", size, err)
	}
	if _, err := s2.Upload(ctx, up.ID); !errors.Is(err, ErrUploadNotFound) {
		t.Fatalf("session survives commit: %v", err)
	}
}

func TestFailedCommitEndsSession(t *testing.T) {
	s, _ := NewFS(t.TempDir())
	ctx := context.Background()
	up, _ := s.StartUpload(ctx, "repo", "tester")
	if _, err := s.Commit(ctx, up.ID, digest.FromString("nope"), strings.NewReader("data")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("commit: %v", err)
	}
	if _, err := s.Upload(ctx, up.ID); !errors.Is(err, ErrUploadNotFound) {
		t.Fatalf("session after failed commit: %v", err)
	}
	if _, err := s.Stat(ctx, digest.FromString("data")); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("blob stored under its real digest after a failed commit: %v", err)
	}
}

func TestUploadIDsAreNotPaths(t *testing.T) {
	s, _ := NewFS(t.TempDir())
	for _, id := range []string{"../../etc/passwd", "..", "", strings.Repeat("a", 32) + "/x", "ABCDEF0123456789ABCDEF0123456789"} {
		if _, err := s.Upload(context.Background(), id); !errors.Is(err, ErrUploadNotFound) {
			t.Errorf("upload id %q: %v", id, err)
		}
	}
}

func TestStaleTemporaryFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFS(dir)
	stale := filepath.Join(dir, "tmp", "put-123")
	os.WriteFile(stale, []byte("half a blob"), 0o600)
	if _, err := NewFS(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temporary file survives a restart: %v", err)
	}
	_ = s
}
