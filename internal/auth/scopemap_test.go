package auth

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseScopeMapAction(t *testing.T) {
	tests := []struct {
		in      string
		pattern string
		action  Actions
	}{
		{"repositories/team/app/content/read", "team/app", ContentRead},
		{"repositories/samples/*/content/read", "samples/*", ContentRead},
		{"repositories/*/metadata/write", "*", MetadataWrite},
		{"repositories/app/content/delete", "app", ContentDelete},
		{"repositories/a/b/c/d/metadata/read", "a/b/c/d", MetadataRead},
		{"repositories/content/content/write", "content", ContentWrite}, // a repository may be called "content"
		{"repositories/content/read/content/read", "content/read", ContentRead},
	}
	for _, tt := range tests {
		a, err := ParseScopeMapAction(tt.in)
		if err != nil {
			t.Errorf("ParseScopeMapAction(%q): %v", tt.in, err)
			continue
		}
		if a.Pattern.String() != tt.pattern || a.Action != tt.action || a.String() != tt.in {
			t.Errorf("ParseScopeMapAction(%q) = {%q %v} %q", tt.in, a.Pattern, a.Action, a.String())
		}
	}
}

func TestParseScopeMapActionRejects(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", `must have the form "repositories/<repository pattern>/<action>"`},
		{"team/app/content/read", "must have the form"},
		{"Repositories/team/app/content/read", "must have the form"},
		{"repositories/content/read", "must have the form"},
		{"repositories//content/read", "must have the form"},
		{"repositories/team/app/content", "invalid action"},
		{"repositories/team/app/pull", `invalid action "app/pull"`},
		{"repositories/team/app/content/Read", `invalid action "content/Read"`},
		{"repositories/team/app/content/*", "invalid action"},
		{"repositories/team/app/gateway/read", "invalid action"},
		{"repositories/Team/app/content/read", "upper-case letter"},
		{"repositories/a/*/b/content/read", "a wildcard may only appear"},
		{"repositories/a/b*/content/read", "a wildcard may only appear"},
		{"repositories/../content/read", "must start and end"},
		{"repositories/a//content/read", "empty path segment"},
		{"repositories/a/content/read/", "invalid action"},
	}
	for _, tt := range tests {
		a, err := ParseScopeMapAction(tt.in)
		if err == nil {
			t.Errorf("ParseScopeMapAction(%q) = %v, want error", tt.in, a)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseScopeMapAction(%q) = %q, want it to mention %q", tt.in, err, tt.msg)
		}
	}
}

func TestRepositoryActions(t *testing.T) {
	got, err := RepositoryActions("samples/*", "content/read", "metadata/read")
	want := []string{"repositories/samples/*/content/read", "repositories/samples/*/metadata/read"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("RepositoryActions = %q, %v; want %q", got, err, want)
	}
	for _, bad := range [][]string{{"a/*/b", "content/read"}, {"app", "pull"}, {"app"}} {
		if _, err := RepositoryActions(bad[0], bad[1:]...); err == nil {
			t.Errorf("RepositoryActions(%q) succeeded", bad)
		}
	}
}

func TestNormalizeActions(t *testing.T) {
	in := []string{
		"repositories/b/metadata/read",
		"repositories/a/*/content/write",
		"repositories/b/content/read",
		"repositories/a/*/content/read",
		"repositories/b/content/read",
	}
	want := []string{
		"repositories/a/*/content/read",
		"repositories/a/*/content/write",
		"repositories/b/content/read",
		"repositories/b/metadata/read",
	}
	got, err := NormalizeActions(in)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("NormalizeActions = %q, %v; want %q", got, err, want)
	}
	if _, err := NormalizeActions([]string{"repositories/a/*/b/content/read"}); err == nil {
		t.Error("NormalizeActions accepted an invalid action")
	}
}

func TestValidateNames(t *testing.T) {
	tests := []struct {
		name      string
		scopeMap  bool // valid as a user scope-map name
		tokenName bool // valid as a token name
	}{
		{"abcde", true, true},
		{"abcd", false, false},
		{strings.Repeat("a", 50), true, true},
		{strings.Repeat("a", 51), false, false},
		{"ci-push_Token1", true, true},
		{"_repositories_pull", false, true}, // '_' is reserved for built-in maps only
		{"_mine", false, true},
		{"my map", false, false},
		{"my.map", false, false},
		{"my:token", false, false},
		{"tökenx", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		if err := ValidateScopeMapName(tt.name); (err == nil) != tt.scopeMap {
			t.Errorf("ValidateScopeMapName(%q) = %v", tt.name, err)
		}
		if err := ValidateTokenName(tt.name); (err == nil) != tt.tokenName {
			t.Errorf("ValidateTokenName(%q) = %v", tt.name, err)
		}
	}
}

func TestScopeMapValidate(t *testing.T) {
	ok := ScopeMap{Name: "ci-scope-map", Type: UserDefined, Actions: []string{"repositories/team/*/content/read"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	many := make([]string, 0, MaxScopeMapPatterns+1)
	for i := range MaxScopeMapPatterns + 1 {
		many = append(many, fmt.Sprintf("repositories/repo%d/content/read", i))
	}
	tests := []struct {
		name string
		edit func(*ScopeMap)
		msg  string // "" means valid
	}{
		{"valid", func(m *ScopeMap) {}, ""},
		{"empty actions", func(m *ScopeMap) { m.Actions = nil }, ""},
		{"500 patterns", func(m *ScopeMap) { m.Actions = many[:500] }, ""},
		{"duplicates do not count twice", func(m *ScopeMap) {
			m.Actions = append(slices.Clone(many[:500]), "repositories/repo1/content/write")
		}, ""},
		{"501 patterns", func(m *ScopeMap) { m.Actions = many }, "maximum is 500"},
		{"256-char description", func(m *ScopeMap) { m.Description = strings.Repeat("é", 256) }, ""},
		{"257-char description", func(m *ScopeMap) { m.Description = strings.Repeat("a", 257) }, "maximum is 256"},
		{"invalid UTF-8 description", func(m *ScopeMap) { m.Description = "\xff" }, "UTF-8"},
		{"bad action", func(m *ScopeMap) { m.Actions = []string{"repositories/a/*/b/content/read"} }, "wildcard"},
		{"leading underscore", func(m *ScopeMap) { m.Name = "_repositories_mine" }, "reserved"},
		{"short name", func(m *ScopeMap) { m.Name = "abc" }, "5 to 50"},
		{"no type", func(m *ScopeMap) { m.Type = "" }, "type must be"},
		{"fake system map", func(m *ScopeMap) { m.Type = SystemDefined }, "only the built-in"},
		{"changed built-in", func(m *ScopeMap) {
			*m, _ = BuiltinScopeMap(ScopeMapPull)
			m.Actions = append(m.Actions, "repositories/*/content/write")
		}, "cannot be changed"},
	}
	for _, tt := range tests {
		m := ok
		m.Actions = slices.Clone(ok.Actions)
		tt.edit(&m)
		err := m.Validate()
		switch {
		case tt.msg == "" && err != nil:
			t.Errorf("%s: Validate = %v, want nil", tt.name, err)
		case tt.msg != "" && (err == nil || !strings.Contains(err.Error(), tt.msg)):
			t.Errorf("%s: Validate = %v, want error mentioning %q", tt.name, err, tt.msg)
		}
	}
}

func TestBuiltinScopeMaps(t *testing.T) {
	want := map[string]Actions{
		ScopeMapAdmin:             AllActions,
		ScopeMapPull:              ContentRead,
		ScopeMapPullMetadataRead:  ContentRead | MetadataRead,
		ScopeMapPush:              ContentRead | ContentWrite | ContentOverwrite,
		ScopeMapPushMetadataWrite: ContentRead | ContentWrite | MetadataRead | MetadataWrite | ContentOverwrite,
	}
	maps := BuiltinScopeMaps()
	if len(maps) != len(want) {
		t.Fatalf("%d built-in maps, want %d", len(maps), len(want))
	}
	for _, m := range maps {
		if err := m.Validate(); err != nil {
			t.Errorf("built-in %s: %v", m.Name, err)
		}
		if m.Type != SystemDefined || !strings.HasPrefix(m.Name, "_") {
			t.Errorf("built-in %s has type %q", m.Name, m.Type)
		}
		groups, err := GroupActions(m.Actions)
		if err != nil || len(groups) != 1 || groups[0].Pattern.Kind() != PatternAll || groups[0].Actions != want[m.Name] {
			t.Errorf("built-in %s grants %v, want %v on *", m.Name, groups, want[m.Name])
		}
		p := MustCompile(m)
		for _, repo := range []string{"a", "team/app", "x/y/z"} {
			if got := p.Allowed(repo); got != want[m.Name] {
				t.Errorf("built-in %s allows %v on %s, want %v", m.Name, got, repo, want[m.Name])
			}
		}
	}
	// Callers get their own copies.
	maps[0].Actions[0] = "changed"
	if m, _ := BuiltinScopeMap(maps[0].Name); m.Actions[0] == "changed" {
		t.Error("BuiltinScopeMaps shares state between calls")
	}
}
