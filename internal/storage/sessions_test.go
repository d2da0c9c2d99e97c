package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestUploadSessionCaps opens sessions up to and beyond the caps, through
// the ways sessions end, and across a restart.
func TestUploadSessionCaps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	limits := UploadLimits{PerIdentity: 2, PerRepository: 3}
	open := func(t *testing.T) *FS {
		t.Helper()
		s, err := NewFS(dir)
		if err != nil {
			t.Fatal(err)
		}
		existing, err := s.Uploads()
		if err != nil {
			t.Fatal(err)
		}
		s.SetUploadCounter(NewSessionCounter(limits, existing))
		return s
	}
	s := open(t)
	ids := map[string]string{}
	steps := []struct {
		name, repo, owner string
		scope             string // the cap that refuses it, or ""
		before            func(t *testing.T)
	}{
		{name: "a1", repo: "r", owner: "alice"},
		{name: "a2", repo: "r", owner: "alice"},
		{name: "a3", repo: "other", owner: "alice", scope: "identity"},
		{name: "b1", repo: "r", owner: "bob"},
		{name: "b2", repo: "r", owner: "bob", scope: "repository"},
		{name: "b2 elsewhere", repo: "other", owner: "bob"},
		{name: "a after a cancel", repo: "other", owner: "alice", before: func(t *testing.T) {
			if err := s.Cancel(ctx, ids["a1"]); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a again", repo: "other", owner: "alice", scope: "identity"},
		{name: "a after a commit", repo: "other", owner: "alice", before: func(t *testing.T) {
			if _, err := s.Commit(ctx, ids["a2"], digest.FromString("x"), strings.NewReader("x")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a after a failed commit", repo: "third", owner: "alice", scope: "identity", before: func(t *testing.T) {
			// A digest mismatch ends the session, so the slot is free...
			if _, err := s.Commit(ctx, ids["a after a cancel"], digest.FromString("y"), strings.NewReader("not y")); !errors.Is(err, ErrDigestMismatch) {
				t.Fatal(err)
			}
			// ...and taken again at once.
			if _, err := s.StartUpload(ctx, "third", "alice"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a after a restart", repo: "fourth", owner: "alice", scope: "identity", before: func(t *testing.T) {
			s = open(t)
		}},
		{name: "b at its cap", repo: "fourth", owner: "bob", scope: "identity"},
		{name: "b after a restart", repo: "fourth", owner: "bob", before: func(t *testing.T) {
			// Sessions from before owners were recorded count for their
			// repository only: bob has one counted session left.
			if err := os.Remove(filepath.Join(dir, "uploads", ids["b1"], "owner")); err != nil {
				t.Fatal(err)
			}
			s = open(t)
		}},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before(t)
		}
		u, err := s.StartUpload(ctx, st.repo, st.owner)
		var many *TooManyUploadsError
		switch {
		case st.scope == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.scope != "" && (!errors.As(err, &many) || many.Scope != st.scope || !errors.Is(err, ErrTooManyUploads)):
			t.Fatalf("%s: %v, want the %s cap", st.name, err, st.scope)
		}
		ids[st.name] = u.ID
	}
	// Nothing of a refused session is on disk.
	entries, _ := os.ReadDir(filepath.Join(dir, "uploads"))
	if got, want := len(entries), 5; got != want {
		t.Errorf("%d sessions on disk, want %d (alice 2, bob 3)", got, want)
	}
}

// TestPurgeUploadsExpiresEmptySessions removes sessions that received no
// bytes long before those that did, and frees their slots.
func TestPurgeUploadsExpiresEmptySessions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	counter := NewSessionCounter(UploadLimits{PerIdentity: 4}, nil)
	s.SetUploadCounter(counter)
	sessions := []struct {
		name  string
		data  string
		idle  time.Duration
		purge bool
	}{
		{"empty, idle", "", 10 * time.Minute, true},
		{"empty, fresh", "", time.Minute, false},
		{"started, idle", "some bytes", 10 * time.Minute, false},
		{"started, past the TTL", "some bytes", 25 * time.Hour, true},
	}
	ids := make([]string, len(sessions))
	for i, c := range sessions {
		u, err := s.StartUpload(ctx, "r", "ci")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, u.ID, 0, strings.NewReader(c.data)); err != nil {
			t.Fatal(err)
		}
		then := time.Now().Add(-c.idle)
		if err := os.Chtimes(filepath.Join(dir, "uploads", u.ID, "data"), then, then); err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	if _, err := s.StartUpload(ctx, "r", "ci"); !errors.Is(err, ErrTooManyUploads) {
		t.Fatalf("a fifth session: %v, want the cap", err)
	}
	n, err := s.PurgeUploads(24*time.Hour, 5*time.Minute)
	if err != nil || n != 2 {
		t.Fatalf("purged %d (%v), want 2", n, err)
	}
	for i, c := range sessions {
		if _, err := s.Upload(ctx, ids[i]); (err != nil) != c.purge {
			t.Errorf("%s: %v, want purged %v", c.name, err, c.purge)
		}
	}
	if counter.Count() != 2 {
		t.Errorf("%d sessions counted after the purge, want 2", counter.Count())
	}
}
