package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// containersEnv writes throw-away containers configuration into dir and
// returns an environment that makes podman and skopeo use it: credentials in
// REGISTRY_AUTH_FILE, no search registries (no short-name lookups that could
// reach the internet), and vfs storage under dir so that nothing of the
// machine's own image store is read or written.
func containersEnv(t testing.TB, dir string) []string {
	t.Helper()
	files := map[string]string{
		"registries.conf": "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
		"storage.conf": fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
			filepath.Join(dir, "root"), filepath.Join(dir, "run")),
		"containers.conf": "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n",
		"auth.json":       "{}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return append(cleanEnv("REGISTRY_AUTH_FILE=", "CONTAINERS_", "XDG_RUNTIME_DIR="),
		"REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
	)
}

// Podman runs podman with a private vfs image store and auth file.
type Podman struct {
	Root    string // --root, the image store
	RunRoot string // --runroot
	t       testing.TB
	bin     string
	env     []string
}

// NewPodman returns a podman whose storage, configuration and credentials
// live in a temporary directory removed when the test ends.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	bin := LookTool(t, "podman")
	dir := shortTempDir(t, "pdm")
	p := &Podman{
		Root:    filepath.Join(dir, "root"),
		RunRoot: filepath.Join(dir, "run"),
		t:       t,
		bin:     bin,
		env:     containersEnv(t, dir),
	}
	return p
}

func (p *Podman) argv(args []string) []string {
	return append([]string{p.bin,
		"--root", p.Root,
		"--runroot", p.RunRoot,
		"--storage-driver", "vfs",
		"--tmpdir", filepath.Join(p.RunRoot, "tmp"),
	}, args...)
}

// Run runs podman with args and returns its combined output.
func (p *Podman) Run(args ...string) (string, error) {
	return run(p.env, "", p.argv(args)...)
}

// RunInput is Run with stdin, for `login --password-stdin`.
func (p *Podman) RunInput(stdin string, args ...string) (string, error) {
	return run(p.env, stdin, p.argv(args)...)
}

// Output runs podman with args and returns its stdout only, for output that
// is parsed.
func (p *Podman) Output(args ...string) (string, error) {
	return runStdout(p.env, p.argv(args)...)
}

// MustRun is Run that fails the test on error.
func (p *Podman) MustRun(args ...string) string {
	p.t.Helper()
	out, err := p.Run(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// Login logs podman in to s when s has credentials (`podman login` is
// harmless against a registry without authentication).
func (p *Podman) Login(s *Server) {
	p.t.Helper()
	if s.Username == "" {
		return
	}
	argv := p.argv([]string{"login", "--tls-verify=false", "--username", s.Username, "--password-stdin", s.Host})
	if _, err := run(p.env, s.Password, argv...); err != nil {
		p.t.Fatal(fmt.Errorf("podman login: %w", err))
	}
}

// Skopeo runs skopeo with a private auth file and configuration.
type Skopeo struct {
	t   testing.TB
	bin string
	env []string
}

// NewSkopeo returns a skopeo whose configuration and credentials live in a
// temporary directory removed when the test ends.
func NewSkopeo(t testing.TB) *Skopeo {
	t.Helper()
	bin := LookTool(t, "skopeo")
	return &Skopeo{t: t, bin: bin, env: containersEnv(t, shortTempDir(t, "skp"))}
}

// argv adds --insecure-policy so that no signature policy file of the
// machine is needed: the tests copy only images they made themselves.
func (s *Skopeo) argv(args []string) []string {
	return append([]string{s.bin, "--insecure-policy"}, args...)
}

// Run runs skopeo with args and returns its combined output.
func (s *Skopeo) Run(args ...string) (string, error) {
	return run(s.env, "", s.argv(args)...)
}

// RunInput is Run with stdin, for `login --password-stdin`.
func (s *Skopeo) RunInput(stdin string, args ...string) (string, error) {
	return run(s.env, stdin, s.argv(args)...)
}

// Output runs skopeo with args and returns its stdout only.
func (s *Skopeo) Output(args ...string) (string, error) {
	return runStdout(s.env, s.argv(args)...)
}

// MustRun is Run that fails the test on error.
func (s *Skopeo) MustRun(args ...string) string {
	s.t.Helper()
	out, err := s.Run(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// Login logs skopeo in to srv when srv has credentials.
func (s *Skopeo) Login(srv *Server) {
	s.t.Helper()
	if srv.Username == "" {
		return
	}
	argv := s.argv([]string{"login", "--tls-verify=false", "--username", srv.Username, "--password-stdin", srv.Host})
	if _, err := run(s.env, srv.Password, argv...); err != nil {
		s.t.Fatal(fmt.Errorf("skopeo login: %w", err))
	}
}
