package auth

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// MaxTagPatterns is the most tag patterns one rule (one action on one
// repository pattern) may carry.
const MaxTagPatterns = 100

// maxTagLength is the OCI distribution spec's limit on a tag.
const maxTagLength = 128

// tagPatternForms shows the valid forms of a tag pattern, for messages.
const tagPatternForms = `a tag pattern is a tag (up to 128 of A-Z a-z 0-9 _ . -, not starting with '.' or '-') in which '*' stands for any run of characters, as in "v1.2.3", "v*", "*-rc*" or "dev-*"`

// ValidateTagPattern checks one tag pattern: a literal tag or a glob in
// which '*' matches any run of characters (including none). A pattern that
// could match no tag (an empty one, one starting with '.' or '-') or that
// holds a character no tag has is refused, with the valid forms.
func ValidateTagPattern(s string) error {
	if s == "" {
		return fmt.Errorf("invalid tag pattern \"\": it is empty; %s", tagPatternForms)
	}
	if len(s) > maxTagLength {
		return fmt.Errorf("invalid tag pattern %q: it is %d characters long, the maximum is %d", s, len(s), maxTagLength)
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Errorf("invalid tag pattern %q: no tag starts with %q; %s", s, s[0], tagPatternForms)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || 'A' <= c && c <= 'Z' || c == '_' || c == '.' || c == '-' || c == '*') {
			return fmt.Errorf("invalid tag pattern %q: character %q at offset %d is not allowed; %s", s, rune(c), i, tagPatternForms)
		}
	}
	return nil
}

// NormalizeTagPatterns validates patterns and returns them sorted, without
// duplicates and without runs of '*' (which mean what one does). all is true
// when one of them is "*", which matches every tag: the rule then has no
// tag restriction at all.
func NormalizeTagPatterns(patterns []string) (out []string, all bool, err error) {
	for _, p := range patterns {
		if err := ValidateTagPattern(p); err != nil {
			return nil, false, err
		}
		for strings.Contains(p, "**") {
			p = strings.ReplaceAll(p, "**", "*")
		}
		if p == "*" {
			all = true
		}
		out = append(out, p)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxTagPatterns {
		return nil, false, fmt.Errorf("%d tag patterns for one rule, the maximum is %d", len(out), MaxTagPatterns)
	}
	if all {
		return nil, true, nil
	}
	return out, false, nil
}

// ParseTagList splits the CLI's comma-separated --tags value ("dev-*,pr-*")
// into patterns, ignoring spaces around each.
func ParseTagList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// MatchTag reports whether tag matches the glob pattern, in which '*'
// matches any run of characters. It runs in time linear in the lengths for
// the patterns ValidateTagPattern allows (no '?', no classes), so a hostile
// pattern cannot make a decision slow.
func MatchTag(pattern, tag string) bool {
	p, t := 0, 0
	star, mark := -1, 0
	for t < len(tag) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, t
			p++
		case p < len(pattern) && pattern[p] == tag[t]:
			p++
			t++
		case star >= 0:
			// Let the last '*' swallow one more character.
			p = star + 1
			mark++
			t = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchAny reports whether tag matches one of the patterns joined by '\n'
// (the form a compiled Policy keeps them in).
func matchAny(joined, tag string) bool {
	for joined != "" {
		p := joined
		if i := strings.IndexByte(joined, '\n'); i >= 0 {
			p, joined = joined[:i], joined[i+1:]
		} else {
			joined = ""
		}
		if MatchTag(p, tag) {
			return true
		}
	}
	return false
}

// Rule is one grant of a scope map as the faces edit it: an action in the
// stored form ("repositories/team/app/content/write") and, optionally, the
// tag patterns it is limited to. No tags means every tag.
type Rule struct {
	Action string   `json:"action"`
	Tags   []string `json:"tags,omitempty"`
}

// MergeRules turns rules into a scope map's stored actions and tag limits.
// Grants add up: the same action given twice with tags has the union of the
// tags, and given once without tags it applies to every tag.
func MergeRules(rules []Rule) (actions []string, tags map[string][]string, err error) {
	limited := map[string][]string{}
	every := map[string]bool{}
	for _, r := range rules {
		a, err := ParseScopeMapAction(r.Action)
		if err != nil {
			return nil, nil, err
		}
		key := a.String()
		actions = append(actions, key)
		if len(r.Tags) == 0 {
			every[key] = true
			continue
		}
		pats, all, err := NormalizeTagPatterns(r.Tags)
		if err != nil {
			return nil, nil, fmt.Errorf("scope map action %q: %w", key, err)
		}
		if all {
			every[key] = true
			continue
		}
		limited[key] = append(limited[key], pats...)
	}
	if actions, err = NormalizeActions(actions); err != nil {
		return nil, nil, err
	}
	for key, pats := range limited {
		if every[key] {
			continue
		}
		if tags == nil {
			tags = map[string][]string{}
		}
		slices.Sort(pats)
		if tags[key] = slices.Compact(pats); len(tags[key]) > MaxTagPatterns {
			return nil, nil, fmt.Errorf("scope map action %q: %d tag patterns, the maximum is %d", key, len(tags[key]), MaxTagPatterns)
		}
	}
	return actions, tags, nil
}

// NormalizeTags checks tag limits against a scope map's normalized actions
// and returns them in canonical form: keys in the stored form, each one of
// actions, patterns sorted and unique; a key whose patterns include "*" is
// dropped, as it limits nothing.
func NormalizeTags(actions []string, tags map[string][]string) (map[string][]string, error) {
	var out map[string][]string
	for key, pats := range tags {
		a, err := ParseScopeMapAction(key)
		if err != nil {
			return nil, fmt.Errorf("tags for %w", err)
		}
		canon := a.String()
		if !slices.Contains(actions, canon) {
			return nil, fmt.Errorf("tags for scope map action %q, which the scope map does not grant: add the action too", key)
		}
		if len(pats) == 0 {
			return nil, fmt.Errorf("no tag patterns for scope map action %q: give one or more, as in \"dev-*\", or leave the action out of tags to grant it on every tag", key)
		}
		norm, all, err := NormalizeTagPatterns(pats)
		if err != nil {
			return nil, fmt.Errorf("scope map action %q: %w", key, err)
		}
		if all {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		norm = append(out[canon], norm...)
		slices.Sort(norm)
		out[canon] = slices.Compact(norm)
	}
	return out, nil
}

// Rules lists the scope map's grants one per action, with their tag
// limits, in the order of Actions.
func (m ScopeMap) Rules() []Rule {
	out := make([]Rule, 0, len(m.Actions))
	for _, a := range m.Actions {
		out = append(out, Rule{Action: a, Tags: slices.Clone(m.Tags[a])})
	}
	return out
}

// TagGrant is what a scope map grants on one repository pattern for one
// set of tag patterns: the rows of the "repository → actions" table when
// tags are involved.
type TagGrant struct {
	Pattern Pattern
	Actions Actions
	Tags    []string // nil: every tag
}

// GroupRules is GroupActions keeping tag limits apart: one row per pattern
// and set of tag patterns, sorted by pattern, rows without tags first.
func GroupRules(m ScopeMap) ([]TagGrant, error) {
	type key struct {
		p    Pattern
		tags string
	}
	by := map[key]Actions{}
	for _, s := range m.Actions {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			return nil, err
		}
		by[key{a.Pattern, strings.Join(m.Tags[s], ",")}] |= a.Action
	}
	out := make([]TagGrant, 0, len(by))
	for k, a := range by {
		g := TagGrant{Pattern: k.p, Actions: a}
		if k.tags != "" {
			g.Tags = strings.Split(k.tags, ",")
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(x, y TagGrant) int {
		return cmp.Or(cmp.Compare(x.Pattern.String(), y.Pattern.String()), cmp.Compare(strings.Join(x.Tags, ","), strings.Join(y.Tags, ",")))
	})
	return out, nil
}

// everyTag returns the actions id holds on repo for every tag, and all the
// actions it holds there (on at least some tags), narrowed to its access
// token as Allowed is.
func everyTag(id Identity, repo string) (every, some Actions) {
	if checkName(repo) != "" {
		return NoActions, NoActions
	}
	switch id.Kind {
	case KindAdmin:
		every, some = AllActions, AllActions
	case KindUser:
		every = id.Role.Actions() | id.assignedActions(repo)
		some = every
	case KindToken, KindAnonymous:
		every, some = id.Policy.every(repo)
	}
	if id.Bearer != nil {
		g := bearerGranted(id.Bearer, repo)
		every, some = every&g, some&g
	}
	return every, some
}

// AllowedOnTag returns the actions id may perform on tag of repository
// repo: those it holds for every tag, and those its scope map limits to tag
// patterns that tag matches.
func AllowedOnTag(id Identity, repo, tag string) Actions {
	if id.Kind != KindToken && id.Kind != KindAnonymous {
		every, _ := everyTag(id, repo)
		return every
	}
	if checkName(repo) != "" {
		return NoActions
	}
	a := id.Policy.allowedOnTag(repo, tag)
	if id.Bearer != nil {
		a &= bearerGranted(id.Bearer, repo)
	}
	return a
}

// TagLimited returns the actions of want that id holds on repo for some
// tags only. Where it is empty, the operations needing want are decided
// for the repository as a whole.
func TagLimited(id Identity, repo string, want Actions) Actions {
	every, some := everyTag(id, repo)
	return want & some &^ every
}

// PermitsTag is the access decision for an operation on one tag of a
// repository: creating or moving it (OpPush, OpOverwriteTag), pulling it
// (OpPull), seeing it (OpReadMetadata), untagging it (OpUntag), or deleting
// the manifest it points at (OpDeleteManifest). It is Permits narrowed by
// the tag patterns of the scope map's rules.
func PermitsTag(id Identity, repo string, op Operation, tag string) bool {
	return op.AllowedBy(AllowedOnTag(id, repo, tag))
}

// TagFilter returns, for listing the tags of repo, a function reporting
// whether id may perform op on one tag, or nil when op is allowed on every
// tag (nothing to filter). When op is allowed on no tag the function
// reports false for all.
func TagFilter(id Identity, repo string, op Operation) func(tag string) bool {
	every, some := everyTag(id, repo)
	if op.AllowedBy(every) {
		return nil
	}
	if !op.AllowedBy(some) {
		return func(string) bool { return false }
	}
	return func(tag string) bool { return PermitsTag(id, repo, op, tag) }
}

// CheckTag is PermitsTag returning an error: nil, or a *DeniedError that
// names the tag and the tag patterns the scope map allows, as in
//
//	token "ci" may not write tag "v1.0" of "team/app" (its scope map allows dev-*, pr-*)
func CheckTag(id Identity, repo string, op Operation, tag string) error {
	allowed := AllowedOnTag(id, repo, tag)
	if op.AllowedBy(allowed) {
		return nil
	}
	need, or := op.Needs()
	e := &DeniedError{Identity: id, Repository: repo, Missing: need &^ allowed, Or: or &^ allowed, Tag: tag, Op: op}
	if id.Kind == KindToken || id.Kind == KindAnonymous {
		e.TagPatterns = id.Policy.tagPatterns(repo, (need|or)&^allowed)
	}
	return e
}

// tagVerbs say what an operation does to a tag, for denials.
var tagVerbs = map[Operation]string{
	OpPull:           "pull",
	OpPush:           "write",
	OpOverwriteTag:   "move",
	OpReadMetadata:   "see",
	OpUntag:          "untag",
	OpDeleteManifest: "delete the manifest of",
}

func (e *DeniedError) tagMessage() string {
	verb := tagVerbs[e.Op]
	if verb == "" {
		verb = e.Op.String() + " on"
	}
	msg := fmt.Sprintf("%s may not %s tag %q of %q", e.Identity, verb, e.Tag, e.Repository)
	if e.Op == OpOverwriteTag {
		msg += " to another manifest"
	}
	switch {
	case len(e.TagPatterns) > 0:
		return msg + fmt.Sprintf(" (its scope map allows %s)", strings.Join(e.TagPatterns, ", "))
	case e.Or != NoActions:
		return msg + fmt.Sprintf(" (it lacks %s, or %s, on that tag)", e.Missing, e.Or)
	}
	return msg + fmt.Sprintf(" (it lacks %s on that tag)", e.Missing)
}

// CatalogTagFilter refines VisibleInCatalog for scope maps with tag
// limits. It returns nil when VisibleInCatalog decides alone: when id
// holds an action on every tag of repo, or may write or delete there (a
// push-only token sees where it pushes). When id may only read some tags
// of repo, it returns a function reporting whether one tag is one of them:
// the repository is listed only if it has such a tag, so a reader never
// learns of a repository in which it can see nothing.
func CatalogTagFilter(id Identity, repo string) func(tag string) bool {
	id.Bearer = nil
	every, some := everyTag(id, repo)
	if every != NoActions || some&^(ContentRead|MetadataRead) != NoActions || some == NoActions {
		return nil
	}
	return func(tag string) bool { return AllowedOnTag(id, repo, tag)&(ContentRead|MetadataRead) != NoActions }
}

// TagCheck returns, for operation op on repo, nil when id may perform it
// on every tag, or else a function that returns CheckTag's answer for one
// tag. The registry and the repository service ask it before each manifest
// and tag request and filter lists with it.
func TagCheck(id Identity, repo string, op Operation) func(tag string) error {
	every, _ := everyTag(id, repo)
	if op.AllowedBy(every) {
		return nil
	}
	return func(tag string) error { return CheckTag(id, repo, op, tag) }
}

// ReachDenied is the denial of operation op on manifest d of repo by tag
// rules (see DeniedError.Digest).
func ReachDenied(id Identity, repo string, op Operation, d string) *DeniedError {
	return &DeniedError{Identity: id, Repository: repo, Op: op, Digest: d}
}

func (e *DeniedError) digestMessage() string {
	switch e.Op {
	case OpPull, OpReadMetadata:
		verb := "pull"
		if e.Op == OpReadMetadata {
			verb = "see"
		}
		return fmt.Sprintf("%s may %s in %q only the tags its scope map allows and the manifests reachable from them (their index children and referrers); %s is not one of them",
			e.Identity, verb, e.Repository, e.Digest)
	}
	return fmt.Sprintf("%s may not %s %s of %q: a tag outside its scope map's tag patterns reaches it", e.Identity, e.Op, e.Digest, e.Repository)
}
