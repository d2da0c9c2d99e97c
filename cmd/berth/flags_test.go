package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestGroupFlagValues(t *testing.T) {
	multi := []string{"repository", "add-repository"}
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"one group", []string{"-n", "x", "--repository", "samples/*", "content/read", "content/write"},
			[]string{"-n", "x", "--repository=samples/* content/read content/write"}},
		{"two groups", []string{"--repository", "samples/*", "content/read", "content/write", "--repository", "other", "metadata/read", "-n", "x"},
			[]string{"--repository=samples/* content/read content/write", "--repository=other metadata/read", "-n", "x"}},
		{"inline first word", []string{"--repository=samples/*", "content/read", "--description", "d"},
			[]string{"--repository=samples/* content/read", "--description", "d"}},
		{"quoted group", []string{"--repository", "samples/* content/read"}, []string{"--repository=samples/* content/read"}},
		{"other flags untouched", []string{"--description", "two words", "--status", "enabled"}, []string{"--description", "two words", "--status", "enabled"}},
		{"flag without words", []string{"--repository", "--status", "x"}, []string{"--repository=", "--status", "x"}},
		{"stops at --", []string{"--repository", "a", "content/read", "--", "--repository", "b"}, []string{"--repository=a content/read", "--", "--repository", "b"}},
		{"second flag name", []string{"--add-repository", "a", "content/read"}, []string{"--add-repository=a content/read"}},
		{"prefix is not the flag", []string{"--repository-x", "a", "b"}, []string{"--repository-x", "a", "b"}},
	}
	for _, tt := range tests {
		if got := groupFlagValues(tt.in, multi...); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestRepositoryFlag parses whole command lines through cobra.
func TestRepositoryFlag(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		err  string
	}{
		{args: []string{"-n", "x", "--repository", "samples/*", "content/read", "content/write", "--repository", "other", "metadata/read"},
			want: []string{"repositories/samples/*/content/read", "repositories/samples/*/content/write", "repositories/other/metadata/read"}},
		{args: []string{"--repository", "*", "content/delete", "-n", "x"}, want: []string{"repositories/*/content/delete"}},
		{args: []string{"-n", "x", "--repository", "a/*/b", "content/read"}, err: `a wildcard may only appear as a whole trailing path segment, as in "a/*"`},
		{args: []string{"-n", "x", "--repository", "a"}, err: "give a repository pattern and one or more actions"},
		{args: []string{"-n", "x", "--repository", "a", "content/pull"}, err: `invalid action "content/pull"`},
		{args: []string{"-n", "x", "--repository", "a", "content/read", "--bogus"}, err: "unknown flag: --bogus"},
		{args: []string{"--repository", "a", "content/read"}, err: `required flag(s) "name" not set`},
		{args: []string{"-n", "x", "stray", "--repository", "a", "content/read"}, err: `unexpected argument "stray"`},
	}
	for _, tt := range tests {
		var got []string
		var name string
		cmd := &cobra.Command{Use: "create", SilenceErrors: true, SilenceUsage: true}
		repos := addRepositoryFlag(cmd.Flags(), "repository", "grants")
		cmd.Flags().StringVarP(&name, "name", "n", "", "name")
		cmd.MarkFlagRequired("name")
		cmd.RunE = func(*cobra.Command, []string) error {
			got = repos.actions
			return nil
		}
		withGroupedFlags(cmd, "repository")
		cmd.SetArgs(tt.args)
		cmd.SetOut(&bytes.Buffer{})
		err := cmd.Execute()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
}

func TestGroupedFlagsHelp(t *testing.T) {
	cmd := &cobra.Command{Use: "create", Long: "Creates things.", RunE: func(*cobra.Command, []string) error { return nil }}
	addRepositoryFlag(cmd.Flags(), "repository", "grants")
	withGroupedFlags(cmd, "repository")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), "Creates things.") || !strings.Contains(out.String(), "--repository REPO ACTION...") {
		t.Errorf("help: %v\n%s", err, out.String())
	}
}

func TestNormalizeServer(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"localhost:5000", "http://localhost:5000", ""},
		{"127.0.0.1:5000/", "http://127.0.0.1:5000", ""},
		{"registry.example.com", "https://registry.example.com", ""},
		{"http://registry.example.com:8080/", "http://registry.example.com:8080", ""},
		{"https://example.com/berth/", "https://example.com/berth", ""},
		{"ftp://x", "", "invalid server"},
		{"https://", "", "invalid server"},
	}
	for _, tt := range tests {
		got, err := normalizeServer(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseImage(t *testing.T) {
	tests := []struct{ in, repo, ref string }{
		{"team/app:v1", "team/app", "v1"},
		{"app@sha256:abc", "app", "sha256:abc"},
		{"team/app", "", ""},
		{"team/app:", "", ""},
	}
	for _, tt := range tests {
		repo, ref, err := parseImage(tt.in)
		if tt.repo == "" {
			if err == nil {
				t.Errorf("%q: no error", tt.in)
			}
			continue
		}
		if err != nil || repo != tt.repo || ref != tt.ref {
			t.Errorf("%q: got %q %q %v", tt.in, repo, ref, err)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	if got, err := parseSince("24h", now); err != nil || !got.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("24h: %v %v", got, err)
	}
	if got, err := parseSince("2030-01-01T00:00:00Z", now); err != nil || got.Day() != 1 {
		t.Errorf("time: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-1h", "2030-01-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
