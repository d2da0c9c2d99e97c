package auth

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// nameGrammar is the distribution spec's repository name grammar, used as
// an independent oracle for the hand-written validator.
var nameGrammar = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

func grammarName(s string) bool { return len(s) <= MaxRepositoryLength && nameGrammar.MatchString(s) }

var patternSeeds = []string{
	"", "*", "a", "team/app", "team/*", "a/*/b", "a/b*", "a/*/b/*", "*/a", "**", "/*", "a//*",
	"Team/app", "a..b", "a/../b", "%2e%2e/x", "a__b", "a___b", "a--b", "a.-b", "a/b/c/*",
	"café/*", "a\x00", strings.Repeat("a", 253) + "/*", strings.Repeat("a", 256),
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range patternSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)

		// The validator agrees with the spec's regular expression.
		wantOK := s == "*" || grammarName(s) ||
			strings.HasSuffix(s, "/*") && len(s) <= MaxRepositoryLength && grammarName(s[:len(s)-2])
		if (err == nil) != wantOK {
			t.Fatalf("ParsePattern(%q) error = %v, grammar says valid = %v", s, err, wantOK)
		}
		if !strings.Contains(s, "*") {
			if verr := ValidateRepository(s); (verr == nil) != grammarName(s) {
				t.Fatalf("ValidateRepository(%q) = %v, grammar disagrees", s, verr)
			}
		}
		if err != nil {
			if want := "invalid repository pattern " + strconv.Quote(s) + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q does not start with %q", err, want)
			}
			if p != (Pattern{}) {
				t.Fatalf("error with a non-zero pattern %v", p)
			}
			return
		}
		// A parsed pattern prints back as its input and parses to itself.
		if p.String() != s {
			t.Fatalf("ParsePattern(%q).String() = %q", s, p.String())
		}
		if q, err := ParsePattern(p.String()); err != nil || q != p {
			t.Fatalf("re-parse of %q = %v, %v", s, q, err)
		}
		switch p.Kind() {
		case PatternExact:
			if !p.Matches(s) || p.Matches(s+"/x") || p.Matches(s+"x") {
				t.Fatalf("exact %q matches wrongly", s)
			}
		case PatternPrefix:
			if p.Matches(p.Name()) || !p.Matches(p.Name()+"/x") || !p.Matches(p.Name()+"/x/y") || p.Matches(p.Name()+"x/y") {
				t.Fatalf("prefix %q matches wrongly", s)
			}
		case PatternAll:
		default:
			t.Fatalf("kind %v", p.Kind())
		}
	})
}

func FuzzParseScopeMapAction(f *testing.F) {
	for _, s := range patternSeeds {
		f.Add("repositories/" + s + "/content/read")
	}
	for _, s := range []string{"", "repositories/", "repositories//content/read", "repositories/a/content", "repositories/a/pull",
		"repositories/*/metadata/write", "repositories/content/read/content/read", "repositories/a/content/read/", "REPOSITORIES/a/content/read"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid scope map action "+strconv.Quote(s)) {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if a.String() != s {
			t.Fatalf("ParseScopeMapAction(%q).String() = %q", s, a.String())
		}
		if a.Action.Len() != 1 || a.Action&^AllActions != 0 || a.Pattern.Kind() == PatternInvalid {
			t.Fatalf("ParseScopeMapAction(%q) = %+v", s, a)
		}
		// The compiled policy agrees with the pattern.
		p, err := Compile(ScopeMap{Name: "fuzz", Type: UserDefined, Actions: []string{s}})
		if err != nil {
			t.Fatalf("Compile of a parsed action: %v", err)
		}
		for _, repo := range []string{a.Pattern.Name(), a.Pattern.Name() + "/x", a.Pattern.Name() + "/x/y", "x", "other/x"} {
			want := NoActions
			if a.Pattern.Matches(repo) {
				want = a.Action
			}
			if got := p.Allowed(repo); got != want {
				t.Fatalf("%q: Allowed(%q) = %v, want %v", s, repo, got, want)
			}
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"repository:team/app:pull", "repository:team/app:pull,push", "repository:team/app:*",
		"repository(plugin):x:pull", "registry:catalog:*", "repository:localhost:5000/app:pull",
		"repository:app:pull:push", "repository::pull", "repository:app:", "repository:a/../b:pull",
		"repository:%2e%2e:pull", "repository:A:pull", "repository:a:,,,", "repository(:a:pull", ":::",
		"repository:a:pull repository:b:push", "registry:catalog:pull,*",
	} {
		f.Add(s)
	}
	admin := Identity{Kind: KindAdmin, Name: "berth"}
	f.Fuzz(func(t *testing.T, s string) {
		sc, ok := ParseScope(s)
		if ok {
			checkScope(t, s, sc)
			back, ok2 := ParseScope(sc.String())
			if !ok2 || back != sc {
				t.Fatalf("ParseScope(%q) = %+v; its String %q parses to %+v, %v", s, sc, sc.String(), back, ok2)
			}
		} else if sc != (Scope{}) {
			t.Fatalf("dropped scope %q returned %+v", s, sc)
		}

		all := ParseScopes(s, s)
		if len(all) > MaxScopes {
			t.Fatalf("ParseScopes kept %d scopes", len(all))
		}
		for _, sc := range all {
			checkScope(t, s, sc)
		}
		// Even the admin gets no more than was asked for.
		for _, a := range Intersect(all, admin) {
			if a.Type == ScopeTypeRepository {
				var asked Actions
				for _, sc := range all {
					if sc.Name == a.Name && sc.Type == a.Type {
						asked |= sc.Actions
					}
				}
				for _, n := range a.Actions {
					if b, ok := ParseTokenAction(n); !ok || n == "*" || !asked.Has(b) {
						t.Fatalf("Intersect granted %q on %q, asked %v", n, a.Name, asked)
					}
				}
			}
		}
	})
}

func checkScope(t *testing.T, in string, sc Scope) {
	t.Helper()
	switch sc.Type {
	case ScopeTypeRepository:
		if err := ValidateRepository(sc.Name); err != nil {
			t.Fatalf("ParseScope(%q) kept invalid name: %v", in, err)
		}
		if sc.Actions&^AllActions != 0 {
			t.Fatalf("ParseScope(%q) actions %d", in, sc.Actions)
		}
		if sc.Class != "" && !validClass(sc.Class) {
			t.Fatalf("ParseScope(%q) class %q", in, sc.Class)
		}
	case ScopeTypeRegistry:
		if sc.Name != CatalogName || sc.Class != "" || sc.Actions != 0 {
			t.Fatalf("ParseScope(%q) = %+v", in, sc)
		}
	default:
		t.Fatalf("ParseScope(%q) type %q", in, sc.Type)
	}
}
