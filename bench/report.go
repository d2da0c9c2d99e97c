package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Directions of a row: whether a larger value is better.
const (
	higher = 1  // throughput: ratio is berth / other
	lower  = -1 // time, latency, memory: ratio is other / berth
	info   = 0  // shown, not compared
)

// A row is one measured quantity of a workload, for every flavour.
type row struct {
	label  string
	unit   string
	better int
	scale  float64 // a value is divided by this for display (e.g. bytes to MiB)
	vals   map[string]sample
	notes  map[string]string // shown instead of a value (why there is none)
	chart  string            // short label in the chart; empty: not charted
	target float64           // the goal for berth vs v3.1.2 as a ratio; 0 for none
	count  bool              // whole numbers
}

func newRow(label, unit string, better int) *row {
	return &row{label: label, unit: unit, better: better, scale: 1, vals: map[string]sample{}, notes: map[string]string{}}
}

func (r *row) add(key string, v float64) { r.vals[key] = append(r.vals[key], v) }

// fail records why a flavour has no (complete) value in this row; the first
// reason is kept.
func (r *row) fail(key string, err error) {
	if _, ok := r.notes[key]; !ok {
		r.notes[key] = "error: " + oneLine(err.Error())
	}
}

// median returns the flavour's median in display units and whether there is
// one.
func (r *row) median(key string) (float64, bool) {
	s := r.vals[key]
	if len(s) == 0 {
		return 0, false
	}
	return s.median() / r.scale, true
}

// ratio returns how many times better berth is than the flavour other:
// berth/other for throughput, other/berth for times and sizes.
func (r *row) ratio(other string) (float64, bool) {
	b, ok1 := r.median(keyBerth)
	o, ok2 := r.median(other)
	if !ok1 || !ok2 || r.better == info || b <= 0 || o <= 0 {
		return 0, false
	}
	if r.better == higher {
		return b / o, true
	}
	return o / b, true
}

// A table is the rows of one workload.
type table struct {
	title string
	about string
	rows  []*row
	// columns, when set, are the table's own (the scale-out workloads
	// compare set-ups, not flavours), shown without ratio columns.
	columns []column
}

// A column is one set-up of a table with columns of its own.
type column struct{ key, label string }

func (t *table) row(label, unit string, better int) *row {
	r := newRow(label, unit, better)
	t.rows = append(t.rows, r)
	return r
}

// results is everything one run measured.
type results struct {
	cfg         *config
	command     string
	start, end  time.Time
	loadStart   string
	loadEnd     string
	otherCPU    float64 // cores used on average by processes other than the benchmark and the registries
	flavours    []*flavour
	unavailable []string // flavours that could not run, with the reason

	ceilings *table // one column: "machine"
	tables   []*table
	memory   *table
	notes    []string
	profiles []string

	// Rows the targets are judged on.
	pushBlob, pushImage, pullBlob, pullImage *row
	getAuth, tokens                          *row
	catalogN, catalogDefault                 *row
	idleRSS                                  *row
	sha256, pageWrite, pageRead, durable     *row
	clientPush, clientPull                   *row
}

const machineKey = "machine"

func (res *results) table(title, about string) *table {
	t := &table{title: title, about: about}
	res.tables = append(res.tables, t)
	return t
}

// A target is one of the goals for berth.
type target struct {
	goal     string
	measured string
	met      string // "met", "missed" or "not measured"
}

func (res *results) targets() []target {
	var ts []target
	ratioTarget := func(goal string, r *row, min float64) {
		t := target{goal: goal, met: "not measured"}
		if r != nil {
			if v, ok := r.ratio(keyV3); ok {
				t.measured = formatRatio(v)
				t.met = metOrMissed(v >= min)
			}
		}
		ts = append(ts, t)
	}
	absTarget := func(goal string, r *row, ok func(float64) bool, unit string) {
		t := target{goal: goal, met: "not measured"}
		if r != nil {
			if v, has := r.median(keyBerth); has {
				t.measured = formatValue(v) + " " + unit
				t.met = metOrMissed(ok(v))
			}
		}
		ts = append(ts, t)
	}
	fraction := func(goal string, r, ceiling *row, min float64) {
		t := target{goal: goal, met: "not measured"}
		if r != nil && ceiling != nil {
			v, ok1 := r.median(keyBerth)
			c, ok2 := ceiling.median(machineKey)
			if ok1 && ok2 && c > 0 {
				t.measured = fmt.Sprintf("%.0f %% (%s of %s MB/s)", 100*v/c, formatValue(v), formatValue(c))
				t.met = metOrMissed(v/c >= min)
			}
		}
		ts = append(ts, t)
	}
	ratioTarget("push of the big blob ≥ 4× "+distributionVersion, res.pushBlob, 4)
	ratioTarget("push of the layered image ≥ 4× "+distributionVersion, res.pushImage, 4)
	fraction("push of the big blob ≥ 60 % of the sha256 ceiling", res.pushBlob, res.sha256, 0.6)
	ratioTarget("pull of the big blob ≥ 1.2× "+distributionVersion, res.pullBlob, 1.2)
	ratioTarget("pull of the layered image ≥ 1.2× "+distributionVersion, res.pullImage, 1.2)
	absTarget("authenticated manifest GET ≥ 20,000 req/s", res.getAuth, func(v float64) bool { return v >= 20000 }, "req/s")
	ratioTarget("authenticated manifest GET ≥ 25× "+distributionVersion+" with htpasswd", res.getAuth, 25)
	absTarget("token issuance ≥ 10,000 req/s", res.tokens, func(v float64) bool { return v >= 10000 }, "req/s")
	if res.cfg.repos == 10000 {
		absTarget("full catalog of 10,000 repositories (n=1000) < 1 s", res.catalogN, func(v float64) bool { return v < 1 }, "s")
		absTarget("full catalog of 10,000 repositories (default page) < 1 s", res.catalogDefault, func(v float64) bool { return v < 1 }, "s")
	} else {
		ts = append(ts, target{goal: "full catalog of 10,000 repositories < 1 s", met: "not measured",
			measured: fmt.Sprintf("this run listed %s repositories", thousands(res.cfg.repos))})
	}
	absTarget("idle RSS < 40 MB (38.1 MiB)", res.idleRSS, func(v float64) bool { return v*(1<<20) < 40e6 }, "MiB")
	return ts
}

type fraction struct {
	what           string
	berth, ceiling float64
}

// fractions compares berth's push and pull with the machine's and the
// client's ceilings.
func (res *results) fractions() []fraction {
	var out []fraction
	add := func(what string, r, ceiling *row) {
		if r == nil || ceiling == nil {
			return
		}
		b, ok1 := r.median(keyBerth)
		c, ok2 := ceiling.median(machineKey)
		if ok1 && ok2 && c > 0 {
			out = append(out, fraction{what, b, c})
		}
	}
	add("push of the blob / sha256 in Go", res.pushBlob, res.sha256)
	add("push of the blob / writing into the page cache", res.pushBlob, res.pageWrite)
	add("push of the blob / writing and fsyncing a file", res.pushBlob, res.durable)
	add("push of the blob / the client's push into a handler that discards it", res.pushBlob, res.clientPush)
	add("pull of the blob / reading from the page cache", res.pullBlob, res.pageRead)
	add("pull of the blob / the client's pull of a file served with sendfile", res.pullBlob, res.clientPull)
	return out
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// markdown renders the results. chart is the chart's path relative to the
// Markdown file, or empty.
func (res *results) markdown(chart string) string {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cfg := res.cfg
	p("## Results\n\n")
	p("Run of %s, %s (%s). A run on a busy machine is noisy: check the spread, the load average and "+
		"the CPU that other processes took before quoting a number.\n\n",
		res.start.UTC().Format("2006-01-02 15:04 MST"), res.end.Sub(res.start).Round(time.Second), mode(cfg))
	p("```\n%s\n```\n\n", res.command)
	p("| | |\n|---|---|\n")
	p("| CPU | %s, %d cores |\n", cpuModel(), runtime.NumCPU())
	p("| memory | %s |\n", memTotal())
	p("| kernel | %s |\n", kernel())
	p("| Go | %s |\n", runtime.Version())
	p("| load average (1, 5, 15 min) | %s at the start, %s at the end |\n", res.loadStart, res.loadEnd)
	p("| other processes | %.2f of %d cores on average during the measurements (0 on a quiet machine) |\n", res.otherCPU, runtime.NumCPU())
	for _, f := range res.flavours {
		p("| %s | %s |\n", f.label, f.version)
	}
	for _, u := range res.unavailable {
		p("| not run | %s |\n", u)
	}
	p("| repetitions | %d; a cell is the median, (min–max) when there are several |\n", cfg.reps)
	p("| htpasswd | bcrypt cost %d for Distribution's authenticated runs |\n", cfg.bcryptCost)
	p("\n")

	p("### Targets\n\n")
	p("Against %s, from this run.\n\n", distributionVersion)
	p("| target | berth | |\n|---|---|---|\n")
	for _, t := range res.targets() {
		p("| %s | %s | %s |\n", t.goal, cmpOrDash(t.measured), t.met)
	}
	p("\n")
	if chart != "" {
		p("![berth compared with Distribution: how many times better, log scale](%s)\n\n", filepath.ToSlash(chart))
	}

	if res.ceilings != nil {
		p("### %s\n\n%s\n\n", res.ceilings.title, res.ceilings.about)
		p("| | |\n|---|---|\n")
		for _, r := range res.ceilings.rows {
			p("| %s | %s |\n", rowLabel(r), r.cell(machineKey))
		}
		p("\n")
	}

	if fr := res.fractions(); len(fr) > 0 {
		p("### berth against the ceilings\n\n")
		p("berth's median rates as a fraction of the ceilings' medians, from the tables below.\n\n")
		p("| | berth | ceiling | fraction |\n|---|---:|---:|---:|\n")
		for _, f := range fr {
			p("| %s | %s MB/s | %s MB/s | %.0f %% |\n", f.what, formatValue(f.berth), formatValue(f.ceiling), 100*f.berth/f.ceiling)
		}
		p("\n")
	}

	for _, t := range res.allTables() {
		p("### %s\n\n", t.title)
		if t.about != "" {
			p("%s\n\n", t.about)
		}
		if len(t.columns) > 0 {
			p("| |")
			for _, c := range t.columns {
				p(" %s |", c.label)
			}
			p("\n|---|%s\n", strings.Repeat("---:|", len(t.columns)))
			for _, r := range t.rows {
				p("| %s |", rowLabel(r))
				for _, c := range t.columns {
					p(" %s |", r.cell(c.key))
				}
				p("\n")
			}
			p("\n")
			continue
		}
		p("| |")
		for _, f := range res.flavours {
			p(" %s |", f.label)
		}
		others := res.others()
		for _, o := range others {
			p(" berth vs %s |", o.label)
		}
		p("\n|---|")
		for range len(res.flavours) + len(others) {
			p("---:|")
		}
		p("\n")
		for _, r := range t.rows {
			p("| %s |", rowLabel(r))
			for _, f := range res.flavours {
				p(" %s |", r.cell(f.key))
			}
			for _, o := range others {
				if v, ok := r.ratio(o.key); ok {
					p(" %s |", formatRatio(v))
				} else {
					p(" |")
				}
			}
			p("\n")
		}
		p("\n")
	}
	if len(res.profiles) > 0 {
		p("CPU profiles of berth: %s.\n\n", strings.Join(res.profiles, ", "))
	}
	if len(res.notes) > 0 {
		p("### Notes\n\n")
		for _, n := range res.notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return b.String()
}

// allTables returns the workloads' tables in the order of the report.
func (res *results) allTables() []*table {
	if res.memory == nil {
		return res.tables
	}
	return append(slices.Clip(res.tables), res.memory)
}

// others are the flavours berth is compared with.
func (res *results) others() []*flavour {
	var o []*flavour
	for _, f := range res.flavours {
		if f.key != keyBerth {
			o = append(o, f)
		}
	}
	return o
}

func rowLabel(r *row) string {
	if r.unit == "" {
		return r.label
	}
	return r.label + " (" + r.unit + ")"
}

// cell is a row's value for one flavour: median (min–max), or the note.
func (r *row) cell(key string) string {
	s := r.vals[key]
	note := r.notes[key]
	if len(s) == 0 {
		return escapeCell(note)
	}
	v := func(x float64) string {
		if r.count {
			return thousands(int(math.Round(x / r.scale)))
		}
		return formatValue(x / r.scale)
	}
	c := v(s.median())
	if len(s) > 1 {
		c += " (" + v(s.min()) + "–" + v(s.max()) + ")"
	}
	if note != "" {
		c += " " + escapeCell(note)
	}
	return c
}

// formatValue shows 3 significant digits, with thousands separators for
// large values.
func formatValue(x float64) string {
	switch ax := math.Abs(x); {
	case math.IsNaN(x):
		return "–"
	case ax >= 1000:
		return thousands(int(math.Round(x)))
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func formatRatio(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// thousands formats n with commas: 10000 → "10,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatSize shows a byte count in binary units: 1 GiB, 64 MiB.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func escapeCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func cmpOrDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func mode(cfg *config) string {
	if cfg.quick {
		return "quick run: a smoke test, not a measurement to quote"
	}
	return "full run"
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return cmpOrDash(strings.TrimSpace(string(b)))
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// Markers around the results in the output file: a file that has them keeps
// everything outside, so that the prose of docs/benchmarks.md survives a run.
const (
	beginMarker = "<!-- bench:results:begin -->"
	endMarker   = "<!-- bench:results:end -->"
)

// writeReport puts report between the markers of the file at path, or
// writes a new file with only the report when it has none.
func writeReport(path, report string) error {
	body := beginMarker + "\n" + report + endMarker + "\n"
	old, err := os.ReadFile(path)
	if err == nil {
		s := string(old)
		i := strings.Index(s, beginMarker)
		j := strings.Index(s, endMarker)
		if i >= 0 && j > i {
			body = s[:i] + body + strings.TrimPrefix(s[j+len(endMarker):], "\n")
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(body), 0o644)
}
