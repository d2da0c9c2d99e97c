package fsck

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// The scrub finds what the check before each response cannot (a changed
// byte) as well as a truncated file, at the rate it was given, without
// holding up pushes, and its quarantine makes the registry ask for the
// blobs again.
func TestScrubQuarantinesDamageAtItsRate(t *testing.T) {
	f := newFixture(t)
	flipped, cut, healthy := f.pushImage("flipped"), f.pushImage("cut"), f.pushImage("healthy")
	b, _ := os.ReadFile(f.path(flipped.ld))
	b[len(b)/2] ^= 1
	os.WriteFile(f.path(flipped.ld), b, 0o640)
	os.Truncate(f.path(cut.ld), 1000)

	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var slept time.Duration
	var bytes int64
	var damaged []digest.Digest
	passes := 0
	pushed := false
	s := &Scrubber{
		Store: f.fs,
		Rate:  1 << 20,
		Now:   func() time.Time { return clock },
		Sleep: func(_ context.Context, d time.Duration) error {
			if !pushed {
				// A push while the scrub is between reads must go
				// through: the scrub holds no lock.
				pushed = true
				f.pushBlob([]byte("pushed during the scrub"))
			}
			slept += d
			clock = clock.Add(d)
			return nil
		},
		OnDamage: func(d storage.Damage) { damaged = append(damaged, d.Digest) },
		OnBytes:  func(n int64) { bytes += n },
		OnPass:   func() { passes++ },
	}
	r, err := s.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(damaged)
	if want := sorted(flipped.ld, cut.ld); !slices.Equal(damaged, want) || len(r.Damaged) != 2 {
		t.Fatalf("damaged %v, want %v", damaged, want)
	}
	if bytes != r.Bytes || passes != 1 || !pushed {
		t.Fatalf("bytes %d (pass says %d), passes %d, pushed %v", bytes, r.Bytes, passes, pushed)
	}
	// Reading takes no time on this clock, so all of a pass's time is
	// sleep: the bytes it read at the rate.
	if want := time.Duration(float64(r.Bytes) / (1 << 20) * float64(time.Second)); slept < want-time.Millisecond || slept > want+time.Millisecond {
		t.Fatalf("slept %s for %d bytes at 1 MiB/s, want %s", slept, r.Bytes, want)
	}
	for _, d := range []digest.Digest{flipped.ld, cut.ld} {
		f.must(404, "HEAD", "/v2/r/blobs/"+d.String(), "", nil)
		f.must(404, "GET", "/v2/r/blobs/"+d.String(), "", nil)
	}
	f.pull(healthy)

	f.pushBlob(flipped.layer)
	f.pushBlob(cut.layer)
	f.pull(flipped)
	f.pull(cut)
	if r, err := s.Pass(context.Background()); err != nil || len(r.Damaged) != 0 {
		t.Fatalf("second pass: %+v %v", r, err)
	}
}
