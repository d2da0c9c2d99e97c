package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Values that clients choose (usernames, user agents, reasons) reach table
// cells; none may forge a row or a column or reach the terminal as a control
// sequence.
func TestTableEscapesHostileCells(t *testing.T) {
	tests := []struct {
		name, cell, want string
	}{
		{"plain", "docker/27.0.3 go/go1.22", "docker/27.0.3 go/go1.22"},
		{"unicode letters kept", "zoë/日本", "zoë/日本"},
		{"newline forges a row", "x\n2030-01-01T00:00:00Z  login  success  owner", `x\n2030-01-01T00:00:00Z  login  success  owner`},
		{"carriage return overwrites the line", "evil\rgood", `evil\rgood`},
		{"tab forges a column", "a\tb", `a\tb`},
		{"ANSI escape", "\x1b[2J\x1b]0;title\x07", `\x1b[2J\x1b]0;title\x07`},
		{"C1 CSI", "a\u009b31mred", `a\u009b31mred`},
		{"DEL and NUL", "a\x7fb\x00c", `a\x7fb\x00c`},
		{"bidi override", "user\u202egnp.exe", `user\u202egnp.exe`},
		{"zero-width space", "ad\u200bmin", `ad\u200bmin`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"invalid UTF-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"vertical tab and form feed", "a\vb\fc", `a\x0bb\x0cc`},
	}
	var out bytes.Buffer
	tb := newTable(&out, "NAME", "VALUE", "END")
	for _, tt := range tests {
		tb.row(tt.name, tt.cell, "end")
	}
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(tests)+1 {
		t.Fatalf("%d lines for %d rows and a header:\n%s", len(lines), len(tests), out.String())
	}
	for i, tt := range tests {
		line := lines[i+1]
		for _, r := range line {
			if r == utf8.RuneError || unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
				t.Errorf("%s: line %q holds %U", tt.name, line, r)
			}
		}
		f := strings.Fields(line)
		if f[len(f)-1] != "end" {
			t.Errorf("%s: last column is %q, want end: %q", tt.name, f[len(f)-1], line)
		}
		if !strings.Contains(line, "  "+tt.want+"  ") {
			t.Errorf("%s: line %q, want the cell shown as %q", tt.name, line, tt.want)
		}
	}
}
