package auth

import (
	"slices"
	"strings"
	"testing"
)

func TestMatchTag(t *testing.T) {
	tests := []struct {
		pattern, tag string
		want         bool
	}{
		{"v1.0", "v1.0", true},
		{"v1.0", "v1.0.1", false},
		{"v*", "v1.0", true},
		{"v*", "v", true},
		{"v*", "latest", false},
		{"*-rc*", "v1-rc2", true},
		{"*-rc*", "v1-rc", true},
		{"*-rc*", "v1rc", false},
		{"dev-*", "dev-1", true},
		{"dev-*", "prod-dev-1", false},
		{"*", "anything", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbYcZ", false},
		{"a*a*a*a*b", strings.Repeat("a", 100), false},
		{"V*", "v1", false}, // tags are case-sensitive
	}
	for _, tt := range tests {
		if got := MatchTag(tt.pattern, tt.tag); got != tt.want {
			t.Errorf("MatchTag(%q, %q) = %t, want %t", tt.pattern, tt.tag, got, tt.want)
		}
	}
}

func TestValidateTagPattern(t *testing.T) {
	for _, ok := range []string{"v1.2.3", "v*", "*-rc*", "dev-*", "*", "A_b.c-D", strings.Repeat("a", 128)} {
		if err := ValidateTagPattern(ok); err != nil {
			t.Errorf("ValidateTagPattern(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", ".x", "v1/2", "v?", "dev-[0-9]", "ü", strings.Repeat("a", 129), "a b"} {
		err := ValidateTagPattern(bad)
		if err == nil {
			t.Errorf("ValidateTagPattern(%q) accepted", bad)
			continue
		}
		// Messages show a valid form.
		if bad != strings.Repeat("a", 129) && !strings.Contains(err.Error(), `"v*"`) {
			t.Errorf("ValidateTagPattern(%q) = %v: shows no valid form", bad, err)
		}
	}
}

func TestMergeRules(t *testing.T) {
	const w = "repositories/team/app/content/write"
	const r = "repositories/team/app/content/read"
	actions, tags, err := MergeRules([]Rule{
		{Action: w, Tags: []string{"pr-*", "dev-*"}},
		{Action: w, Tags: []string{"dev-*", "fix-*"}},
		{Action: r, Tags: []string{"v*"}},
		{Action: r}, // every tag: the limit of the other rule adds nothing
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(actions, []string{r, w}) {
		t.Errorf("actions = %q", actions)
	}
	if len(tags) != 1 || !slices.Equal(tags[w], []string{"dev-*", "fix-*", "pr-*"}) {
		t.Errorf("tags = %q", tags)
	}
	if _, _, err := MergeRules([]Rule{{Action: w, Tags: []string{"v1/x"}}}); err == nil || !strings.Contains(err.Error(), "v1/x") {
		t.Errorf("invalid pattern: %v", err)
	}
	// "*" among the patterns limits nothing.
	if _, tags, _ := MergeRules([]Rule{{Action: w, Tags: []string{"dev-*", "*"}}}); tags != nil {
		t.Errorf("tags with * = %q", tags)
	}
	if _, err := NormalizeTags([]string{r}, map[string][]string{w: {"dev-*"}}); err == nil {
		t.Error("NormalizeTags accepted tags for an action the map does not grant")
	}
}

// TestTagDecision is the decision table of tag rules: identity, operation,
// repository and tag to allowed or not.
func TestTagDecision(t *testing.T) {
	ci := ScopeMap{Name: "ci-map", Type: UserDefined,
		Actions: []string{
			"repositories/team/app/content/read",
			"repositories/team/app/content/write",
			"repositories/team/app/metadata/read",
			"repositories/team/app/content/delete",
			"repositories/team/*/content/overwrite",
			"repositories/team/*/metadata/write",
			"repositories/other/app/content/write",
			"repositories/other/app/content/read",
		},
		Tags: map[string][]string{
			"repositories/team/app/content/write":   {"dev-*", "pr-*"},
			"repositories/team/app/metadata/read":   {"v*"},
			"repositories/team/app/content/delete":  {"dev-*"},
			"repositories/team/*/content/overwrite": {"dev-*"},
			"repositories/team/*/metadata/write":    {"pr-*"},
		},
	}
	if err := ci.Validate(); err != nil {
		t.Fatal(err)
	}
	tok := Identity{Kind: KindToken, Name: "ci", Policy: MustCompile(ci)}
	push := Identity{Kind: KindToken, Name: "push", Policy: MustCompile(mustBuiltin(ScopeMapPush))}
	user := Identity{Kind: KindUser, Name: "alice", Role: RolePush}
	tests := []struct {
		id   Identity
		op   Operation
		repo string
		tag  string
		want bool
	}{
		{tok, OpPush, "team/app", "dev-1", true},
		{tok, OpPush, "team/app", "pr-7", true},
		{tok, OpPush, "team/app", "v1", false},
		{tok, OpPush, "team/app", "latest", false},
		{tok, OpOverwriteTag, "team/app", "dev-1", true},
		{tok, OpOverwriteTag, "team/app", "pr-7", false}, // may create pr-7, never move it
		{tok, OpPull, "team/app", "v1", true},            // content/read without tags
		{tok, OpReadMetadata, "team/app", "v1", true},
		{tok, OpReadMetadata, "team/app", "dev-1", false},
		{tok, OpUntag, "team/app", "dev-1", true}, // content/delete on dev-*
		{tok, OpUntag, "team/app", "pr-1", true},  // metadata/write on pr-* (team/*)
		{tok, OpUntag, "team/app", "v1", false},   // neither
		{tok, OpDeleteManifest, "team/app", "v1", false},
		{tok, OpPush, "other/app", "v1", true}, // content/write without tags
		{tok, OpOverwriteTag, "other/app", "v1", false},
		{tok, OpPush, "elsewhere/app", "dev-1", false},
		{push, OpOverwriteTag, "any/repo", "latest", true}, // the push built-in replaces tags, as ACR's does
		{user, OpOverwriteTag, "any/repo", "latest", true},
		{Identity{Kind: KindUser, Name: "r", Role: RoleReader}, OpPush, "any/repo", "latest", false},
	}
	for _, tt := range tests {
		got := PermitsTag(tt.id, tt.repo, tt.op, tt.tag)
		if got != tt.want {
			t.Errorf("PermitsTag(%v, %q, %s, %q) = %t, want %t", tt.id, tt.repo, tt.op, tt.tag, got, tt.want)
		}
		if err := CheckTag(tt.id, tt.repo, tt.op, tt.tag); (err == nil) != tt.want {
			t.Errorf("CheckTag(%v, %q, %s, %q) = %v", tt.id, tt.repo, tt.op, tt.tag, err)
		}
	}
	// The repository-level decision sees tag-limited grants: the token may
	// push to team/app (blobs, manifests by digest).
	if !Permits(tok, "team/app", OpPush) {
		t.Error("a tag-limited content/write does not allow pushing by digest")
	}
	if got := TagLimited(tok, "team/app", AllActions); got != ContentWrite|MetadataRead|ContentDelete|ContentOverwrite|MetadataWrite {
		t.Errorf("TagLimited = %v", got)
	}
	if f := TagFilter(tok, "team/app", OpPull); f != nil {
		t.Error("TagFilter for an unlimited action is not nil")
	}
	if f := TagFilter(tok, "team/app", OpReadMetadata); f == nil || !f("v2") || f("dev-1") {
		t.Error("TagFilter for metadata/read on v* is wrong")
	}
}

func TestTagDenialMessage(t *testing.T) {
	m := ScopeMap{Name: "ci-map", Type: UserDefined,
		Actions: []string{"repositories/team/app/content/write"},
		Tags:    map[string][]string{"repositories/team/app/content/write": {"pr-*", "dev-*"}}}
	tok := Identity{Kind: KindToken, Name: "ci", Policy: MustCompile(m)}
	err := CheckTag(tok, "team/app", OpPush, "v1.0")
	want := `token "ci" may not write tag "v1.0" of "team/app" (its scope map allows dev-*, pr-*)`
	if err == nil || err.Error() != want {
		t.Errorf("CheckTag = %v, want %s", err, want)
	}
	err = CheckTag(tok, "team/app", OpOverwriteTag, "dev-1")
	want = `token "ci" may not move tag "dev-1" of "team/app" to another manifest (it lacks content/overwrite on that tag)`
	if err == nil || err.Error() != want {
		t.Errorf("CheckTag overwrite = %v, want %s", err, want)
	}
}

// TestTagBearer: an access token narrows tag grants as it narrows the rest,
// and "push" in it carries content/overwrite.
func TestTagBearer(t *testing.T) {
	tok := Identity{Kind: KindToken, Name: "p", Policy: MustCompile(mustBuiltin(ScopeMapPush))}
	tok.Bearer = &Claims{Access: []Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}}
	if PermitsTag(tok, "team/app", OpPush, "v1") || PermitsTag(tok, "team/app", OpOverwriteTag, "v1") {
		t.Error("a pull-only access token allows pushing a tag")
	}
	tok.Bearer.Access[0].Actions = []string{"pull", "push"}
	if !PermitsTag(tok, "team/app", OpOverwriteTag, "v1") {
		t.Error("push in the access token does not carry overwrite")
	}
}

func mustBuiltin(name string) ScopeMap {
	m, ok := BuiltinScopeMap(name)
	if !ok {
		panic(name)
	}
	return m
}

// TestTagLimitedWholeRepository: a grant limited to some tags does not
// allow what acts on the whole repository (deleting blobs or the
// repository, changing attributes), which would reach the other tags.
func TestTagLimitedWholeRepository(t *testing.T) {
	m := ScopeMap{Name: "dev-deleter", Type: UserDefined,
		Actions: []string{"repositories/team/app/content/delete", "repositories/team/app/metadata/write", "repositories/team/all/content/delete"},
		Tags: map[string][]string{"repositories/team/app/content/delete": {"dev-*"},
			"repositories/team/app/metadata/write": {"dev-*"}}}
	tok := Identity{Kind: KindToken, Name: "dev-deleter", Policy: MustCompile(m)}
	for _, op := range []Operation{OpDeleteBlob, OpDeleteRepository, OpWriteAttributes} {
		if Permits(tok, "team/app", op) {
			t.Errorf("%s allowed with a grant limited to dev-*", op)
		}
		err := CheckOperation(tok, "team/app", op)
		if err == nil || !strings.Contains(err.Error(), "on some tags only") {
			t.Errorf("CheckOperation(%s) = %v", op, err)
		}
	}
	if !Permits(tok, "team/all", OpDeleteRepository) {
		t.Error("content/delete on every tag does not delete the repository")
	}
	if !Permits(tok, "team/app", OpUntag) || !Permits(tok, "team/app", OpDeleteManifest) {
		t.Error("tag-limited grants do not pass the repository-level check of per-tag operations")
	}
}
