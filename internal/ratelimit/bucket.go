package ratelimit

import (
	"math"
	"time"
)

// bucket is a token bucket: it holds up to burst requests and refills at
// rate per second. Its level is in requests (fractions included). The
// caller serialises its use.
type bucket struct {
	level float64
	at    time.Time // of the last refill
}

// refill brings the level to now, capped at burst. A bucket never used
// starts full.
func (b *bucket) refill(now time.Time, rate float64, burst int64) {
	if b.at.IsZero() {
		b.level, b.at = float64(burst), now
		return
	}
	if d := now.Sub(b.at); d > 0 {
		b.level = math.Min(float64(burst), b.level+d.Seconds()*rate)
		b.at = now
	}
	if b.level > float64(burst) {
		b.level = float64(burst) // the burst was lowered
	}
}

// take takes one request from the bucket, or says how long until one is
// there.
func (b *bucket) take(now time.Time, rate float64, burst int64) (ok bool, wait time.Duration) {
	b.refill(now, rate, burst)
	if b.level >= 1 {
		b.level--
		return true, 0
	}
	return false, waitFor(1-b.level, rate)
}

// grant takes up to want whole requests, for a lease; it returns how many.
func (b *bucket) grant(now time.Time, rate float64, burst, want int64) (int64, time.Duration) {
	b.refill(now, rate, burst)
	n := min(want, int64(math.Floor(b.level)))
	if n <= 0 {
		return 0, waitFor(1-b.level, rate)
	}
	b.level -= float64(n)
	return n, 0
}

func waitFor(missing, rate float64) time.Duration {
	return time.Duration(math.Ceil(missing / rate * float64(time.Second)))
}

// leaseSize is how many requests a node takes from the shared bucket at
// once: a tenth of a second's worth, at least one and at most the burst,
// so that a node asks the database about ten times a second at most while
// the token is busy, and holds little that another node could have used.
func leaseSize(rate float64, burst int64) int64 {
	return min(burst, max(1, int64(math.Ceil(rate/10))))
}

// leaseTTL is how long a node may use what it leased: unused requests of
// an older lease are dropped, so that an idle node cannot save up more
// than the bucket's burst across the cluster.
const leaseTTL = time.Second
