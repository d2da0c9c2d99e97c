package main

import (
	"strings"
	"testing"
)

func TestRedactPaths(t *testing.T) {
	got := strings.Join(redactPaths([]string{"-out", "docs/benchmarks.md", "-berth-profile", "/tmp/x", "-workdir=/var/tmp", "-quick"}), " ")
	want := "-out docs/benchmarks.md -berth-profile DIR -workdir=DIR -quick"
	if got != want {
		t.Errorf("redactPaths = %q, want %q", got, want)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "64MiB": 64 << 20, "512KiB": 512 << 10, "1000": 1000} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	var b byteSize
	if err := b.Set("1GB"); err == nil {
		t.Errorf("Set(1GB) succeeded")
	}
}
