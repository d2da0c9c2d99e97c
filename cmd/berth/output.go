package main

// Output, confirmation and flag helpers shared by the management commands.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/auth"
)

// expiryWarning is how close to its expiry a password is flagged.
const expiryWarning = 7 * 24 * time.Hour

// printJSON writes v as indented JSON, flattened as the az CLI flattens
// ARM resources: the fields of "properties" move up beside id, name and
// type, so scripts written for `az acr token create` find
// credentials.passwords[0].value where they expect it.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b, err = json.MarshalIndent(flatten(doc), "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// flatten lifts the members of every "properties" object into the object
// that holds it; a member already there wins.
func flatten(v any) any {
	switch v := v.(type) {
	case []any:
		for i := range v {
			v[i] = flatten(v[i])
		}
	case map[string]any:
		if props, ok := v["properties"].(map[string]any); ok {
			delete(v, "properties")
			for k, pv := range props {
				if _, taken := v[k]; !taken {
					v[k] = pv
				}
			}
		}
		for k := range v {
			v[k] = flatten(v[k])
		}
	}
	return v
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row writes one row. Empty trailing cells are left out, so that no line
// ends in padding. Cells are escaped: they carry names, user agents and
// reasons that clients chose.
func (t *table) row(cols ...string) {
	for len(cols) > 0 && cols[len(cols)-1] == "" {
		cols = cols[:len(cols)-1]
	}
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = escapeCell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// escapeCell writes control and format characters and invalid UTF-8 as Go
// escapes (\n, \x1b, \u202e), so that a value can neither start a new row
// or column, nor send escape sequences to the terminal, nor reorder the
// text around it.
func escapeCell(s string) string {
	if !strings.ContainsFunc(s, needsEscape) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < utf8.RuneSelf && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

// needsEscape reports control characters (C0, DEL, C1), format characters
// (bidirectional overrides, zero-width characters) and line separators.
func needsEscape(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

func (t *table) flush() error { return t.tw.Flush() }

// fields writes "Label:  value" lines, aligned; an empty value shows as "-".
func fields(w io.Writer, kv ...string) error {
	t := newTable(w)
	for i := 0; i+1 < len(kv); i += 2 {
		t.row(kv[i]+":", cmp.Or(kv[i+1], "-"))
	}
	return t.flush()
}

// fmtTime formats a time as RFC 3339 in UTC.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtOptTime(t *time.Time, none string) string {
	if t == nil || t.IsZero() {
		return none
	}
	return fmtTime(*t)
}

// describePassword sums up a password slot for a table cell.
func describePassword(p api.Password, now time.Time) string {
	s := p.Name + ": expires " + fmtOptTime(p.Expiry, "never") + ", last used " + fmtOptTime(p.LastUsed, "never")
	switch {
	case p.Expiry == nil:
	case !p.Expiry.After(now):
		s += " (EXPIRED)"
	case p.Expiry.Sub(now) < expiryWarning:
		s += " (EXPIRES SOON)"
	}
	return s
}

// warnExpiring writes a warning for each password of token that has
// expired or expires within expiryWarning.
func warnExpiring(w io.Writer, token string, pws []api.Password, now time.Time) {
	for _, p := range pws {
		if p.Expiry == nil || p.Expiry.Sub(now) >= expiryWarning {
			continue
		}
		when := "expired on " + fmtTime(*p.Expiry)
		if p.Expiry.After(now) {
			when = fmt.Sprintf("expires in %s, on %s", roundDuration(p.Expiry.Sub(now)), fmtTime(*p.Expiry))
		}
		fmt.Fprintf(w, "warning: %s of token %q %s; make a new one with `berth token credential generate -n %s --%s`\n", p.Name, token, when, token, p.Name)
	}
}

func roundDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if d >= time.Hour {
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return fmt.Sprintf("%d minutes", int(d/time.Minute)+1)
}

// printCredentials shows freshly generated passwords, once, with the
// docker login command to use them.
func printCredentials(w io.Writer, server string, creds api.Credentials) error {
	if len(creds.Passwords) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nPasswords of %s. They are shown only now and cannot be retrieved later, only regenerated; store them somewhere safe.\n\n", creds.Username)
	t := newTable(w, "  NAME", "PASSWORD", "EXPIRES")
	for _, p := range creds.Passwords {
		t.row("  "+p.Name, p.Value, fmtOptTime(p.Expiry, "never"))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nLog in with:\n\n  docker login -u %s -p %s %s\n\n", creds.Username, creds.Passwords[0].Value, serverHost(server))
	return nil
}

// errCancelled is returned when the user answers no to a confirmation.
var errCancelled = errors.New("cancelled")

// confirm asks the user to confirm deleting what, unless yes is set.
// Without a terminal to ask on, it refuses.
func confirm(cmd *cobra.Command, env *cliEnv, yes bool, what string) error {
	if yes {
		return nil
	}
	in := cmd.InOrStdin()
	if !env.isTerminal(in) {
		return fmt.Errorf("refusing to delete %s without confirmation: stdin is not a terminal; pass --yes to confirm", what)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Delete %s? [y/N]: ", what)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errCancelled
}

// readPasswordStdin reads a password from stdin: everything up to the
// end, without the trailing line break.
func readPasswordStdin(cmd *cobra.Command) (string, error) {
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4096))
	if err != nil {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", errors.New("the password read from stdin is empty")
	}
	return pw, nil
}

// repositoryGrants is the value of a --repository REPO ACTION... flag: each
// use adds one pattern with its actions, in the stored scope-map form, and
// a --tags after it limits those actions to tag patterns.
type repositoryGrants struct {
	flag    string
	actions []string
	rules   []auth.Rule
	last    **repositoryGrants // the grants flag set last, which --tags refers to
	from    int                // where the rules of the last use start
}

func (g *repositoryGrants) String() string { return strings.Join(g.actions, " ") }
func (g *repositoryGrants) Type() string   { return "REPO ACTION..." }

// Set takes "REPO ACTION...", separated by spaces: groupFlagValues joins
// the words the shell split.
func (g *repositoryGrants) Set(v string) error {
	words := strings.Fields(v)
	if len(words) < 2 {
		return fmt.Errorf("give a repository pattern and one or more actions, as in --%s 'samples/*' content/read content/write", g.flag)
	}
	acts, err := auth.RepositoryActions(words[0], words[1:]...)
	if err != nil {
		return err
	}
	g.actions = append(g.actions, acts...)
	g.from = len(g.rules)
	for _, a := range acts {
		g.rules = append(g.rules, auth.Rule{Action: a})
	}
	if g.last != nil {
		*g.last = g
	}
	return nil
}

// merged returns the actions and tag limits of every use: grants add up,
// so an action given once without --tags applies to every tag.
func (g *repositoryGrants) merged() ([]string, map[string][]string, error) {
	if len(g.rules) == 0 {
		return nil, nil, nil
	}
	return auth.MergeRules(g.rules)
}

// addRepositoryFlag adds a repeatable --NAME REPO ACTION... flag.
func addRepositoryFlag(f *pflag.FlagSet, name, usage string) *repositoryGrants {
	g := &repositoryGrants{flag: name}
	f.Var(g, name, usage)
	return g
}

// tagsFlag is --tags PATTERN,...: it limits the actions of the grants flag
// just before it to tag patterns.
type tagsFlag struct {
	last    *repositoryGrants
	allowed []string // the grants flags it may follow
}

func (t *tagsFlag) String() string { return "" }
func (t *tagsFlag) Type() string   { return "PATTERN,..." }

func (t *tagsFlag) Set(v string) error {
	if t.last == nil || !slices.Contains(t.allowed, t.last.flag) {
		return fmt.Errorf("--tags limits the actions of the --%s before it: give it after one, as in --%s team/app content/write --tags 'dev-*,pr-*'", t.allowed[0], t.allowed[0])
	}
	pats := auth.ParseTagList(v)
	if len(pats) == 0 {
		return fmt.Errorf("--tags needs one or more tag patterns, as in --tags 'dev-*,pr-*'")
	}
	if _, _, err := auth.NormalizeTagPatterns(pats); err != nil {
		return err
	}
	for i := t.last.from; i < len(t.last.rules); i++ {
		t.last.rules[i].Tags = append(t.last.rules[i].Tags, pats...)
	}
	return nil
}

// addTagsFlag adds --tags, which applies to the last use of one of grants.
func addTagsFlag(f *pflag.FlagSet, grants ...*repositoryGrants) {
	t := &tagsFlag{}
	for _, g := range grants {
		g.last = &t.last
		t.allowed = append(t.allowed, g.flag)
	}
	f.Var(t, "tags", "limit the actions of the --"+t.allowed[0]+" before it to these tag patterns: literal tags or globs with *, comma-separated, as in 'dev-*,pr-*' (default: every tag)")
}

// groupFlagValues rewrites args so that a flag of multi takes every word
// that follows it up to the next flag: ["--repository", "a/*",
// "content/read", "content/write"] becomes ["--repository=a/* content/read
// content/write"]. pflag gives a flag one value; scope maps need a
// repository and several actions per use, as in az acr.
func groupFlagValues(args []string, multi ...string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, inline, hasInline := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !slices.Contains(multi, name) {
			out = append(out, a)
			continue
		}
		var words []string
		if hasInline {
			words = append(words, inline)
		}
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			words = append(words, args[i])
		}
		out = append(out, "--"+name+"="+strings.Join(words, " "))
	}
	return out
}

// withGroupedFlags makes cmd accept multi-word values for the flags in
// multi (see groupFlagValues). Cobra would otherwise take the extra words
// for positional arguments, so cmd parses its own flags.
func withGroupedFlags(cmd *cobra.Command, multi ...string) {
	run := cmd.RunE
	cmd.DisableFlagParsing = true
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		c.DisableFlagParsing = false
		defer func() { c.DisableFlagParsing = true }()
		if err := c.ParseFlags(groupFlagValues(args, multi...)); err != nil {
			return c.FlagErrorFunc()(c, err)
		}
		if help, _ := c.Flags().GetBool("help"); help {
			return c.Help()
		}
		if err := c.ValidateRequiredFlags(); err != nil {
			return err
		}
		if err := c.ValidateFlagGroups(); err != nil {
			return err
		}
		if rest := c.Flags().Args(); len(rest) > 0 {
			return fmt.Errorf("unexpected argument %q; see `%s --help`", rest[0], c.CommandPath())
		}
		return run(c, nil)
	}
}

// optBool is a true|false flag that knows whether it was given, and takes
// its value as the next word (--write-enabled false), as az does.
type optBool struct {
	set   bool
	value bool
}

func (b *optBool) String() string {
	if !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("use true or false")
	}
	b.set, b.value = true, v
	return nil
}

func (b *optBool) Type() string { return "true|false" }

func (b *optBool) ptr() *bool {
	if !b.set {
		return nil
	}
	v := b.value
	return &v
}

// expiryFlags are --expiration-in-days and --expiration.
type expiryFlags struct {
	days int
	at   string
}

func (e *expiryFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&e.days, "expiration-in-days", 0, "the passwords expire after this many days (default: never)")
	cmd.Flags().StringVar(&e.at, "expiration", "", "the passwords expire at this time, as YYYY-MM-DDTHH:MM:SSZ (default: never)")
	cmd.MarkFlagsMutuallyExclusive("expiration-in-days", "expiration")
}

// expiry returns the requested expiry, or nil for none.
func (e *expiryFlags) expiry(now time.Time) (*time.Time, error) {
	switch {
	case e.days < 0:
		return nil, fmt.Errorf("invalid --expiration-in-days %d: use a positive number of days", e.days)
	case e.days > 0:
		t := now.UTC().Add(time.Duration(e.days) * 24 * time.Hour).Truncate(time.Second)
		return &t, nil
	case e.at != "":
		t, err := time.Parse(time.RFC3339, e.at)
		if err != nil {
			return nil, fmt.Errorf("invalid --expiration %q: use YYYY-MM-DDTHH:MM:SSZ, as in 2030-12-31T00:00:00Z", e.at)
		}
		t = t.UTC()
		return &t, nil
	}
	return nil, nil
}
