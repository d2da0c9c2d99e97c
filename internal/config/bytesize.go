package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes written with an optional unit: "4MiB",
// "500kB", "1GB", "1048576". A rate may end in "/s".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest first, so "MiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// ParseByteSize reads a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSpace(strings.TrimSuffix(t, "/s"))
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: use a number of bytes with an optional unit, such as 4MiB or 500kB", s)
	}
	return ByteSize(n * float64(mult)), nil
}

// UnmarshalText reads a ByteSize from YAML or the environment.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String writes b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.name)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Human is b for people: whole bytes below 1 KiB, else one decimal in the
// largest binary unit it reaches ("1.5 MiB").
func (b ByteSize) Human() string {
	n := int64(b)
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Set and Type make *ByteSize a command-line flag value.
func (b *ByteSize) Set(s string) error { return b.UnmarshalText([]byte(s)) }

// Type names the flag's value in help.
func (b *ByteSize) Type() string { return "size" }
