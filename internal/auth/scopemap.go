package auth

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a scope map, ACR's.
const (
	// MaxScopeMapPatterns is the most distinct repository patterns one
	// scope map may name.
	MaxScopeMapPatterns = 500
	// MaxDescriptionLength is the longest description, in characters.
	MaxDescriptionLength = 256
	// MinNameLength and MaxNameLength bound scope map and token names.
	MinNameLength = 5
	MaxNameLength = 50
)

// ScopeMapType says who owns a scope map.
type ScopeMapType string

const (
	// SystemDefined marks the five built-in scope maps. They exist in every
	// registry and are never changed or deleted.
	SystemDefined ScopeMapType = "SystemDefined"
	// UserDefined marks scope maps that users create.
	UserDefined ScopeMapType = "UserDefined"
)

// ScopeMap is a named set of (repository pattern, action) grants in ACR's
// shape. Each entry of Actions is in ACR's stored form
// "repositories/<pattern>/<action>", for example
// "repositories/samples/*/content/read". The stored form is kept as strings,
// exactly as ACR's API returns it; Compile turns it into a Policy for
// decisions.
type ScopeMap struct {
	Name        string
	Description string
	Type        ScopeMapType
	Actions     []string
	// Tags limits actions to tags: for an entry of Actions, the tag
	// patterns (literal tags or globs with '*') it applies to. An action
	// without an entry applies to every tag. This is berth's; ACR has no
	// tag level.
	Tags map[string][]string
}

// Names of the built-in scope maps.
const (
	ScopeMapAdmin             = "_repositories_admin"
	ScopeMapPull              = "_repositories_pull"
	ScopeMapPullMetadataRead  = "_repositories_pull_metadata_read"
	ScopeMapPush              = "_repositories_push"
	ScopeMapPushMetadataWrite = "_repositories_push_metadata_write"
)

// BuiltinScopeMaps returns the five system-defined scope maps, all on
// "repositories/*". It builds a new slice on every call so that no caller can
// change what another sees.
func BuiltinScopeMaps() []ScopeMap {
	all := func(a Actions) []string {
		out, _ := RepositoryActions("*", a.ScopeMapNames()...)
		return out
	}
	return []ScopeMap{
		{ScopeMapAdmin, "Can perform all read, write and delete operations on the registry", SystemDefined, all(AllActions), nil},
		{ScopeMapPull, "Can pull any repository of the registry", SystemDefined, all(ContentRead), nil},
		{ScopeMapPullMetadataRead, "Can pull any repository and list its tags and manifests", SystemDefined, all(ContentRead | MetadataRead), nil},
		// The push maps replace tags, as ACR's do: they include content/overwrite.
		{ScopeMapPush, "Can push to and pull from any repository of the registry", SystemDefined, all(ContentRead | ContentWrite | ContentOverwrite), nil},
		{ScopeMapPushMetadataWrite, "Can push to and pull from any repository, and read and change its metadata", SystemDefined, all(ContentRead | ContentWrite | MetadataRead | MetadataWrite | ContentOverwrite), nil},
	}
}

// BuiltinScopeMap returns the built-in scope map with the given name.
func BuiltinScopeMap(name string) (ScopeMap, bool) {
	for _, m := range BuiltinScopeMaps() {
		if m.Name == name {
			return m, true
		}
	}
	return ScopeMap{}, false
}

// ScopeMapAction is one parsed entry of ScopeMap.Actions: a pattern and a
// single action.
type ScopeMapAction struct {
	Pattern Pattern
	Action  Actions // exactly one action
}

const repositoriesPrefix = "repositories/"

// ParseScopeMapAction parses ACR's stored form
// "repositories/<pattern>/<action>". The action is the last two path
// segments, so the pattern may itself contain '/': in
// "repositories/samples/*/content/read" the pattern is "samples/*".
// Everything is case-sensitive and must be lower case, so a parsed action
// prints back as exactly its input.
func ParseScopeMapAction(s string) (ScopeMapAction, error) {
	rest, ok := strings.CutPrefix(s, repositoriesPrefix)
	i := strings.LastIndexByte(rest, '/')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(rest[:i], '/')
	}
	if !ok || j <= 0 {
		return ScopeMapAction{}, fmt.Errorf("invalid scope map action %q: must have the form \"repositories/<repository pattern>/<action>\", as in \"repositories/team/app/content/read\" or \"repositories/team/*/content/write\"", s)
	}
	a, err := ParseAction(rest[j+1:])
	if err != nil {
		return ScopeMapAction{}, fmt.Errorf("invalid scope map action %q: %w", s, err)
	}
	p, err := ParsePattern(rest[:j])
	if err != nil {
		return ScopeMapAction{}, fmt.Errorf("invalid scope map action %q: %w", s, err)
	}
	return ScopeMapAction{Pattern: p, Action: a}, nil
}

// String returns the stored form, "repositories/<pattern>/<action>".
// An action with other than exactly one bit set has no stored form and
// prints as "".
func (a ScopeMapAction) String() string {
	if a.Action.Len() != 1 || a.Action&^AllActions != 0 || a.Pattern.Kind() == PatternInvalid {
		return ""
	}
	return repositoriesPrefix + a.Pattern.String() + "/" + a.Action.String()
}

// RepositoryActions builds stored scope-map actions from the CLI's
// "--repository REPO ACTION..." form, for example ("samples/*",
// "content/read", "metadata/read"). It validates both parts so that the CLI
// and the REST API report the same errors.
func RepositoryActions(pattern string, actions ...string) ([]string, error) {
	p, err := ParsePattern(pattern)
	if err != nil {
		return nil, err
	}
	if len(actions) == 0 {
		return nil, fmt.Errorf("no actions for repository pattern %q: give one or more of "+actionList, pattern)
	}
	out := make([]string, 0, len(actions))
	for _, name := range actions {
		a, err := ParseAction(name)
		if err != nil {
			return nil, fmt.Errorf("repository pattern %q: %w", pattern, err)
		}
		out = append(out, ScopeMapAction{Pattern: p, Action: a}.String())
	}
	return out, nil
}

// RepositoryGrant is what a scope map grants on one pattern: the rows of the
// portal's and CLI's "repository → actions" table.
type RepositoryGrant struct {
	Pattern Pattern
	Actions Actions
}

// GroupActions parses stored actions and merges them per pattern, sorted by
// pattern. Duplicates are harmless and merged.
func GroupActions(actions []string) ([]RepositoryGrant, error) {
	byPattern := make(map[Pattern]Actions, len(actions))
	for _, s := range actions {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			return nil, err
		}
		byPattern[a.Pattern] |= a.Action
	}
	out := make([]RepositoryGrant, 0, len(byPattern))
	for p, a := range byPattern {
		out = append(out, RepositoryGrant{p, a})
	}
	slices.SortFunc(out, func(x, y RepositoryGrant) int { return cmp.Compare(x.Pattern.String(), y.Pattern.String()) })
	return out, nil
}

// NormalizeActions parses stored actions and returns them without
// duplicates, sorted by pattern and then in the fixed action order. The API
// uses it before storing, so that "scope-map update --add-repository" twice
// is idempotent and every face shows the same order.
func NormalizeActions(actions []string) ([]string, error) {
	groups, err := GroupActions(actions)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(actions))
	for _, g := range groups {
		for _, name := range g.Actions.ScopeMapNames() {
			a, _ := ParseAction(name)
			out = append(out, ScopeMapAction{g.Pattern, a}.String())
		}
	}
	return out, nil
}

// ValidateScopeMapName checks the name of a user-defined scope map: 5 to 50
// ASCII letters, digits, '-' and '_', not starting with '_', which is kept
// for the built-in maps so that a user map can never shadow one.
func ValidateScopeMapName(name string) error {
	if err := validateResourceName("scope map", name); err != nil {
		return err
	}
	if strings.HasPrefix(name, "_") {
		return fmt.Errorf("invalid scope map name %q: names starting with '_' are reserved for the built-in scope maps", name)
	}
	return nil
}

// ValidateTokenName checks a token name, which is also the token's docker
// username: 5 to 50 ASCII letters, digits, '-' and '_'. The character set
// keeps ':' (the Basic-auth separator) and anything needing escaping out.
func ValidateTokenName(name string) error {
	return validateResourceName("token", name)
}

func validateResourceName(what, name string) error {
	if len(name) < MinNameLength || len(name) > MaxNameLength {
		return fmt.Errorf("invalid %s name %q: it must be %d to %d characters long", what, name, MinNameLength, MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isLowerAlnum(c) || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("invalid %s name %q: only letters, digits, '-' and '_' are allowed, as in \"ci-push-token\"", what, name)
		}
	}
	return nil
}

// Validate checks a scope map before it is stored: its name (user-defined
// names by ValidateScopeMapName; system-defined maps must be exactly a
// built-in), its description (at most 256 characters of UTF-8), and its
// actions (each in the stored form, at most 500 distinct patterns). An empty
// action list is allowed: it grants nothing, which is a valid state for a map
// being edited.
func (m ScopeMap) Validate() error {
	switch m.Type {
	case UserDefined:
		if err := ValidateScopeMapName(m.Name); err != nil {
			return err
		}
	case SystemDefined:
		b, ok := BuiltinScopeMap(m.Name)
		if !ok {
			return fmt.Errorf("invalid scope map %q: only the built-in scope maps are system-defined", m.Name)
		}
		if !slices.Equal(b.Actions, m.Actions) {
			return fmt.Errorf("invalid scope map %q: the actions of a built-in scope map cannot be changed", m.Name)
		}
	default:
		return fmt.Errorf("invalid scope map %q: type must be %q or %q, not %q", m.Name, UserDefined, SystemDefined, m.Type)
	}
	if !utf8.ValidString(m.Description) {
		return fmt.Errorf("invalid description of scope map %q: it is not valid UTF-8", m.Name)
	}
	if n := utf8.RuneCountInString(m.Description); n > MaxDescriptionLength {
		return fmt.Errorf("invalid description of scope map %q: it is %d characters long, the maximum is %d", m.Name, n, MaxDescriptionLength)
	}
	groups, err := GroupActions(m.Actions)
	if err != nil {
		return fmt.Errorf("scope map %q: %w", m.Name, err)
	}
	if len(groups) > MaxScopeMapPatterns {
		return fmt.Errorf("invalid scope map %q: it names %d repository patterns, the maximum is %d", m.Name, len(groups), MaxScopeMapPatterns)
	}
	if m.Type == SystemDefined && len(m.Tags) > 0 {
		return fmt.Errorf("invalid scope map %q: the actions of a built-in scope map cannot be changed", m.Name)
	}
	for key, pats := range m.Tags {
		if !slices.Contains(m.Actions, key) {
			return fmt.Errorf("invalid scope map %q: tags for %q, which it does not grant", m.Name, key)
		}
		if len(pats) == 0 || len(pats) > MaxTagPatterns {
			return fmt.Errorf("invalid scope map %q: %d tag patterns for %q; give 1 to %d", m.Name, len(pats), key, MaxTagPatterns)
		}
		for _, p := range pats {
			if err := ValidateTagPattern(p); err != nil {
				return fmt.Errorf("scope map %q, %s: %w", m.Name, key, err)
			}
		}
	}
	return nil
}
