package storage

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Quarantine moves the file it was shown, not whatever is at the blob's
// path by then: a push that replaced a damaged file meanwhile must keep
// its good copy.
func TestQuarantineSparesAFileReplacedMeanwhile(t *testing.T) {
	s, _ := NewFS(t.TempDir())
	ctx := context.Background()
	d := digest.FromString("content")
	if _, err := s.Put(ctx, d, strings.NewReader("content")); err != nil {
		t.Fatal(err)
	}
	p, _ := s.blobPath(d)
	if err := os.Truncate(p, 3); err != nil {
		t.Fatal(err)
	}
	stale, err := s.StatBlob(ctx, d)
	if err != nil || stale.Size != 3 {
		t.Fatalf("stat: %+v %v", stale, err)
	}
	if _, err := s.PutSized(ctx, d, 7, strings.NewReader("content")); err != nil {
		t.Fatal(err)
	}
	if moved, err := s.Quarantine(ctx, stale, Damage{Size: 3, ExpectedSize: 7, FoundBy: "test"}); moved || err != nil {
		t.Fatalf("quarantine of a replaced file: moved=%v err=%v", moved, err)
	}
	if n, err := s.Stat(ctx, d); err != nil || n != 7 {
		t.Fatalf("the repaired blob: %d %v", n, err)
	}

	cur, _ := s.StatBlob(ctx, d)
	if moved, err := s.Quarantine(ctx, cur, Damage{Size: 7, FoundBy: "test"}); !moved || err != nil {
		t.Fatalf("quarantine: moved=%v err=%v", moved, err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("a quarantined blob is still stored: %v", err)
	}
	q, err := s.Quarantined(ctx)
	if err != nil || len(q) != 1 || q[0].Digest != d || q[0].FoundBy != "test" {
		t.Fatalf("quarantined: %+v %v", q, err)
	}
	if _, err := os.Stat(s.root + "/" + q[0].Path); err != nil {
		t.Fatalf("the quarantined file: %v", err)
	}
}
