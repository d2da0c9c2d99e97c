package main

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   sample
		want float64
	}{
		{sample{3}, 3},
		{sample{3, 1, 2}, 2},
		{sample{4, 1, 3, 2}, 2.5},
		{sample{5, 5, 1, 9, 5}, 5},
	}
	for _, tt := range tests {
		if got := tt.in.median(); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := (sample{}).median(); !math.IsNaN(got) {
		t.Errorf("median of an empty sample = %v, want NaN", got)
	}
}

func TestMedianLeavesSampleAlone(t *testing.T) {
	s := sample{3, 1, 2}
	s.median()
	if s[0] != 3 || s[1] != 1 || s[2] != 2 {
		t.Errorf("median reordered its sample: %v", s)
	}
}

func TestSpread(t *testing.T) {
	if got := (sample{90, 100, 110}).spread(); math.Abs(got-0.2) > 1e-9 {
		t.Errorf("spread = %v, want 0.2", got)
	}
	if got := (sample{100}).spread(); got != 0 {
		t.Errorf("spread of one value = %v, want 0", got)
	}
	if got := (sample{2, 8}).min(); got != 2 {
		t.Errorf("min = %v, want 2", got)
	}
	if got := (sample{2, 8}).max(); got != 8 {
		t.Errorf("max = %v, want 8", got)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one value = %v, want 7", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestMBps(t *testing.T) {
	if got := mbps(2e6, time.Second); got != 2 {
		t.Errorf("mbps(2e6 B, 1 s) = %v, want 2", got)
	}
	if got := mbps(1, 0); !math.IsNaN(got) {
		t.Errorf("mbps over no time = %v, want NaN", got)
	}
}
