package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxRepositoryLength is the longest repository name berth accepts. The OCI
// distribution spec notes that many clients limit a reference's name to 255
// characters; accepting longer names would create repositories that those
// clients cannot address.
const MaxRepositoryLength = 255

// ValidateRepository reports whether name is a repository name of the OCI
// distribution spec:
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// at most MaxRepositoryLength characters long. The error says which character
// or segment is wrong. It is hand-written rather than a regexp so that the
// common, valid case costs one pass over the bytes and never allocates: the
// registry calls it on every request.
//
// Because the grammar admits no "..", "%", ":" or upper case, a valid name
// cannot smuggle a path traversal, an encoded character, a tag or a host.
func ValidateRepository(name string) error {
	if reason := checkName(name); reason != "" {
		return fmt.Errorf("invalid repository name %q: %s; a valid name looks like \"team/app\"", name, reason)
	}
	return nil
}

// checkName returns why name is not a valid repository name, or "".
func checkName(name string) string {
	if name == "" {
		return "it is empty"
	}
	if len(name) > MaxRepositoryLength {
		return fmt.Sprintf("it is %d characters long, the maximum is %d", len(name), MaxRepositoryLength)
	}
	start := 0
	for {
		end := strings.IndexByte(name[start:], '/')
		if end < 0 {
			return checkSegment(name, start, len(name))
		}
		end += start
		if reason := checkSegment(name, start, end); reason != "" {
			return reason
		}
		start = end + 1
	}
}

// checkSegment checks the path segment name[start:end]. It takes the whole
// name so that its messages can give offsets within it.
func checkSegment(name string, start, end int) string {
	seg := name[start:end]
	if seg == "" {
		return fmt.Sprintf("empty path segment at offset %d (a name has no leading, trailing or doubled '/')", start)
	}
	for i := 0; i < len(seg); {
		c := seg[i]
		if isLowerAlnum(c) {
			i++
			continue
		}
		if !isSeparator(c) {
			return badChar(name, start+i)
		}
		j := i
		for j < len(seg) && isSeparator(seg[j]) {
			j++
		}
		if i == 0 || j == len(seg) {
			return fmt.Sprintf("path segment %q must start and end with a lower-case letter or digit", seg)
		}
		if sep := seg[i:j]; !validSeparator(sep) {
			return fmt.Sprintf("separator %q at offset %d is not allowed; letters and digits may be separated by one '.', one or two '_', or any number of '-'", sep, start+i)
		}
		i = j
	}
	return ""
}

func badChar(name string, off int) string {
	c := name[off]
	switch {
	case 'A' <= c && c <= 'Z':
		return fmt.Sprintf("upper-case letter %q at offset %d; repository names are lower case", c, off)
	case c == '*':
		return fmt.Sprintf("wildcard '*' at offset %d is not allowed in a repository name", off)
	case c >= utf8.RuneSelf:
		r, _ := utf8.DecodeRuneInString(name[off:])
		return fmt.Sprintf("character %q at offset %d is not allowed; use lower-case ASCII letters, digits, '.', '_', '-' and '/'", r, off)
	default:
		return fmt.Sprintf("character %q at offset %d is not allowed; use lower-case ASCII letters, digits, '.', '_', '-' and '/'", c, off)
	}
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isSeparator(c byte) bool { return c == '.' || c == '_' || c == '-' }

// validSeparator is the grammar's (\.|_|__|-+).
func validSeparator(sep string) bool {
	switch sep {
	case ".", "_", "__":
		return true
	}
	return strings.Trim(sep, "-") == ""
}

// PatternKind tells the three forms of a repository pattern apart.
type PatternKind uint8

const (
	// PatternInvalid is the kind of the zero Pattern, which matches nothing.
	PatternInvalid PatternKind = iota
	// PatternExact names one repository ("team/app").
	PatternExact
	// PatternPrefix is a name with a trailing "/*" ("team/*"); it matches
	// every repository strictly below the name, at any depth, but not the
	// name itself.
	PatternPrefix
	// PatternAll is "*", every repository.
	PatternAll
)

// Pattern is a parsed repository pattern of a scope map. The zero value
// matches nothing. Patterns are comparable, so they can be map keys.
type Pattern struct {
	kind PatternKind
	name string // the repository for PatternExact, the part before "/*" for PatternPrefix
}

// ParsePattern parses a repository pattern: an exact repository name
// ("team/app"), a name followed by one trailing "/*" ("team/*"), or "*".
//
// Anything else is rejected, with a message that says what was wrong and
// shows a valid form: a wildcard in the middle ("a/*/b") or inside a segment
// ("a/b*") would need glob semantics that ACR does not have, and silently
// reading them some other way would grant something the user did not mean.
// Upper case is rejected rather than folded, so that a parsed pattern always
// prints back as exactly its input; callers that want ACR's lower-casing do
// it before parsing.
func ParsePattern(s string) (Pattern, error) {
	switch {
	case s == "":
		return Pattern{}, fmt.Errorf("invalid repository pattern \"\": it is empty; use a repository name such as \"team/app\", a prefix such as \"team/*\", or \"*\" for all repositories")
	case s == "*":
		return Pattern{kind: PatternAll}, nil
	case len(s) > MaxRepositoryLength:
		return Pattern{}, fmt.Errorf("invalid repository pattern %q: it is %d characters long, the maximum is %d", s, len(s), MaxRepositoryLength)
	}
	star := strings.IndexByte(s, '*')
	if star < 0 {
		if reason := checkName(s); reason != "" {
			return Pattern{}, fmt.Errorf("invalid repository pattern %q: %s; a valid pattern looks like \"team/app\", \"team/*\" or \"*\"", s, reason)
		}
		return Pattern{kind: PatternExact, name: s}, nil
	}
	if star == len(s)-1 && star >= 2 && s[star-1] == '/' {
		prefix := s[:star-1]
		if reason := checkName(prefix); reason != "" {
			return Pattern{}, fmt.Errorf("invalid repository pattern %q: the part before \"/*\" is not a repository name: %s; a valid pattern looks like \"team/*\"", s, reason)
		}
		return Pattern{kind: PatternPrefix, name: prefix}, nil
	}
	return Pattern{}, fmt.Errorf("invalid repository pattern %q: a wildcard may only appear as a whole trailing path segment, as in %q, or alone as \"*\"", s, suggestPrefix(s, star))
}

// suggestPrefix proposes the nearest valid prefix pattern for a misplaced
// wildcard: the path segments before the one holding the first '*', so that
// "a/b*" and "a/*/b" both suggest "a/*".
func suggestPrefix(s string, star int) string {
	if slash := strings.LastIndexByte(s[:star], '/'); slash > 0 {
		if prefix := s[:slash]; checkName(prefix) == "" {
			return prefix + "/*"
		}
	}
	return "team/*"
}

// MustParsePattern is ParsePattern for patterns known to be valid, such as
// constants in tests; it panics on an error.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Kind returns which of the three forms p has.
func (p Pattern) Kind() PatternKind { return p.kind }

// Name returns the repository of an exact pattern or the part before "/*"
// of a prefix pattern, and "" otherwise.
func (p Pattern) Name() string { return p.name }

// String returns the pattern as it was written: "team/app", "team/*" or "*".
func (p Pattern) String() string {
	switch p.kind {
	case PatternExact:
		return p.name
	case PatternPrefix:
		return p.name + "/*"
	case PatternAll:
		return "*"
	}
	return ""
}

// Matches reports whether the pattern covers repository repo. It does not
// validate repo; Decide does that once per request.
func (p Pattern) Matches(repo string) bool {
	switch p.kind {
	case PatternExact:
		return repo == p.name
	case PatternPrefix:
		return len(repo) > len(p.name)+1 && repo[len(p.name)] == '/' && strings.HasPrefix(repo, p.name)
	case PatternAll:
		return true
	}
	return false
}

// MarshalText implements encoding.TextMarshaler so patterns can sit in JSON
// and YAML as plain strings.
func (p Pattern) MarshalText() ([]byte, error) {
	if p.kind == PatternInvalid {
		return nil, fmt.Errorf("cannot marshal the zero repository pattern")
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePattern's rules.
func (p *Pattern) UnmarshalText(b []byte) error {
	q, err := ParsePattern(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
