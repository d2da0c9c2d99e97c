package auth

import (
	"slices"
	"strings"
	"unique"
)

// Policy is a scope map compiled for fast decisions. It is immutable once
// built, so one Policy can be shared by every token using the scope map and
// read from many goroutines; a changed scope map is compiled into a new
// Policy that replaces the old one.
//
// A lookup costs one map probe for the exact rules, one more per '/' in the
// repository name for the prefix rules, and one OR for "*", whatever the
// number of rules, and allocates nothing.
type Policy struct {
	name string
	all  grant // granted on every repository by "*"
	// rules holds the exact and the prefix rules in one map, saving the
	// memory and the cache misses of a second one: an exact rule under its name
	// ("team/app"), a prefix rule under its prefix with the slash
	// ("team/" for "team/*"). No repository name ends in '/', so the two
	// cannot collide.
	rules     map[string]grant
	hasPrefix bool // whether any key is a prefix, to skip the walk if not
}

// grant is what the rules of one repository pattern grant: every holds the
// actions granted on every tag, some those granted only on the tags that
// match tags (for each action, its patterns). An action is in at most one
// of the two.
type grant struct {
	every, some Actions
	// tags is set when some is not empty. Handles are interned, so scope
	// maps that limit rules to the same tags share one copy.
	tags unique.Handle[tagLimits]
}

// tagLimits are the tag patterns of each action of a grant, indexed by the
// action's bit number, each set joined by '\n' and interned.
type tagLimits [numActions]unique.Handle[string]

// numActions is the number of bits Actions uses.
const numActions = 6

func (g grant) actions() Actions { return g.every | g.some }

// Compile parses a scope map's actions into a Policy. Grants add up: every
// rule whose pattern matches a repository contributes its actions, so
// "samples/*" content/read plus "samples/teama/*" content/write gives both on
// "samples/teama/x"; and an action limited to some tags by one rule and
// granted on every tag by another is granted on every tag.
//
// It returns an error for an action that does not parse, rather than
// skipping it, so that a corrupted stored map is noticed instead of silently
// granting less (or, after a later fix, more) than it says. It does not
// check the name or the 500-pattern limit; Validate does that before storing.
func Compile(m ScopeMap) (*Policy, error) {
	p := &Policy{name: m.Name}
	type limited struct {
		key  string
		bit  int
		tags []string
	}
	var lims []limited
	for _, s := range m.Actions {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			return nil, err
		}
		var key string
		switch a.Pattern.Kind() {
		case PatternAll:
			key = "*"
		case PatternExact:
			key = a.Pattern.Name()
		case PatternPrefix:
			key = a.Pattern.Name() + "/"
		}
		if tags := m.Tags[s]; len(tags) > 0 {
			lims = append(lims, limited{key, bitIndex(a.Action), tags})
			continue
		}
		p.add(key, grant{every: a.Action})
	}
	// Limits apply only where no rule of the pattern grants the action on
	// every tag; patterns of one action on one pattern add up.
	type slot struct {
		key string
		bit int
	}
	merged := map[slot][]string{}
	for _, l := range lims {
		merged[slot{l.key, l.bit}] = append(merged[slot{l.key, l.bit}], l.tags...)
	}
	byKey := map[string]*tagLimits{}
	for sl, tags := range merged {
		bit := Actions(1) << sl.bit
		if p.lookup(sl.key).every&bit != 0 {
			continue
		}
		tl := byKey[sl.key]
		if tl == nil {
			tl = new(tagLimits)
			byKey[sl.key] = tl
		}
		tl[sl.bit] = unique.Make(joinSorted(tags))
		p.add(sl.key, grant{some: bit})
	}
	for key, tl := range byKey {
		p.setTags(key, unique.Make(*tl))
	}
	return p, nil
}

func bitIndex(a Actions) int {
	for i := range numActions {
		if a == 1<<i {
			return i
		}
	}
	return 0
}

func joinSorted(tags []string) string {
	n, _, _ := NormalizeTagPatterns(tags) // validated before storing; sorts and dedups
	if n == nil {
		n = tags
	}
	return strings.Join(n, "\n")
}

func (p *Policy) lookup(key string) grant {
	if key == "*" {
		return p.all
	}
	return p.rules[key]
}

func (p *Policy) add(key string, g grant) {
	if key == "*" {
		p.all.every |= g.every
		p.all.some |= g.some
		return
	}
	if strings.HasSuffix(key, "/") {
		p.hasPrefix = true
	}
	if p.rules == nil {
		p.rules = make(map[string]grant)
	}
	cur, ok := p.rules[key]
	if !ok {
		// A copy, so the key does not pin the whole stored action
		// string ("repositories/<pattern>/<action>") in memory.
		key = strings.Clone(key)
	}
	cur.every |= g.every
	cur.some |= g.some
	p.rules[key] = cur
}

func (p *Policy) setTags(key string, h unique.Handle[tagLimits]) {
	if key == "*" {
		p.all.tags = h
		return
	}
	g := p.rules[key]
	g.tags = h
	p.rules[key] = g
}

// MustCompile is Compile for scope maps known to be valid, such as the
// built-ins and test fixtures; it panics on an error.
func MustCompile(m ScopeMap) *Policy {
	p, err := Compile(m)
	if err != nil {
		panic(err)
	}
	return p
}

// Name returns the name of the scope map the policy was compiled from, for
// messages and audit records.
func (p *Policy) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// Allowed returns every action the policy grants on repository repo, on
// at least some of its tags. A nil Policy grants nothing. repo is not
// validated here; Decide does that.
func (p *Policy) Allowed(repo string) Actions {
	if p == nil {
		return NoActions
	}
	a := p.all.actions()
	if p.rules == nil {
		return a
	}
	a |= p.rules[repo].actions()
	if p.hasPrefix {
		// "team/*" matches repositories strictly below "team", so the
		// candidates are the prefixes of repo that end in a '/'. Slicing a
		// string and indexing a map with it allocate nothing.
		for i := 0; i < len(repo) && a != AllActions; i++ {
			if repo[i] == '/' {
				a |= p.rules[repo[:i+1]].actions()
			}
		}
	}
	return a
}

// each calls fn with every grant whose pattern matches repo.
func (p *Policy) each(repo string, fn func(grant)) {
	fn(p.all)
	if p.rules == nil {
		return
	}
	if g, ok := p.rules[repo]; ok {
		fn(g)
	}
	if p.hasPrefix {
		for i := 0; i < len(repo); i++ {
			if repo[i] == '/' {
				if g, ok := p.rules[repo[:i+1]]; ok {
					fn(g)
				}
			}
		}
	}
}

// every returns the actions granted on repo for every tag, and all the
// actions granted on it.
func (p *Policy) every(repo string) (every, some Actions) {
	if p == nil {
		return NoActions, NoActions
	}
	p.each(repo, func(g grant) {
		every |= g.every
		some |= g.actions()
	})
	return every, some
}

// allowedOnTag returns the actions the rules matching repo grant on tag:
// those granted on every tag, and those whose tag patterns tag matches, in
// one walk over the rules.
func (p *Policy) allowedOnTag(repo, tag string) Actions {
	var a Actions
	if p == nil {
		return a
	}
	p.each(repo, func(g grant) {
		a |= g.every
		todo := g.some &^ a
		if todo == NoActions {
			return
		}
		tl := g.tags.Value()
		for i := range numActions {
			if bit := Actions(1) << i; todo&bit != 0 && matchAny(tl[i].Value(), tag) {
				a |= bit
			}
		}
	})
	return a
}

// tagPatterns lists the tag patterns the rules matching repo limit the
// actions in want to, sorted and unique, for messages.
func (p *Policy) tagPatterns(repo string, want Actions) []string {
	if p == nil {
		return nil
	}
	var out []string
	p.each(repo, func(g grant) {
		if g.some&want == NoActions {
			return
		}
		tl := g.tags.Value()
		for i := range numActions {
			if bit := Actions(1) << i; g.some&want&bit != 0 {
				out = append(out, strings.Split(tl[i].Value(), "\n")...)
			}
		}
	})
	return sortUnique(out)
}

func sortUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}
