package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// A flavour is one registry implementation under test.
type flavour struct {
	key     string // name on the command line: berth, v3 or v2
	label   string // column heading in the report
	bin     string // path of the executable
	version string // what the executable says it is
}

// Flavour keys, in the order of the report's columns.
const (
	keyBerth = "berth"
	keyV3    = "v3"
	keyV2    = "v2"
)

// Instance roles. Every flavour runs twice: once with authentication
// (berth: its own tokens; Distribution: htpasswd) and once without (berth:
// --anonymous-pull, which also lets the owner push; Distribution: no auth).
const (
	roleAuth = "auth"
	roleOpen = "open"
)

// Time limits for starting and stopping a registry process.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// An instance is one running registry process on a loopback port.
type instance struct {
	flavour *flavour
	role    string
	url     string // http://127.0.0.1:PORT
	host    string // 127.0.0.1:PORT
	user    string // credentials with every right; empty for an open Distribution
	pass    string
	dataDir string
	logPath string
	// debugAddr is berth's --debug-addr (pprof), when profiling was asked for.
	debugAddr string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// instanceOptions are the settings of one instance beyond its flavour and role.
type instanceOptions struct {
	workDir     string // parent of the instance's data, config and log
	requestLogs bool   // keep each registry's default per-request logging
	bcryptCost  int    // htpasswd cost for Distribution
	profile     bool   // berth: serve pprof on a loopback debug address

	// The scale-out workloads' settings: berth's extra arguments and
	// environment (--database, --storage and the S3 keys), the owner
	// password that nodes sharing one database must agree on (random when
	// empty), and Distribution's storage section instead of the
	// filesystem.
	args     []string
	env      []string
	password string
	storage  string
}

// startInstance starts f in role on a free loopback port and waits until it
// answers /v2/. A port picked by listening on :0 can be taken by someone else
// before the registry binds it, so a failed start is retried on another port.
func startInstance(ctx context.Context, f *flavour, role string, opt instanceOptions) (*instance, error) {
	dir, err := os.MkdirTemp(opt.workDir, f.key+"-"+role+"-")
	if err != nil {
		return nil, err
	}
	in := &instance{flavour: f, role: role, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "registry.log")}
	if err := os.Mkdir(in.dataDir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		in.host = "127.0.0.1:" + strconv.Itoa(port)
		in.url = "http://" + in.host
		argv, env, err := in.commandLine(dir, opt)
		if err != nil {
			return nil, err
		}
		if lastErr = in.launch(ctx, argv, env); lastErr == nil {
			return in, nil
		}
		if !strings.Contains(in.logTail(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start %s (%s): %w\n%s", f.label, role, lastErr, in.logTail())
}

// commandLine returns the argv and environment of the instance, writing
// whatever configuration files it needs into dir.
func (in *instance) commandLine(dir string, opt instanceOptions) (argv, env []string, err error) {
	// The caller's BERTH_* and REGISTRY_* variables (Distribution reads
	// REGISTRY_* as configuration overrides) must not change what is measured.
	env = cleanEnv("BERTH_", "REGISTRY_", "OTEL_")
	if in.flavour.key == keyBerth {
		in.user, in.pass = "owner", opt.password
		if in.pass == "" {
			in.pass = randomHex(16)
		}
		env = append(append(env, opt.env...), "BERTH_OWNER_PASSWORD="+in.pass)
		argv = []string{in.flavour.bin, "serve", "--addr", in.host, "--data", in.dataDir}
		// The federated logins of workload 4 trust an issuer on loopback.
		argv = append(argv, "--federation-allow-http-loopback")
		argv = append(argv, opt.args...)
		if !opt.requestLogs {
			argv = append(argv, "--log-level", "warn")
		}
		if in.role == roleOpen {
			argv = append(argv, "--anonymous-pull")
		}
		if opt.profile {
			port, err := freePort()
			if err != nil {
				return nil, nil, err
			}
			in.debugAddr = "127.0.0.1:" + strconv.Itoa(port)
			argv = append(argv, "--debug-addr", in.debugAddr)
		}
		return argv, env, nil
	}

	// Distribution v3 exports traces to localhost:4318 unless told not to;
	// its official container image sets this.
	env = append(env, "OTEL_TRACES_EXPORTER=none")
	auth := ""
	if in.role == roleAuth {
		in.user, in.pass = "bench", randomHex(16)
		hash, err := bcrypt.GenerateFromPassword([]byte(in.pass), opt.bcryptCost)
		if err != nil {
			return nil, nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(in.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: bench\n    path: %q\n", htpasswd)
	}
	storage := opt.storage
	if storage == "" {
		storage = fmt.Sprintf("  filesystem:\n    rootdirectory: %q", in.dataDir)
	}
	level := "warn"
	if opt.requestLogs {
		level = "info"
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: %s
  accesslog:
    disabled: %t
storage:
%s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
%s`, level, !opt.requestLogs, storage, in.host, auth)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, nil, err
	}
	return []string{in.flavour.bin, "serve", confPath}, env, nil
}

// launch starts the process and waits until GET /v2/ answers 200 or 401.
func (in *instance) launch(ctx context.Context, argv, env []string) error {
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = filepath.Dir(in.dataDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A benchmark killed hard must not leave registries behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	in.cmd, in.done = cmd, done

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("the process exited while starting")
		case <-ctx.Done():
			in.stop()
			return ctx.Err()
		default:
		}
		resp, err := client.Get(in.url + "/v2/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.stop()
	return fmt.Errorf("GET /v2/ did not answer within %v", startTimeout)
}

// stop ends the process: SIGTERM, then SIGKILL to its process group if it
// has not exited within stopTimeout.
func (in *instance) stop() {
	if in.cmd == nil {
		return
	}
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.done
	}
}

// running reports whether the process is alive.
func (in *instance) running() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

func (in *instance) pid() int { return in.cmd.Process.Pid }

func (in *instance) name() string { return in.flavour.label + " (" + in.role + ")" }

func (in *instance) logTail() string {
	b, _ := os.ReadFile(in.logPath)
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// memory is what /proc/PID/status says about a process's resident memory.
type memory struct {
	rss, hwm int64 // VmRSS and VmHWM (peak RSS), bytes
}

// readMemory reads VmRSS and VmHWM of pid.
func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s in /proc/%d/status: %v", key, pid, err)
		}
		*dst = kb << 10
	}
	return m, sc.Err()
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// processCPU returns the user+system CPU time pid has used so far.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// machineCPU returns the CPU time all processes of the machine have used
// so far (user, nice, system, irq, softirq and steal time of /proc/stat).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal: skip idle and iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// selfCPU returns the user+system CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv returns this process's environment without the variables that
// start with one of prefixes.
func cleanEnv(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
