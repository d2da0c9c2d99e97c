package auth

import "strings"

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
	all  Actions // granted on every repository by "*"
	// rules holds the exact and the prefix rules in one map, saving the
	// memory and the cache misses of a second one: an exact rule under its name
	// ("team/app"), a prefix rule under its prefix with the slash
	// ("team/" for "team/*"). No repository name ends in '/', so the two
	// cannot collide.
	rules     map[string]Actions
	hasPrefix bool // whether any key is a prefix, to skip the walk if not
}

// Compile parses a scope map's actions into a Policy. Grants add up: every
// rule whose pattern matches a repository contributes its actions, so
// "samples/*" content/read plus "samples/teama/*" content/write gives both on
// "samples/teama/x".
//
// It returns an error for an action that does not parse, rather than
// skipping it, so that a corrupted stored map is noticed instead of silently
// granting less (or, after a later fix, more) than it says. It does not
// check the name or the 500-pattern limit; Validate does that before storing.
func Compile(m ScopeMap) (*Policy, error) {
	p := &Policy{name: m.Name}
	for _, s := range m.Actions {
		a, err := ParseScopeMapAction(s)
		if err != nil {
			return nil, err
		}
		var key string
		switch a.Pattern.Kind() {
		case PatternAll:
			p.all |= a.Action
			continue
		case PatternExact:
			key = a.Pattern.Name()
		case PatternPrefix:
			key = a.Pattern.Name() + "/"
			p.hasPrefix = true
		}
		if p.rules == nil {
			p.rules = make(map[string]Actions)
		}
		if _, ok := p.rules[key]; !ok {
			// A copy, so the key does not pin the whole stored action
			// string ("repositories/<pattern>/<action>") in memory.
			key = strings.Clone(key)
		}
		p.rules[key] |= a.Action
	}
	return p, nil
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

// Allowed returns every action the policy grants on repository repo. A nil
// Policy grants nothing. repo is not validated here; Decide does that.
func (p *Policy) Allowed(repo string) Actions {
	if p == nil {
		return NoActions
	}
	a := p.all
	if p.rules == nil {
		return a
	}
	a |= p.rules[repo]
	if p.hasPrefix {
		// "team/*" matches repositories strictly below "team", so the
		// candidates are the prefixes of repo that end in a '/'. Slicing a
		// string and indexing a map with it allocate nothing.
		for i := 0; i < len(repo) && a != AllActions; i++ {
			if repo[i] == '/' {
				a |= p.rules[repo[:i+1]]
			}
		}
	}
	return a
}
