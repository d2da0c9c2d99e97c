package testutil

import (
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

// Kinds of registry a Server can run.
const (
	KindBerth        = "berth"
	KindDistribution = "distribution"
)

// OwnerUsername is the name of the initial owner user that berth creates on
// first start; BERTH_OWNER_PASSWORD sets its password.
const OwnerUsername = "owner"

// Time limits for process start and stop. They are generous on purpose: they
// only bound how long a broken server can hang a test, no test asserts on them.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	logTailBytes = 64 << 10
)

// Server is a registry process started for one test. Its fields are fixed for
// the life of the Server: Restart reuses the same address and data directory.
type Server struct {
	Kind     string // KindBerth or KindDistribution
	URL      string // base URL, http://127.0.0.1:PORT
	Host     string // 127.0.0.1:PORT, the registry part of image references
	DataDir  string // data directory handed to the server
	Username string // empty when the registry has no authentication
	Password string
	LogPath  string // the server's stdout and stderr, across restarts

	t        testing.TB
	workDir  string
	argv     func() []string // command line for the current Host and DataDir
	env      []string
	health   string // path polled until it answers 200
	ready    string // path polled after health until it is no longer 503; empty to skip
	graceful bool   // whether SIGTERM must end the process with exit status 0

	mu   sync.Mutex
	proc *process // nil when stopped
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of Wait, valid once done is closed
}

// Option configures StartServer and StartDistribution.
type Option func(*serverConfig)

type serverConfig struct {
	dataDir  string
	name     string
	password string
	env      []string
	args     []string
}

// WithDataDir makes the server use dir instead of a fresh temporary directory,
// for example to start a second server on data left by a first one. The
// caller owns dir.
func WithDataDir(dir string) Option { return func(c *serverConfig) { c.dataDir = dir } }

// WithName sets the registry name (berth serve --name).
func WithName(name string) Option { return func(c *serverConfig) { c.name = name } }

// WithPassword sets the owner password instead of a random one. Needed when
// reusing a data directory, since berth only applies BERTH_OWNER_PASSWORD on
// first start.
func WithPassword(pw string) Option { return func(c *serverConfig) { c.password = pw } }

// WithEnv adds KEY=VALUE entries to the server's environment.
func WithEnv(kv ...string) Option { return func(c *serverConfig) { c.env = append(c.env, kv...) } }

// WithArgs appends extra command-line arguments to `berth serve`.
func WithArgs(args ...string) Option {
	return func(c *serverConfig) { c.args = append(c.args, args...) }
}

// StartServer builds ./cmd/berth (once per test binary), starts `berth serve`
// on a free loopback port with a temporary data directory, and waits until
// GET /healthz answers 200 and GET /readyz no longer answers 503. The server
// is stopped gracefully when the test ends, and its log is shown if the test
// failed.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := applyOptions(opts)
	bin := BerthBinary(t)
	s := newServer(t, KindBerth, cfg)
	s.Username = OwnerUsername
	s.Password = cfg.password
	if s.Password == "" {
		s.Password = RandomString(16)
	}
	s.env = append(s.env, "BERTH_OWNER_PASSWORD="+s.Password)
	s.env = append(s.env, cfg.env...)
	s.health, s.ready, s.graceful = "/healthz", "/readyz", true
	s.argv = func() []string {
		a := []string{bin, "serve", "--addr", s.Host, "--data", s.DataDir}
		if cfg.name != "" {
			a = append(a, "--name", cfg.name)
		}
		return append(a, cfg.args...)
	}
	s.start()
	return s
}

func applyOptions(opts []Option) serverConfig {
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func newServer(t testing.TB, kind string, cfg serverConfig) *Server {
	t.Helper()
	work := t.TempDir()
	s := &Server{
		Kind:    kind,
		DataDir: cfg.dataDir,
		LogPath: filepath.Join(work, kind+".log"),
		t:       t,
		workDir: work,
		env:     cleanEnv("BERTH_"),
	}
	if s.DataDir == "" {
		s.DataDir = filepath.Join(work, "data")
		if err := os.Mkdir(s.DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.cleanup)
	return s
}

// start picks a port and launches the server. A port picked by listening on
// :0 and closing the listener can be taken by someone else before the server
// binds it, so a start that fails with "address already in use" is retried on
// another port.
func (s *Server) start() {
	s.t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var port int
		port, err = freePort()
		if err != nil {
			s.t.Fatalf("pick a free port: %v", err)
		}
		s.Host = "127.0.0.1:" + strconv.Itoa(port)
		s.URL = "http://" + s.Host
		err = s.launch()
		if err == nil || !strings.Contains(s.logTail(), "address already in use") {
			break
		}
	}
	if err != nil {
		s.t.Fatalf("start %s: %v\n%s", s.Kind, err, s.logTail())
	}
}

// launch starts the process on the current Host and waits until it is ready.
func (s *Server) launch() error {
	argv := s.argv()
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.workDir
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by `go test -timeout` must not leave
	// servers behind holding ports and temp dirs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	if err := s.waitReady(p); err != nil {
		s.terminate(p, syscall.SIGKILL)
		s.mu.Lock()
		s.proc = nil
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *Server) waitReady(p *process) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	// poll GETs path until accept takes the status code, the process exits,
	// or the deadline passes.
	poll := func(path string, accept func(code int) bool) (int, error) {
		for {
			select {
			case <-p.done:
				return 0, fmt.Errorf("process exited before %s was ready: %v", path, p.err)
			default:
			}
			resp, err := client.Get(s.URL + path)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if accept(resp.StatusCode) {
					return resp.StatusCode, nil
				}
			}
			if time.Now().After(deadline) {
				if err != nil {
					return 0, fmt.Errorf("GET %s not ready after %v: %v", path, startTimeout, err)
				}
				return 0, fmt.Errorf("GET %s answered %d for %v", path, resp.StatusCode, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := poll(s.health, func(code int) bool { return code == http.StatusOK }); err != nil {
		return err
	}
	if s.ready == "" {
		return nil
	}
	code, err := poll(s.ready, func(code int) bool { return code != http.StatusServiceUnavailable })
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s answered %d, want 200 (or 503 while starting)", s.ready, code)
	}
	return nil
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// take detaches the current process from s, so that exactly one caller stops it.
func (s *Server) take() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// Stop sends SIGTERM and waits for the process to exit. For berth, anything
// but a clean exit within the stop timeout fails the test: graceful shutdown
// is part of the server's contract.
func (s *Server) Stop() {
	s.t.Helper()
	p := s.take()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		s.t.Errorf("%s had exited before Stop: %v", s.Kind, p.err)
		return
	default:
	}
	if !s.terminate(p, syscall.SIGTERM) {
		s.t.Errorf("%s did not exit within %v of SIGTERM; killed it", s.Kind, stopTimeout)
		return
	}
	if s.graceful && p.err != nil {
		s.t.Errorf("%s exited with %v after SIGTERM, want exit status 0", s.Kind, p.err)
	}
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// chance to flush or clean up.
func (s *Server) Kill() {
	s.t.Helper()
	if p := s.take(); p != nil {
		s.terminate(p, syscall.SIGKILL)
	}
}

// Restart stops the server if it runs (gracefully) and starts it again on the
// same address and data directory, waiting until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.t.Fatalf("restart %s: %v\n%s", s.Kind, err, s.logTail())
	}
}

// terminate signals p and waits for it to exit; after stopTimeout it kills the
// whole process group. It reports whether p exited within the timeout.
func (s *Server) terminate(p *process, sig syscall.Signal) bool {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return false
	}
}

func (s *Server) cleanup() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
			// Nobody asked it to exit: a crash that the test may not have
			// noticed by itself.
			s.take()
			s.t.Errorf("%s exited unexpectedly: %v", s.Kind, p.err)
		default:
			s.Stop()
		}
	}
	if s.t.Failed() {
		s.t.Logf("%s log (%s):\n%s", s.Kind, s.LogPath, s.logTail())
	}
}

// Log returns everything the server wrote so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.LogPath)
	if len(b) > logTailBytes {
		b = append([]byte("...\n"), b[len(b)-logTailBytes:]...)
	}
	return string(b)
}

// NeedsAuth reports whether GET /v2/ without credentials answers 401.
func (s *Server) NeedsAuth(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v2/", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusUnauthorized, nil
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

// RandomString returns n random bytes, hex encoded.
func RandomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanEnv returns the test's environment without the variables that start
// with one of prefixes, so that settings of the developer's shell (a
// BERTH_ADDR, a DOCKER_HOST) cannot leak into the processes a test starts.
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

// The berth binary is built once per test binary and shared by every test.
var berthBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BerthBinary builds ./cmd/berth into a temporary directory the first time it
// is called and returns the path of the binary. Call Cleanup (for example
// from TestMain) to remove it.
func BerthBinary(t testing.TB) string {
	t.Helper()
	berthBuild.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			berthBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			berthBuild.err = err
			return
		}
		berthBuild.dir = dir
		bin := filepath.Join(dir, "berth")
		// No VCS stamping: it fails in a checkout without commits and
		// tests do not need it.
		cmd := exec.Command(goTool(), "build", "-buildvcs=false", "-o", bin, "./cmd/berth")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			berthBuild.err = fmt.Errorf("go build ./cmd/berth: %v\n%s", err, out.String())
			return
		}
		berthBuild.bin = bin
	})
	if berthBuild.err != nil {
		t.Fatal(berthBuild.err)
	}
	return berthBuild.bin
}

// Cleanup removes what the package created for the whole test binary (the
// built berth binary). Tests that start servers should call it from TestMain
// after m.Run.
func Cleanup() {
	if berthBuild.dir != "" {
		_ = os.RemoveAll(berthBuild.dir)
	}
}

// ModuleRoot finds the root of this module by walking up from the working
// directory (a package directory under `go test`) to the first go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goTool returns the go command: the one on PATH, else the one in GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
