package auth

import (
	"strings"
	"testing"
)

func TestValidateRepository(t *testing.T) {
	long := strings.Repeat("a", MaxRepositoryLength)
	valid := []string{
		"a", "app", "team/app", "a/b/c/d/e", "my-app", "my--app", "my_app", "my__app",
		"my.app", "v1.2.3", "0", "9lives/x", "a-b-c/d.e_f__g", long,
		"library/ubuntu", "samples/teama/x",
	}
	for _, n := range valid {
		if err := ValidateRepository(n); err != nil {
			t.Errorf("ValidateRepository(%q) = %v, want nil", n, err)
		}
	}
	invalid := []struct {
		name, msg string // msg: a fragment the error must contain
	}{
		{"", "empty"},
		{long + "a", "maximum is 255"},
		{"Team/app", "upper-case letter 'T' at offset 0"},
		{"team/App", "upper-case letter 'A' at offset 5"},
		{"/app", "empty path segment at offset 0"},
		{"app/", "empty path segment at offset 4"},
		{"team//app", "empty path segment at offset 5"},
		{"..", "must start and end"},
		{"a/../b", "must start and end"},
		{"a/./b", "must start and end"},
		{"a..b", `separator ".."`},
		{"a._b", `separator "._"`},
		{"a___b", `separator "___"`},
		{"a-_b", `separator "-_"`},
		{"-a", "must start and end"},
		{"a-", "must start and end"},
		{"a_", "must start and end"},
		{"%2e%2e/x", "character '%'"},
		{"a%2fb", "character '%'"},
		{"team/app:latest", "character ':'"},
		{"localhost:5000/app", "character ':'"},
		{"a b", "character ' '"},
		{"a\x00b", "character '\\x00'"},
		{"a/b*", "wildcard '*'"},
		{"*", "wildcard '*'"},
		{"café", "character 'é'"},
		{"a\\b", "character '\\\\'"},
		{"a@sha256", "character '@'"},
	}
	for _, tt := range invalid {
		err := ValidateRepository(tt.name)
		if err == nil {
			t.Errorf("ValidateRepository(%q) = nil, want error", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ValidateRepository(%q) = %q, want it to mention %q", tt.name, err, tt.msg)
		}
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in   string
		kind PatternKind
		name string
	}{
		{"*", PatternAll, ""},
		{"team/app", PatternExact, "team/app"},
		{"app", PatternExact, "app"},
		{"team/*", PatternPrefix, "team"},
		{"samples/teama/*", PatternPrefix, "samples/teama"},
		{"a.b-c/d__e/*", PatternPrefix, "a.b-c/d__e"},
		{strings.Repeat("a", 253) + "/*", PatternPrefix, strings.Repeat("a", 253)},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", tt.in, err)
			continue
		}
		if p.Kind() != tt.kind || p.Name() != tt.name || p.String() != tt.in {
			t.Errorf("ParsePattern(%q) = {%v %q %q}, want {%v %q %q}", tt.in, p.Kind(), p.Name(), p.String(), tt.kind, tt.name, tt.in)
		}
	}
}

func TestParsePatternRejects(t *testing.T) {
	const wildcard = "a wildcard may only appear as a whole trailing path segment"
	tests := []struct {
		in, msg string
	}{
		{"a/b*", wildcard + `, as in "a/*", or alone as "*"`},
		{"a/*/b", wildcard + `, as in "a/*"`},
		{"a/*/b/*", wildcard + `, as in "a/*"`},
		{"*/a", wildcard + `, as in "team/*"`},
		{"**", wildcard},
		{"a/**", wildcard + `, as in "a/*"`},
		{"a*", wildcard + `, as in "team/*"`},
		{"/*", wildcard},
		{"a/*/", wildcard},
		{"*a", wildcard},
		{"a/b/*c", wildcard + `, as in "a/b/*"`},
		{"", "it is empty"},
		{"Team/app", "upper-case letter 'T'"},
		{"Team/*", "the part before \"/*\" is not a repository name: upper-case"},
		{"team//*", "the part before \"/*\" is not a repository name: empty path segment"},
		{"a/../*", "the part before"},
		{"a..b/*", "the part before"},
		{"a:1/*", "the part before"},
		{"team/app/", "empty path segment"},
		{"%2e%2e/*", "the part before"},
		{" *", wildcard},
		{"* ", wildcard},
		{strings.Repeat("a", 254) + "/*", "maximum is 255"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if err == nil {
			t.Errorf("ParsePattern(%q) = %v, want error", tt.in, p)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "invalid repository pattern ") {
			t.Errorf("ParsePattern(%q) error = %q, want it to contain %q", tt.in, err, tt.msg)
		}
	}
	// The exact message the design promises.
	_, err := ParsePattern("a/b*")
	const want = `invalid repository pattern "a/b*": a wildcard may only appear as a whole trailing path segment, as in "a/*", or alone as "*"`
	if err == nil || err.Error() != want {
		t.Errorf("ParsePattern(\"a/b*\") error = %v, want %s", err, want)
	}
}

func TestPatternMatches(t *testing.T) {
	tests := []struct {
		pattern string
		repo    string
		want    bool
	}{
		{"*", "anything/at/all", true},
		{"*", "x", true},
		{"team/app", "team/app", true},
		{"team/app", "team/app2", false},
		{"team/app", "team/app/sub", false},
		{"team/app", "team", false},
		{"team/*", "team/app", true},
		{"team/*", "team/a/b/c", true},
		{"team/*", "team", false}, // strictly below
		{"team/*", "teamx/app", false},
		{"team/*", "team2/app", false},
		{"team/*", "other/team/app", false},
		{"samples/teama/*", "samples/teama/x", true},
		{"samples/teama/*", "samples/teamb/x", false},
		{"samples/teama/*", "samples/teama", false},
	}
	for _, tt := range tests {
		if got := MustParsePattern(tt.pattern).Matches(tt.repo); got != tt.want {
			t.Errorf("%q.Matches(%q) = %v, want %v", tt.pattern, tt.repo, got, tt.want)
		}
	}
	if (Pattern{}).Matches("x") || (Pattern{}).String() != "" {
		t.Error("the zero Pattern must match nothing")
	}
}

func TestPatternText(t *testing.T) {
	var p Pattern
	if err := p.UnmarshalText([]byte("team/*")); err != nil || p != MustParsePattern("team/*") {
		t.Fatalf("UnmarshalText: %v, %v", p, err)
	}
	if b, err := p.MarshalText(); err != nil || string(b) != "team/*" {
		t.Errorf("MarshalText = %q, %v", b, err)
	}
	if err := p.UnmarshalText([]byte("a/*/b")); err == nil {
		t.Error("UnmarshalText accepted a/*/b")
	}
	if _, err := (Pattern{}).MarshalText(); err == nil {
		t.Error("MarshalText of the zero Pattern succeeded")
	}
}
