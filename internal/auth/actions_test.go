package auth

import (
	"slices"
	"testing"
)

func TestActionNames(t *testing.T) {
	tests := []struct {
		scopeMap, token string
		bit             Actions
	}{
		{"content/read", "pull", ContentRead},
		{"content/write", "push", ContentWrite},
		{"content/delete", "delete", ContentDelete},
		{"metadata/read", "metadata_read", MetadataRead},
		{"metadata/write", "metadata_write", MetadataWrite},
	}
	for _, tt := range tests {
		a, err := ParseAction(tt.scopeMap)
		if err != nil || a != tt.bit {
			t.Errorf("ParseAction(%q) = %v, %v; want %v", tt.scopeMap, a, err, tt.bit)
		}
		b, ok := ParseTokenAction(tt.token)
		if !ok || b != tt.bit {
			t.Errorf("ParseTokenAction(%q) = %v, %v; want %v", tt.token, b, ok, tt.bit)
		}
		if got := tt.bit.ScopeMapNames(); !slices.Equal(got, []string{tt.scopeMap}) {
			t.Errorf("%v.ScopeMapNames() = %q", tt.bit, got)
		}
		if got := tt.bit.TokenNames(); !slices.Equal(got, []string{tt.token}) {
			t.Errorf("%v.TokenNames() = %q", tt.bit, got)
		}
		// The two spellings must never be confused with each other.
		if _, err := ParseAction(tt.token); err == nil {
			t.Errorf("ParseAction accepted token spelling %q", tt.token)
		}
		if _, ok := ParseTokenAction(tt.scopeMap); ok {
			t.Errorf("ParseTokenAction accepted scope-map spelling %q", tt.scopeMap)
		}
	}
}

func TestParseActionRejects(t *testing.T) {
	for _, s := range []string{"", "Content/Read", "content/read ", "content", "content/*", "*", "read", "pull", "content/read/x"} {
		if a, err := ParseAction(s); err == nil {
			t.Errorf("ParseAction(%q) = %v, want error", s, a)
		}
	}
}

func TestParseTokenActions(t *testing.T) {
	tests := []struct {
		in   string
		want Actions
	}{
		{"pull", ContentRead},
		{"pull,push", ContentRead | ContentWrite},
		{"push,pull", ContentRead | ContentWrite},
		{"*", AllActions &^ ContentOverwrite}, // no token name; push carries it
		{"pull,*", AllActions &^ ContentOverwrite},
		{"", NoActions},
		{",,,", NoActions},
		{"pull,,push,", ContentRead | ContentWrite},
		{"PULL", NoActions},              // action names are case-sensitive
		{"pull,frobnicate", ContentRead}, // unknown names are ignored
		{"content/read", NoActions},      // scope-map spelling is not a token action
		{" pull", NoActions},
		{"delete,metadata_read,metadata_write", ContentDelete | MetadataRead | MetadataWrite},
	}
	for _, tt := range tests {
		if got := ParseTokenActions(tt.in); got != tt.want {
			t.Errorf("ParseTokenActions(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestActionsString(t *testing.T) {
	tests := []struct {
		a    Actions
		want string
	}{
		{NoActions, "none"},
		{ContentWrite, "content/write"},
		{ContentWrite | ContentRead, "content/read,content/write"},
		{AllActions, "content/read,content/write,content/delete,metadata/read,metadata/write,content/overwrite"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Actions(%d).String() = %q, want %q", tt.a, got, tt.want)
		}
	}
	if got := AllActions.TokenNames(); !slices.Equal(got, []string{"pull", "push", "delete", "metadata_read", "metadata_write"}) {
		t.Errorf("AllActions.TokenNames() = %q", got)
	}
	if !AllActions.Has(ContentRead|MetadataWrite) || ContentRead.Has(ContentRead|ContentWrite) || AllActions.Len() != 6 {
		t.Error("Has or Len is wrong")
	}
}
