package auth

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	repo := func(name string, a Actions) Scope { return Scope{Type: "repository", Name: name, Actions: a} }
	tests := []struct {
		in   string
		want Scope
		ok   bool
	}{
		{"repository:team/app:pull", repo("team/app", ContentRead), true},
		{"repository:team/app:pull,push", repo("team/app", ContentRead|ContentWrite), true},
		{"repository:team/app:push,pull,delete", repo("team/app", ContentRead|ContentWrite|ContentDelete), true},
		{"repository:team/app:*", repo("team/app", AllActions&^ContentOverwrite), true},
		{"repository:team/app:metadata_read,metadata_write", repo("team/app", MetadataRead|MetadataWrite), true},
		{"repository:app:", repo("app", 0), true},                                        // no actions: kept, grants nothing
		{"repository:app:frob", repo("app", 0), true},                                    // unknown actions ignored
		{"repository:app:pull,frob,,push,", repo("app", ContentRead|ContentWrite), true}, // empty items ignored
		{"repository:app:PULL", repo("app", 0), true},                                    // action names are case-sensitive
		{"repository:app:pull:push", Scope{}, false},                                     // extra colon: name "app:pull" is invalid
		{"repository(plugin):team/plugin:pull", Scope{Type: "repository", Class: "plugin", Name: "team/plugin", Actions: ContentRead}, true},
		{"registry:catalog:*", Scope{Type: "registry", Name: "catalog"}, true},
		{"registry:catalog:pull,*", Scope{Type: "registry", Name: "catalog"}, true},

		// Names with a host or port: the type ends at the first colon and the
		// actions start after the last, so they parse, and are then dropped
		// as invalid repository names.
		{"repository:localhost:5000/app:pull", Scope{}, false},
		{"repository:registry.example.com:443/team/app:pull,push", Scope{}, false},

		// Dropped.
		{"", Scope{}, false},
		{"repository", Scope{}, false},
		{"repository:app", Scope{}, false},
		{":app:pull", Scope{}, false},
		{"repository::pull", Scope{}, false},
		{"Repository:app:pull", Scope{}, false},
		{"repository:Team/app:pull", Scope{}, false},
		{"repository:../etc:pull", Scope{}, false},
		{"repository:a/../b:pull", Scope{}, false},
		{"repository:%2e%2e/x:pull", Scope{}, false},
		{"repository:a%2fb:pull", Scope{}, false},
		{"repository:/app:pull", Scope{}, false},
		{"repository:app/:pull", Scope{}, false},
		{"repository:*:pull", Scope{}, false},
		{"repository:team/*:pull", Scope{}, false},
		{"repository:app@sha256:abc:pull", Scope{}, false},
		{"repository(:app:pull", Scope{}, false},
		{"repository():app:pull", Scope{}, false},
		{"repository(Plugin):app:pull", Scope{}, false},
		{"repository(plugin)x:app:pull", Scope{}, false},
		{"repository(plu)gin):app:pull", Scope{}, false},
		{"registry:catalog:pull", Scope{}, false},
		{"registry:catalog:", Scope{}, false},
		{"registry:other:*", Scope{}, false},
		{"registry(x):catalog:*", Scope{}, false},
		{"blob:app:pull", Scope{}, false},
		{"repository:" + strings.Repeat("a", 256) + ":pull", Scope{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseScope(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestScopeString(t *testing.T) {
	for _, s := range []string{
		"repository:team/app:pull,push",
		"repository(plugin):x:pull",
		"registry:catalog:*",
		"repository:x:pull,push,delete,metadata_read,metadata_write",
		"repository:x:",
	} {
		sc, ok := ParseScope(s)
		if !ok || sc.String() != s {
			t.Errorf("ParseScope(%q).String() = %q, %v", s, sc.String(), ok)
		}
	}
	if got := (Scope{Type: "repository", Name: "x", Actions: AllActions}).String(); got != "repository:x:pull,push,delete,metadata_read,metadata_write" {
		t.Errorf("String of all actions = %q", got)
	}
}

func TestParseScopes(t *testing.T) {
	got := ParseScopes(
		"repository:team/app:pull repository:team/base:pull  repository:bad/../x:pull",
		"repository:team/app:push registry:catalog:* garbage",
		"",
	)
	want := []Scope{
		{Type: "repository", Name: "team/app", Actions: ContentRead | ContentWrite},
		{Type: "repository", Name: "team/base", Actions: ContentRead},
		{Type: "registry", Name: "catalog"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseScopes = %+v, want %+v", got, want)
	}

	var many []string
	for i := range MaxScopes + 5 {
		many = append(many, "repository:r"+strings.Repeat("x", i)+":pull")
	}
	many = append(many, "repository:r:push") // merges into the first, though past the cap
	got = ParseScopes(strings.Join(many, " "))
	if len(got) != MaxScopes || got[0].Actions != ContentRead|ContentWrite {
		t.Errorf("ParseScopes kept %d scopes (first %+v), want %d", len(got), got[0], MaxScopes)
	}
	if got := ParseScopes(); got != nil {
		t.Errorf("ParseScopes() = %v", got)
	}
}

func TestIntersect(t *testing.T) {
	p := MustCompile(scopeMap("team-scope-map",
		"repositories/team/*/content/read",
		"repositories/team/app/content/write",
	))
	tok := Identity{Kind: KindToken, Name: "ci-token", Policy: p}
	req := ParseScopes("repository:team/app:pull,push repository:team/base:pull,push,delete repository:other:pull registry:catalog:* repository(plugin):team/p:pull")
	got := Intersect(req, tok)
	want := []Access{
		{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "team/base", Actions: []string{"pull"}}, // partial: not an error
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Class: "plugin", Name: "team/p", Actions: []string{"pull"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Intersect = %+v\nwant %+v", got, want)
	}
	if got := Intersect(req, Identity{}); len(got) != 0 {
		t.Errorf("anonymous got %+v", got)
	}
	star := ParseScopes("repository:x:*")
	if got := Intersect(star, Identity{Kind: KindUser, Name: "bob", Role: RolePush}); !reflect.DeepEqual(got, []Access{{Type: "repository", Name: "x", Actions: []string{"pull", "push"}}}) {
		t.Errorf("* for a pusher = %+v", got)
	}
	if got := Intersect(nil, tok); got == nil || len(got) != 0 {
		t.Errorf("Intersect(nil) = %#v, want an empty list", got)
	}
}

func TestCanListCatalog(t *testing.T) {
	withCatalog := &Claims{Access: []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}}
	without := &Claims{Access: []Access{{Type: "repository", Name: "catalog", Actions: []string{"*"}}}}
	tests := []struct {
		id   Identity
		want bool
	}{
		{Identity{Kind: KindToken, Name: "t"}, true}, // filtered per caller later
		{Identity{Kind: KindUser, Name: "u", Role: RolePull}, true},
		{Identity{Kind: KindAdmin, Name: "berth"}, true},
		{Identity{}, false},
		{Identity{Kind: KindToken, Name: "t", Bearer: withCatalog}, true},
		{Identity{Kind: KindToken, Name: "t", Bearer: without}, false},
	}
	for _, tt := range tests {
		if got := CanListCatalog(tt.id); got != tt.want {
			t.Errorf("CanListCatalog(%+v) = %v", tt.id, got)
		}
	}
}

func TestVisibleInCatalog(t *testing.T) {
	p := MustCompile(scopeMap("team-scope-map", "repositories/team/*/content/write"))
	bearer := &Claims{Access: []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}}
	id := Identity{Kind: KindToken, Name: "ci-token", Policy: p, Bearer: bearer}
	if !CanListCatalog(id) {
		t.Fatal("CanListCatalog = false")
	}
	for repo, want := range map[string]bool{"team/app": true, "team/a/b": true, "team": false, "other": false, "Bad": false} {
		if got := VisibleInCatalog(id, repo); got != want {
			t.Errorf("VisibleInCatalog(%q) = %v, want %v", repo, got, want)
		}
	}
	if VisibleInCatalog(Identity{}, "team/app") {
		t.Error("anonymous sees the catalog")
	}
}
