package fsck

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/internal/storage"
)

// Scrubber verifies every blob against its digest, slowly and forever, and
// quarantines the damaged ones, so that damage nobody has pulled yet is
// found and a push repairs it before a client needs it. It reads at Rate
// bytes per second and holds no lock while it reads: pushes, pulls and
// garbage collection go on beside it.
type Scrubber struct {
	Store Store
	// Rate is how many bytes per second it reads (more than 0).
	Rate int64
	// Interval is the least time from the start of one pass over every
	// blob to the start of the next (default a day), so that a small store
	// is not re-read without pause.
	Interval time.Duration
	Log      *slog.Logger
	// OnDamage, OnBytes and OnPass, when set, are told of each damaged
	// blob, of bytes verified and of each finished pass (metrics).
	OnDamage func(storage.Damage)
	OnBytes  func(n int64)
	OnPass   func()
	// Now and Sleep are the clock; tests replace them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (s *Scrubber) defaults() {
	if s.Interval <= 0 {
		s.Interval = 24 * time.Hour
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Sleep == nil {
		s.Sleep = sleep
	}
}

// Run scrubs pass after pass until ctx ends.
func (s *Scrubber) Run(ctx context.Context) {
	s.defaults()
	for {
		start := s.Now()
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("scrub pass failed", "err", err)
		}
		if err := s.Sleep(ctx, s.Interval-s.Now().Sub(start)); err != nil {
			return
		}
	}
}

// PassResult is what one pass did.
type PassResult struct {
	Blobs   int
	Bytes   int64
	Damaged []storage.Damage
}

// Pass verifies every blob once.
func (s *Scrubber) Pass(ctx context.Context) (PassResult, error) {
	s.defaults()
	var r PassResult
	p := &pacer{ctx: ctx, rate: s.Rate, now: s.Now, sleep: s.Sleep, start: s.Now()}
	buf := make([]byte, 256<<10)
	err := s.Store.Walk(ctx, func(b storage.BlobInfo) error {
		why, file, n, err := Verify(ctx, s.Store, b.Digest, buf, p.wait)
		r.Bytes += n
		if s.OnBytes != nil && n > 0 {
			s.OnBytes(n)
		}
		if errors.Is(err, storage.ErrBlobNotFound) {
			return nil // collected or quarantined meanwhile
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.Log.Warn("scrub could not read a blob", "digest", b.Digest, "err", err)
			return nil
		}
		r.Blobs++
		if why == nil {
			return nil
		}
		why.FoundBy = "scrub"
		moved, err := s.Store.Quarantine(ctx, file, *why)
		s.Log.Error("damaged blob found by the scrub; push it again to repair it", "digest", b.Digest,
			"size", why.Size, "actual_digest", why.ActualDigest, "quarantined", moved, "err", err)
		if s.OnDamage != nil {
			s.OnDamage(*why)
		}
		r.Damaged = append(r.Damaged, *why)
		return nil
	})
	if err != nil {
		return r, err
	}
	if s.OnPass != nil {
		s.OnPass()
	}
	s.Log.Info("scrub pass done", "blobs", r.Blobs, "bytes", r.Bytes, "damaged", len(r.Damaged), "duration", s.Now().Sub(p.start).Round(time.Second))
	return r, nil
}

// pacer keeps reading at rate bytes per second on average.
type pacer struct {
	ctx   context.Context
	rate  int64
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
	start time.Time
	done  int64
}

// wait is called after n more bytes were read and sleeps until they are due.
func (p *pacer) wait(n int) error {
	p.done += int64(n)
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	now := p.now()
	if now.Sub(due) > time.Second {
		// Behind (a slow disk): start counting afresh rather than read
		// in a burst to catch up.
		p.start, p.done = now, 0
		return nil
	}
	if d := due.Sub(now); d > 0 {
		return p.sleep(p.ctx, d)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
