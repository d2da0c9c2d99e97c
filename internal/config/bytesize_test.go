package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"4MiB", 4 << 20, true},
		{"4 MiB/s", 4 << 20, true},
		{"500kB", 500e3, true},
		{"1.5GiB", 3 << 29, true},
		{"2G", 2 << 30, true},
		{"10b", 10, true},
		{"", 0, false},
		{"-1MiB", 0, false},
		{"fast", 0, false},
		{"9999999TiB", 0, false},
	} {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := ByteSize(4 << 20).String(); s != "4MiB" {
		t.Errorf("String: %q", s)
	}
}

func TestScrubRateFromFileAndEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(file, []byte("scrubRate: 16MiB\n"), 0o600)
	none := func(string) string { return "" }
	if c, _ := Load("", none); c.ScrubRate != DefaultScrubRate {
		t.Errorf("default scrub rate %d", c.ScrubRate)
	}
	if c, err := Load(file, none); err != nil || c.ScrubRate != 16<<20 {
		t.Errorf("from the file: %d %v", c.ScrubRate, err)
	}
	env := map[string]string{"BERTH_SCRUB_RATE": "0"}
	if c, err := Load(file, func(k string) string { return env[k] }); err != nil || c.ScrubRate != 0 {
		t.Errorf("from the environment: %d %v", c.ScrubRate, err)
	}
	env["BERTH_SCRUB_RATE"] = "lots"
	if _, err := Load(file, func(k string) string { return env[k] }); err == nil {
		t.Error("an invalid BERTH_SCRUB_RATE is accepted")
	}
}

func TestByteSizeHuman(t *testing.T) {
	for _, c := range []struct {
		n    ByteSize
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 40, "3.0 TiB"}} {
		if got := c.n.Human(); got != c.want {
			t.Errorf("ByteSize(%d).Human() = %q, want %q", c.n, got, c.want)
		}
	}
}
