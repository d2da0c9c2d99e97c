package main

import (
	"math"
	"slices"
	"time"
)

// sample is the repeated measurements of one quantity, in the unit of the
// row it belongs to (MB/s, requests/s, seconds, bytes).
type sample []float64

// median returns the middle value, or the mean of the two middle values; NaN
// for an empty sample.
func (s sample) median() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	v := slices.Clone(s)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// min and max return the extremes of the sample; NaN when it is empty.
func (s sample) min() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Min(s)
}

func (s sample) max() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Max(s)
}

// spread is (max-min)/median: how far apart the repetitions were, relative to
// the value reported. 0 for fewer than two values.
func (s sample) spread() float64 {
	if len(s) < 2 {
		return 0
	}
	m := s.median()
	if m == 0 {
		return 0
	}
	return (s.max() - s.min()) / math.Abs(m)
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest value such that at least p % of the
// values are less than or equal to it. sorted must be in ascending order.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// mbps converts bytes moved in d into MB/s (10^6 bytes per second).
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(bytes) / 1e6 / d.Seconds()
}
