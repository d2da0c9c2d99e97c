package server

import "testing"

func TestDefaultMaxConnections(t *testing.T) {
	tests := []struct {
		limit uint64
		known bool
		want  int
	}{
		{512, true, 224},
		{1024, true, 480},
		{1 << 20, true, (1<<20 - 64) / 2},
		{1 << 63, true, (1<<22 - 64) / 2}, // unlimited
		{40, true, 16},
		{0, false, 4096},
	}
	for _, tt := range tests {
		if got := defaultMaxConnections(tt.limit, tt.known); got != tt.want {
			t.Errorf("limit %d (known %v): %d, want %d", tt.limit, tt.known, got, tt.want)
		}
	}
}
