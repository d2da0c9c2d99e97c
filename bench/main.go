// Command bench measures berth against CNCF Distribution on one machine, in
// one run, with the same Go client and the same data: blob push and pull,
// authenticated and anonymous manifest requests, token issuance, listings of
// many repositories and tags, memory, (berth only) listings of many
// tokens and scope maps, the same on PostgreSQL and S3, and revocation
// across three nodes. It prints a Markdown report and
// writes it, with a PNG chart of the ratios, into a file. See
// docs/benchmarks.md.
//
//	go run ./bench -out docs/benchmarks.md
//	go run ./bench -quick
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	out, chart          string
	quick               bool
	reps                int
	blobSize, layerSize byteSize
	layers, jobs        int
	concurrency         int
	duration            time.Duration
	maxRequests         int64
	repos, tags         int
	identities          int
	populateConcurrency int
	populateTimeout     time.Duration
	registries          []string
	workloads           []string
	install             bool
	distribution        string
	dockerRegistry      string
	bcryptCost          int
	requestLogs         bool
	profileDir          string
	workDir             string
	keep                bool
	changes             int
}

// Workloads that -workloads can select; memory is measured in every run.
var allWorkloads = []string{"push", "small", "login", "meta", "identities", "scaleout", "revocation", "encryption"}

func parseFlags(args []string) (*config, error) {
	cfg := &config{blobSize: 1 << 30, layerSize: 64 << 20}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags]\n\nRuns berth and CNCF Distribution side by side and reports how they compare (docs/benchmarks.md).\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.out, "out", "", "write the report into this Markdown `file` too (between its result markers, if it has them)")
	fs.StringVar(&cfg.chart, "chart", "", "write the chart of ratios to this PNG `file` (default: benchmarks.png next to -out)")
	fs.BoolVar(&cfg.quick, "quick", false, "small sizes and short runs for a smoke test: -reps 2 -blob-size 128MiB -layer-size 8MiB -duration 2s -repos 1000 -tags 1000 -identities 1000")
	fs.IntVar(&cfg.reps, "reps", 3, "repetitions of every measurement")
	fs.Var(&cfg.blobSize, "blob-size", "size of the blob pushed and pulled monolithically (e.g. 1GiB)")
	fs.IntVar(&cfg.layers, "layers", 16, "layers of the image pushed by go-containerregistry")
	fs.Var(&cfg.layerSize, "layer-size", "size of each layer")
	fs.IntVar(&cfg.jobs, "jobs", 4, "concurrent layer uploads and downloads of the image")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "concurrent requests of the small-request and login workloads")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of one small-request or login run")
	fs.Int64Var(&cfg.maxRequests, "max-requests", 5_000_000, "stop a small-request or login run after this many requests even if -duration is not over")
	fs.IntVar(&cfg.repos, "repos", 10000, "repositories in the catalog of the metadata workload")
	fs.IntVar(&cfg.tags, "tags", 10000, "tags in the one repository of the metadata workload")
	fs.IntVar(&cfg.identities, "identities", 50000, "tokens, each with its own scope map, of the identity workload")
	fs.IntVar(&cfg.populateConcurrency, "populate-concurrency", 16, "concurrent requests while creating the repositories and tags")
	fs.DurationVar(&cfg.populateTimeout, "populate-timeout", 4*time.Minute, "give up creating the repositories and tags of one registry after this long")
	registries := fs.String("registries", "berth,v3,v2", "registries to run: berth (always), v3 (Distribution "+distributionVersion+"), v2 (Debian's docker-registry "+debianVersion+")")
	workloads := fs.String("workloads", strings.Join(allWorkloads, ","), "workloads to run: push (blob push and pull), small (manifest requests), login (token issuance), meta (listings), identities (token and scope map listings), scaleout (PostgreSQL and S3), revocation (across three nodes), encryption (encrypted against plain)")
	fs.BoolVar(&cfg.install, "install", true, "install a missing Distribution: go install into the user cache directory, apt-get for docker-registry")
	fs.StringVar(&cfg.distribution, "distribution", "", "Distribution "+distributionVersion+" `binary` to use instead of the cached one")
	fs.StringVar(&cfg.dockerRegistry, "docker-registry", "", "docker-registry "+debianVersion+" `binary` to use instead of the one on PATH")
	fs.IntVar(&cfg.bcryptCost, "bcrypt-cost", 5, "bcrypt cost of Distribution's htpasswd file (5 is what Distribution's documentation uses)")
	fs.BoolVar(&cfg.requestLogs, "request-logs", false, "keep every registry's default per-request logging (by default all log warnings only)")
	fs.StringVar(&cfg.profileDir, "berth-profile", "", "save CPU profiles of berth (via --debug-addr) during its first monolithic push (2 s), authenticated manifest GET run and login run into this `directory`")
	fs.StringVar(&cfg.workDir, "workdir", "", "parent `directory` of the run's temporary data (default: the system's temporary directory)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temporary data and registry logs")
	fs.IntVar(&cfg.changes, "changes", 200, "token changes of the revocation workload")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		quick := map[string]func(){
			"reps":       func() { cfg.reps = 2 },
			"blob-size":  func() { cfg.blobSize = 128 << 20 },
			"layer-size": func() { cfg.layerSize = 8 << 20 },
			"duration":   func() { cfg.duration = 2 * time.Second },
			"repos":      func() { cfg.repos = 1000 },
			"tags":       func() { cfg.tags = 1000 },
			"identities": func() { cfg.identities = 1000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if cfg.out != "" && cfg.chart == "" {
		cfg.chart = filepath.Join(filepath.Dir(cfg.out), "benchmarks.png")
	}
	var err error
	if cfg.registries, err = parseList(*registries, []string{keyBerth, keyV3, keyV2}); err != nil {
		return nil, fmt.Errorf("-registries: %v", err)
	}
	if !slices.Contains(cfg.registries, keyBerth) {
		cfg.registries = append([]string{keyBerth}, cfg.registries...)
	}
	if cfg.workloads, err = parseList(*workloads, allWorkloads); err != nil {
		return nil, fmt.Errorf("-workloads: %v", err)
	}
	switch {
	case cfg.reps < 1, cfg.layers < 1, cfg.jobs < 1, cfg.concurrency < 1, cfg.populateConcurrency < 1,
		cfg.repos < 1, cfg.tags < 1, cfg.identities < 1, cfg.maxRequests < 1, cfg.changes < 1:
		return nil, errors.New("counts must be at least 1")
	case cfg.blobSize < 1<<10 || cfg.layerSize < 1<<10:
		return nil, errors.New("-blob-size and -layer-size must be at least 1KiB")
	case cfg.duration < time.Second || cfg.duration > 10*time.Minute:
		return nil, errors.New("-duration must be between 1s and 10m")
	case cfg.repos > 100000 || cfg.tags > 100000 || cfg.identities > 100000:
		return nil, errors.New("-repos, -tags and -identities are limited to 100000")
	case cfg.bcryptCost < 4 || cfg.bcryptCost > 31:
		return nil, errors.New("-bcrypt-cost must be between 4 and 31")
	}
	return cfg, nil
}

// parseList splits a comma-separated list and checks it against known.
func parseList(s string, known []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("unknown %q (known: %s)", v, strings.Join(known, ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// byteSize is a flag holding a size such as 1GiB, 64MiB, 512KiB or 1000.
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 || n > (1<<40)/u.mult {
				return fmt.Errorf("invalid size %q: use a whole number with KiB, MiB or GiB", s)
			}
			*b = byteSize(n * u.mult)
			return nil
		}
	}
	return fmt.Errorf("invalid size %q", s)
}

func main() {
	// The run holds the content and a buffer for pulls, 2 GiB in a full
	// run, for its whole life. With the default GOGC the heap would grow by
	// as much again before each collection; a quarter is plenty, and the
	// large buffers hold no pointers, so collections stay cheap.
	debug.SetGCPercent(25)
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is the state of one run.
type bench struct {
	cfg      *config
	res      *results
	work     string // temporary directory of the run
	content  *content
	tiny     *tinyImage
	pullBuf  []byte // pulls land here
	bulk     *http.Client
	small    *http.Client
	subjects []*subject
	scale    *scaleServices // PostgreSQL and S3, once a workload started them
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, cfg *config) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	// Fail now rather than after the run.
	for _, path := range []string{cfg.out, cfg.chart} {
		if path == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			return fmt.Errorf("cannot write %s: no directory %s", path, filepath.Dir(path))
		}
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp(cfg.workDir, "berth-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		logf("keeping the run's data and logs in %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{
		cfg:  cfg,
		work: work,
		res: &results{cfg: cfg, start: time.Now(), loadStart: loadAverage(),
			command: strings.TrimSpace("go run ./bench " + strings.Join(redactPaths(os.Args[1:]), " "))},
		tiny:  newTinyImage(),
		bulk:  &http.Client{Transport: newTransport(true), Timeout: bulkTimeout},
		small: &http.Client{Transport: newTransport(false), Timeout: 30 * time.Second},
	}
	if err := b.checkResources(); err != nil {
		return err
	}

	if err := b.prepareFlavours(ctx, root); err != nil {
		return err
	}
	logf("generating %s of random content", formatSize(max(int64(cfg.blobSize), int64(cfg.layerSize)*int64(cfg.layers))))
	b.content = newContent(int64(cfg.blobSize), int64(cfg.layerSize), cfg.layers)
	b.pullBuf = make([]byte, len(b.content.buf))
	prefault(b.pullBuf)

	// The CPU that other processes take during the run says how quiet the
	// machine was.
	t0, machine0, self0 := time.Now(), machineCPU(), selfCPU()
	if err := b.ceilings(ctx); err != nil {
		return err
	}
	defer b.stopAll()
	if err := b.startSubjects(ctx); err != nil {
		return err
	}
	steps := []struct {
		workload string
		run      func(context.Context) error
	}{
		{"push", b.pushPull},
		{"small", b.smallWorkload},
		{"", b.peakMemory},
		{"login", b.loginWorkload},
		{"meta", b.metaWorkload},
		{"", b.openMemory},
		// Late: its many tokens must not weigh on the memory figures.
		{"identities", b.identityWorkload},
		// Registries of their own, after the memory figures too.
		{"scaleout", b.scaleOutWorkload},
		{"revocation", b.revocationWorkload},
		{"encryption", b.encryptionWorkload},
	}
	defer func() {
		if b.scale != nil {
			b.scale.stop()
		}
	}()
	for _, st := range steps {
		if st.workload != "" && !slices.Contains(cfg.workloads, st.workload) {
			continue
		}
		if err := st.run(ctx); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	others := machineCPU() - machine0 - (selfCPU() - self0)
	for _, s := range b.subjects {
		for _, in := range []*instance{s.auth, s.open} {
			d, _ := processCPU(in.pid())
			others -= d
		}
	}
	b.res.otherCPU = max(0, others.Seconds()/time.Since(t0).Seconds())
	b.stopAll()
	b.res.end, b.res.loadEnd = time.Now(), loadAverage()
	return b.report()
}

// redactPaths replaces absolute paths among command-line arguments with
// DIR, so that the report, which is committed, names no directory of the
// machine it ran on.
func redactPaths(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		name, val, hasVal := strings.Cut(a, "=")
		switch {
		case filepath.IsAbs(a):
			out[i] = "DIR"
		case hasVal && strings.HasPrefix(name, "-") && filepath.IsAbs(val):
			out[i] = name + "=DIR"
		default:
			out[i] = a
		}
	}
	return out
}

// checkResources refuses to start when the run would not fit in memory or
// on disk, rather than failing half way.
func (b *bench) checkResources() error {
	cfg := b.cfg
	data := max(int64(cfg.blobSize), int64(cfg.layerSize)*int64(cfg.layers))
	if avail := memAvailable(); avail > 0 && avail < 2*data+(1<<30) {
		return fmt.Errorf("the run holds %s of content twice in memory and only %s is available: use smaller -blob-size and -layer-size, or -quick",
			formatSize(data), formatSize(avail))
	}
	var disk int64
	if slices.Contains(cfg.workloads, "push") {
		disk = int64(cfg.reps) * (int64(cfg.blobSize) + int64(cfg.layerSize)*int64(cfg.layers)) * int64(len(cfg.registries))
	}
	disk += int64(cfg.blobSize) + 1<<30
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.work, &st); err == nil {
		if free := int64(st.Bavail) * st.Bsize; free < disk {
			return fmt.Errorf("the run needs about %s of disk in %s and %s is free: use -workdir, fewer -reps or smaller sizes",
				formatSize(disk), b.work, formatSize(free))
		}
	}
	return nil
}

func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// prepareFlavours builds berth and finds (or installs) the Distributions.
// A Distribution that cannot be had is left out of the report, with the
// reason; berth must build.
func (b *bench) prepareFlavours(ctx context.Context, root string) error {
	bin := filepath.Join(b.work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return err
	}
	logf("building berth")
	f, err := buildBerth(ctx, root, bin)
	if err != nil {
		return err
	}
	b.res.flavours = append(b.res.flavours, f)
	if slices.Contains(b.cfg.registries, keyV3) {
		f, err := distributionV3(ctx, b.cfg.distribution, b.cfg.install, logf)
		if err != nil {
			logf("Distribution %s is not available: %v", distributionVersion, err)
			b.res.unavailable = append(b.res.unavailable, fmt.Sprintf("Distribution %s: %s", distributionVersion, oneLine(err.Error())))
		} else {
			b.res.flavours = append(b.res.flavours, f)
		}
	}
	if slices.Contains(b.cfg.registries, keyV2) {
		f, err := distributionDebian(ctx, b.cfg.dockerRegistry, b.cfg.install, logf)
		if err != nil {
			logf("docker-registry %s is not available: %v", debianVersion, err)
			b.res.unavailable = append(b.res.unavailable, fmt.Sprintf("docker-registry %s: %s", debianVersion, oneLine(err.Error())))
		} else {
			b.res.flavours = append(b.res.flavours, f)
		}
	}
	return ctx.Err()
}

// ceilings measures the machine and the client.
func (b *bench) ceilings(ctx context.Context) error {
	cfg, blob := b.cfg, b.content.blob()
	size := formatSize(int64(len(blob)))
	t := &table{title: "Ceilings of this machine and of the client",
		about: "The same run, before the registries start. MB/s is 10^6 bytes per second. The client's ceilings pit the " +
			"benchmark's HTTP client against servers inside the benchmark's process that do no work: a raw HTTP/1.1 responder " +
			"(the client's own ceiling) and a trivial net/http handler (the ceiling of a registry built on net/http). " +
			"Both share the machine's cores with the client, as the registries do."}
	b.res.ceilings = t
	b.res.sha256 = t.row("sha256 of "+size+" in Go, one goroutine", "MB/s", info)
	b.res.pageWrite = t.row("write "+size+" into the page cache, 1 MiB writes", "MB/s", info)
	durable := t.row("write "+size+" and fsync it (disk)", "MB/s", info)
	b.res.durable = durable
	b.res.pageRead = t.row("read it back from the page cache, 1 MiB reads", "MB/s", info)
	for range cfg.reps {
		b.res.sha256.add(machineKey, sha256Rate(blob))
		w, d, r, err := fileRates(b.work, blob, b.pullBuf[:len(blob)])
		if err != nil {
			return err
		}
		b.res.pageWrite.add(machineKey, w)
		durable.add(machineKey, d)
		b.res.pageRead.add(machineKey, r)
	}
	logf("sha256 %.0f MB/s, page cache write %.0f MB/s, write+fsync %.0f MB/s, read %.0f MB/s",
		b.res.sha256.vals[machineKey].median(), b.res.pageWrite.vals[machineKey].median(),
		durable.vals[machineKey].median(), b.res.pageRead.vals[machineKey].median())

	cc, err := clientCeilings(ctx, cfg, b.work, b.tiny.manifest, blob, b.pullBuf[:len(blob)])
	if err != nil {
		return fmt.Errorf("client ceilings: %v", err)
	}
	for _, x := range []struct {
		what string
		r    loadResult
	}{{"raw responder", cc.raw}, {"trivial net/http handler", cc.handler}} {
		label := fmt.Sprintf("client: manifest GETs, concurrency %d, from a %s", cfg.concurrency, x.what)
		t.row(label, "req/s", info).add(machineKey, x.r.rate())
		t.row(label+", p50", "ms", info).add(machineKey, ms(x.r.p50))
		t.row(label+", p99", "ms", info).add(machineKey, ms(x.r.p99))
		t.row(label+", CPU of the whole process", "cores", info).add(machineKey, x.r.clientCPU)
	}
	b.res.clientPush = t.row("client: push of "+size+" into a net/http handler that discards it", "MB/s", info)
	b.res.clientPush.add(machineKey, cc.push)
	b.res.clientPull = t.row("client: pull of "+size+" from a file served by net/http (sendfile)", "MB/s", info)
	b.res.clientPull.add(machineKey, cc.pull)
	logf("client ceilings: %.0f manifest GETs/s from a raw responder, %.0f from a net/http handler; push %.0f MB/s, pull %.0f MB/s",
		cc.raw.rate(), cc.handler.rate(), cc.push, cc.pull)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startSubjects starts an authenticated and an open instance of every
// flavour, measures their idle memory and sets them up.
func (b *bench) startSubjects(ctx context.Context) error {
	opt := instanceOptions{workDir: b.work, requestLogs: b.cfg.requestLogs, bcryptCost: b.cfg.bcryptCost}
	for _, f := range b.res.flavours {
		s := &subject{f: f}
		var err error
		o := opt
		o.profile = f.key == keyBerth && b.cfg.profileDir != ""
		if s.auth, err = startInstance(ctx, f, roleAuth, o); err != nil {
			return err
		}
		b.subjects = append(b.subjects, s)
		if s.open, err = startInstance(ctx, f, roleOpen, opt); err != nil {
			return err
		}
		logf("started %s: %s (authenticated), %s (anonymous)", f.label, s.auth.url, s.open.url)
	}
	// Idle: started, nothing asked yet.
	time.Sleep(2 * time.Second)
	t := &table{title: "Memory (workload 6)", about: "Resident memory of the registry processes, from /proc/PID/status. " +
		"Idle is VmRSS 2 s after start, before any request. Peak is VmHWM, the high-water mark since start."}
	b.res.memory = t
	b.res.idleRSS = t.row("RSS at idle, authenticated instance", "MiB", lower)
	b.res.idleRSS.scale, b.res.idleRSS.chart = 1<<20, "RSS at idle"
	idleOpen := t.row("RSS at idle, anonymous instance", "MiB", lower)
	idleOpen.scale = 1 << 20
	for _, s := range b.subjects {
		for _, x := range []struct {
			in *instance
			r  *row
		}{{s.auth, b.res.idleRSS}, {s.open, idleOpen}} {
			m, err := readMemory(x.in.pid())
			if err != nil {
				return err
			}
			x.r.add(s.f.key, float64(m.rss))
		}
	}
	for _, s := range b.subjects {
		if err := b.setUp(ctx, s); err != nil {
			return fmt.Errorf("set up %s: %v", s.f.label, err)
		}
	}
	return nil
}

func (b *bench) stopAll() {
	for _, s := range b.subjects {
		for _, in := range []*instance{s.auth, s.open} {
			if in != nil {
				in.stop()
			}
		}
	}
}

// rotate returns the subjects in an order that changes with rep, so that no
// registry always runs first (on a cold cache) or last (on a warm machine).
func (b *bench) rotate(rep int) []*subject {
	n := len(b.subjects)
	out := make([]*subject, 0, n)
	for i := range n {
		out = append(out, b.subjects[(i+rep)%n])
	}
	return out
}

// alive returns an error when an instance of s has died.
func alive(s *subject) error {
	for _, in := range []*instance{s.auth, s.open} {
		if !in.running() {
			return fmt.Errorf("%s is not running:\n%s", in.name(), in.logTail())
		}
	}
	return nil
}

// pushPull runs workloads 1 and 2.
func (b *bench) pushPull(ctx context.Context) error {
	cfg := b.cfg
	blob := formatSize(int64(cfg.blobSize))
	image := fmt.Sprintf("%d × %s", cfg.layers, formatSize(int64(cfg.layerSize)))
	push := b.res.table("Push (workload 1)", "Authenticated instances: berth with its owner user's access token, Distribution with htpasswd. "+
		"Every repetition pushes new content. The monolithic push is a POST then one PUT with the whole blob; "+
		"the image is pushed by go-containerregistry's remote.Write with "+strconv.Itoa(cfg.jobs)+" jobs (POST, PATCH, PUT per layer).")
	b.res.pushBlob = push.row(blob+" blob, monolithic", "MB/s", higher)
	b.res.pushBlob.chart, b.res.pushBlob.target = "push "+blob+" blob", 4
	b.res.pushImage = push.row("image of "+image+", go-containerregistry, "+strconv.Itoa(cfg.jobs)+" jobs", "MB/s", higher)
	b.res.pushImage.chart, b.res.pushImage.target = "push image "+image, 4
	pull := b.res.table("Pull (workload 2)", "The content just pushed, read into memory; the digests are checked after the clock stops. "+
		"The image's layers are fetched "+strconv.Itoa(cfg.jobs)+" at a time after its manifest.")
	b.res.pullBlob = pull.row(blob+" blob", "MB/s", higher)
	b.res.pullBlob.chart, b.res.pullBlob.target = "pull "+blob+" blob", 1.2
	b.res.pullImage = pull.row("image of "+image+", "+strconv.Itoa(cfg.jobs)+" parallel", "MB/s", higher)
	b.res.pullImage.chart, b.res.pullImage.target = "pull image "+image, 1.2

	record := func(r *row, s *subject, what string, v float64, err error) bool {
		if err != nil {
			logf("%s %s: %v", what, s.f.label, err)
			r.fail(s.f.key, err)
			return false
		}
		logf("%s %s: %.0f MB/s", what, s.f.label, v)
		r.add(s.f.key, v)
		return true
	}
	for rep := range cfg.reps {
		logf("push and pull, repetition %d of %d: hashing new content", rep+1, cfg.reps)
		b.content.refresh()
		tag := fmt.Sprintf("r%d", rep)
		pushed := map[*subject][2]bool{}
		for _, s := range b.rotate(rep) {
			if err := alive(s); err != nil {
				return err
			}
			var wait func() (string, error)
			if rep == 0 && s.f.key == keyBerth && cfg.profileDir != "" {
				wait = profile(ctx, s.auth, cfg.profileDir, "berth-push.pprof", 2)
			}
			v, err := b.pushBlob(ctx, s)
			// The profile covers the blob's push, then idle time, not the image's.
			b.waitProfile(wait)
			okBlob := record(b.res.pushBlob, s, "push "+blob+" blob to", v, err)
			v, err = b.pushImage(ctx, s, tag)
			okImage := record(b.res.pushImage, s, "push image to", v, err)
			pushed[s] = [2]bool{okBlob, okImage}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		for _, s := range b.rotate(rep) {
			if pushed[s][0] {
				v, err := b.pullBlob(ctx, s)
				record(b.res.pullBlob, s, "pull "+blob+" blob from", v, err)
			}
			if pushed[s][1] {
				v, err := b.pullImage(ctx, s, tag)
				record(b.res.pullImage, s, "pull image from", v, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

// smallWorkload runs workload 3.
func (b *bench) smallWorkload(ctx context.Context) error {
	cfg := b.cfg
	t := b.res.table("Small requests (workload 3)", fmt.Sprintf("Manifest of bench/app:v1 (%d bytes), %d concurrent clients in a closed loop for %v per run, "+
		"keep-alive connections. Authenticated: berth with an access token of the scoped token %q (content/read on bench/app), "+
		"fetched once from /oauth2/token and reused until it nears expiry, as docker does; Distribution with htpasswd Basic "+
		"credentials on every request (its built-in authentication; bcrypt cost %d). Anonymous: berth with --anonymous-pull, "+
		"Distribution without auth. CPU is the average number of cores busy in the registry process, in the client, and in every other process of the machine (noise).",
		len(b.tiny.manifest), cfg.concurrency, cfg.duration, tokenName, cfg.bcryptCost))
	type rows struct{ rate, p50, p99, server, client, other *row }
	rs := map[string]rows{}
	for _, v := range smallVariants {
		r := rows{
			rate:   t.row(v.label, "req/s", higher),
			p50:    t.row(v.label+", p50", "ms", lower),
			p99:    t.row(v.label+", p99", "ms", lower),
			server: t.row(v.label+", registry CPU", "cores", info),
			client: t.row(v.label+", client CPU", "cores", info),
			other:  t.row(v.label+", other processes' CPU", "cores", info),
		}
		r.rate.chart = v.label
		rs[v.label] = r
	}
	b.res.getAuth = rs[smallVariants[0].label].rate
	b.res.getAuth.target = 25
	defer func() {
		// Evidence that the access token was reused, not fetched per run.
		for _, s := range b.subjects {
			if s.token != nil && s.token.scheme == "bearer" {
				b.res.notes = append(b.res.notes, fmt.Sprintf("%s: the scoped token's client fetched %d access token(s) for all its authenticated small-request runs.",
					s.f.label, s.token.fetches.Load()))
			}
		}
	}()
	for rep := range cfg.reps {
		for _, v := range smallVariants {
			for _, s := range b.rotate(rep) {
				if err := alive(s); err != nil {
					return err
				}
				var wait func() (string, error)
				if rep == 0 && v == smallVariants[0] && s.f.key == keyBerth && cfg.profileDir != "" {
					wait = profile(ctx, s.auth, cfg.profileDir, "berth-manifest-get.pprof", profileSeconds(cfg.duration))
				}
				res, err := b.smallRequests(ctx, s, v)
				b.waitProfile(wait)
				r := rs[v.label]
				if err != nil {
					logf("%s on %s: %v", v.label, s.f.label, err)
					r.rate.fail(s.f.key, err)
					continue
				}
				logf("%s on %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, CPU: registry %.2f, client %.2f, others %.2f cores",
					v.label, s.f.label, res.rate(), ms(res.p50), ms(res.p99), res.serverCPU, res.clientCPU, res.otherCPU)
				b.noteErrors(v.label, s, res)
				r.rate.add(s.f.key, res.rate())
				r.p50.add(s.f.key, ms(res.p50))
				r.p99.add(s.f.key, ms(res.p99))
				r.server.add(s.f.key, res.serverCPU)
				r.client.add(s.f.key, res.clientCPU)
				r.other.add(s.f.key, res.otherCPU)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	return nil
}

// profileSeconds is how long a profile runs within a load run of d.
func profileSeconds(d time.Duration) int {
	return max(1, int(d.Seconds())-1)
}

func (b *bench) waitProfile(wait func() (string, error)) {
	if wait == nil {
		return
	}
	path, err := wait()
	if err != nil {
		logf("CPU profile: %v", err)
		return
	}
	logf("CPU profile written to %s", path)
	b.res.profiles = append(b.res.profiles, filepath.Base(path))
}

func (b *bench) noteErrors(what string, s *subject, res loadResult) {
	if res.errors > 0 {
		b.res.notes = append(b.res.notes, fmt.Sprintf("%s on %s: %d failed requests besides %d successful ones; first: %s",
			what, s.f.label, res.errors, res.requests, oneLine(res.firstErr)))
	}
}

// peakMemory records the high-water marks after workloads 1 to 3.
func (b *bench) peakMemory(context.Context) error {
	t := b.res.memory
	r := t.row("peak RSS during workloads 1–3, authenticated instance", "MiB", lower)
	r.scale, r.chart = 1<<20, "peak RSS, workloads 1-3"
	for _, s := range b.subjects {
		m, err := readMemory(s.auth.pid())
		if err != nil {
			return err
		}
		r.add(s.f.key, float64(m.hwm))
	}
	return nil
}

// openMemory records the high-water marks of the anonymous instances, which
// served the anonymous runs of workload 3 and all of workload 5.
func (b *bench) openMemory(context.Context) error {
	t := b.res.memory
	r := t.row("peak RSS, anonymous instance (workloads 3 and 5)", "MiB", lower)
	r.scale = 1 << 20
	for _, s := range b.subjects {
		m, err := readMemory(s.open.pid())
		if err != nil {
			return err
		}
		r.add(s.f.key, float64(m.hwm))
	}
	return nil
}

// loginWorkload runs workload 4.
func (b *bench) loginWorkload(ctx context.Context) error {
	cfg := b.cfg
	t := b.res.table("Logins (workload 4)", fmt.Sprintf("GET /oauth2/token?service=…&scope=repository:bench/app:pull with the scoped token's Basic credentials, "+
		"%d concurrent clients in a closed loop for %v per run. Distribution has no token server: with htpasswd every request "+
		"carries Basic credentials (see workload 3). \"One at a time\": the median of %d single logins of each kind per run, each alone "+
		"on a new connection from its own loopback address, the failures each for a name that had not failed before (so that the "+
		"brute-force limiter neither refuses nor slows them); a failure must cost the same whatever the name.", cfg.concurrency, cfg.duration, loginProbes))
	rate := t.row("access tokens issued", "req/s", higher)
	p50 := t.row("p50", "ms", lower)
	p99 := t.row("p99", "ms", lower)
	server := t.row("registry CPU", "cores", info)
	client := t.row("client CPU", "cores", info)
	other := t.row("other processes' CPU", "cores", info)
	// One login at a time, median of each kind: a failure must cost the
	// same whatever the name is.
	failUnknown := t.row("one at a time: failed login, unknown name", "ms", lower)
	failToken := t.row("one at a time: failed login, token's wrong password", "ms", lower)
	failUser := t.row("one at a time: failed login, user's wrong password", "ms", lower)
	tokenOnce := t.row("one at a time: token's right password", "ms", lower)
	// Federated logins: a JWT of a loopback OIDC issuer as the password.
	fedRate := t.row("federated logins (JWT as the password, issuer keys cached)", "req/s", higher)
	fedP50 := t.row("federated logins p50", "ms", lower)
	fedP99 := t.row("federated logins p99", "ms", lower)
	fedCPU := t.row("federated logins: registry CPU", "cores", info)
	b.res.tokens = rate
	for _, s := range b.subjects {
		if s.f.key != keyBerth {
			rate.notes[s.f.key] = "no token server"
			fedRate.notes[s.f.key] = "no OIDC federation"
		}
	}
	s := b.subjects[0]
	for rep := range cfg.reps {
		if err := alive(s); err != nil {
			return err
		}
		var wait func() (string, error)
		if rep == 0 && cfg.profileDir != "" {
			wait = profile(ctx, s.auth, cfg.profileDir, "berth-token.pprof", profileSeconds(cfg.duration))
		}
		res, err := b.logins(ctx, s)
		b.waitProfile(wait)
		if err != nil {
			logf("logins on berth: %v", err)
			rate.fail(keyBerth, err)
			continue
		}
		logf("logins on berth: %.0f req/s, p50 %.2f ms, p99 %.2f ms, CPU: registry %.2f, client %.2f, others %.2f cores",
			res.rate(), ms(res.p50), ms(res.p99), res.serverCPU, res.clientCPU, res.otherCPU)
		b.noteErrors("token issuance", s, res)
		rate.add(keyBerth, res.rate())
		p50.add(keyBerth, ms(res.p50))
		p99.add(keyBerth, ms(res.p99))
		server.add(keyBerth, res.serverCPU)
		client.add(keyBerth, res.clientCPU)
		other.add(keyBerth, res.otherCPU)
		costs, err := b.failedLogins(ctx, s, rep)
		if err != nil {
			logf("single logins on berth: %v", err)
			failUnknown.fail(keyBerth, err)
		} else {
			logf("single logins on berth, median: unknown name %.2f ms, token's wrong password %.2f ms, user's wrong password %.2f ms, token's right password %.2f ms",
				ms(costs.unknown), ms(costs.tokenWrong), ms(costs.userWrong), ms(costs.tokenRight))
			failUnknown.add(keyBerth, ms(costs.unknown))
			failToken.add(keyBerth, ms(costs.tokenWrong))
			failUser.add(keyBerth, ms(costs.userWrong))
			tokenOnce.add(keyBerth, ms(costs.tokenRight))
		}
		if fed, err := b.federatedLogins(ctx, s); err != nil {
			logf("federated logins on berth: %v", err)
			fedRate.fail(keyBerth, err)
		} else {
			logf("federated logins on berth: %.0f req/s, p50 %.2f ms, p99 %.2f ms, registry CPU %.2f cores", fed.rate(), ms(fed.p50), ms(fed.p99), fed.serverCPU)
			b.noteErrors("federated logins", s, fed)
			fedRate.add(keyBerth, fed.rate())
			fedP50.add(keyBerth, ms(fed.p50))
			fedP99.add(keyBerth, ms(fed.p99))
			fedCPU.add(keyBerth, fed.serverCPU)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// metaWorkload runs workload 5 on the anonymous instances.
func (b *bench) metaWorkload(ctx context.Context) error {
	cfg := b.cfg
	t := b.res.table("Metadata at scale (workload 5)", fmt.Sprintf("The anonymous instances, written to by berth's owner user and by anyone on "+
		"Distribution. One tiny image: its blobs are pushed once to %s, then every repository gets them by cross-repository mount "+
		"and gets the manifest, %d requests at a time (berth: an access token per repository, as docker would fetch). "+
		"A listing follows the Link headers until the last page; berth lists with an access token for registry:catalog:*.",
		scaleBase, cfg.populateConcurrency))
	popRepos := t.row(fmt.Sprintf("create %s repositories (2 mounts + 1 manifest PUT each)", thousands(cfg.repos)), "s", lower)
	popTags := t.row(fmt.Sprintf("create %s tags (1 manifest PUT each)", thousands(cfg.tags)), "s", lower)
	var ready []*subject
	for _, s := range b.subjects {
		if err := alive(s); err != nil {
			return err
		}
		logf("creating %d repositories and %d tags on %s", cfg.repos, cfg.tags, s.f.label)
		r, tg, err := b.populate(ctx, s)
		if err != nil {
			logf("populate %s: %v", s.f.label, err)
			popRepos.fail(s.f.key, err)
			continue
		}
		logf("populated %s: repositories in %.1f s, tags in %.1f s", s.f.label, r.Seconds(), tg.Seconds())
		popRepos.add(s.f.key, r.Seconds())
		popTags.add(s.f.key, tg.Seconds())
		ready = append(ready, s)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	ls := b.listings()
	times := make([]*row, len(ls))
	pages := make([]*row, len(ls))
	for i, l := range ls {
		times[i] = t.row(l.label, "s", lower)
		pages[i] = t.row(l.label+": pages", "", info)
		pages[i].count = true
		times[i].chart = strings.Replace(l.label, " repositories", " repos", 1)
	}
	b.res.catalogN, b.res.catalogDefault = times[0], times[1]
	for rep := range cfg.reps {
		for i, l := range ls {
			for _, s := range b.rotate(rep) {
				if !slices.Contains(ready, s) {
					continue
				}
				d, n, err := b.list(ctx, s, l)
				if err != nil {
					logf("%s on %s: %v", l.label, s.f.label, err)
					times[i].fail(s.f.key, err)
					continue
				}
				logf("%s on %s: %.3f s, %d pages", l.label, s.f.label, d.Seconds(), n)
				times[i].add(s.f.key, d.Seconds())
				if rep == 0 {
					pages[i].add(s.f.key, float64(n))
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	return nil
}

// report prints the results and writes the file and the chart.
func (b *bench) report() error {
	chartRef := ""
	if b.cfg.chart != "" {
		if err := writeChart(b.cfg.chart, b.res); err != nil {
			logf("chart: %v", err)
		} else {
			chartRef = b.cfg.chart
			if b.cfg.out != "" {
				if rel, err := filepath.Rel(filepath.Dir(b.cfg.out), b.cfg.chart); err == nil {
					chartRef = rel
				}
			}
		}
	}
	md := b.res.markdown(chartRef)
	fmt.Print(md)
	if b.cfg.out != "" {
		if err := writeReport(b.cfg.out, md); err != nil {
			return err
		}
		logf("report written to %s", b.cfg.out)
	}
	if chartRef != "" {
		logf("chart written to %s", b.cfg.chart)
	}
	return nil
}
