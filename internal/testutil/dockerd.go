package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Dockerd is a private docker daemon and a docker CLI bound to it.
type Dockerd struct {
	Host      string // unix:///.../d.sock, for docker -H
	ConfigDir string // DOCKER_CONFIG of the CLI: logins land here, not in ~/.docker
	LogPath   string

	t   testing.TB
	cli string
	env []string
}

// StartDockerd starts a dockerd of its own: vfs storage (works on any
// filesystem, needs no kernel overlay support), no iptables and no bridge
// (the tests run no containers and must not touch the host's network), its
// own data root, exec root, pidfile and socket, and an empty daemon.json so
// that /etc/docker/daemon.json does not apply. It waits until `docker info`
// works and stops the daemon when the test ends. It needs root.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	dockerd := LookTool(t, "dockerd")
	cli := LookTool(t, "docker")
	// Socket paths must stay short: the managed containerd puts its own
	// socket under the exec root too.
	dir := shortTempDir(t, "dkr")
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{
		Host:      "unix://" + filepath.Join(dir, "d.sock"),
		ConfigDir: filepath.Join(dir, "cli"),
		LogPath:   filepath.Join(dir, "dockerd.log"),
		t:         t,
		cli:       cli,
		env:       append(cleanEnv("DOCKER_"), "DOCKER_CONFIG="+filepath.Join(dir, "cli")),
	}
	if err := os.Mkdir(d.ConfigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd,
		"--storage-driver=vfs",
		"--iptables=false",
		"--ip-masq=false",
		"--bridge=none",
		"--config-file="+conf,
		"--data-root="+filepath.Join(dir, "root"),
		"--exec-root="+filepath.Join(dir, "x"),
		"--pidfile="+filepath.Join(dir, "d.pid"),
		"--host="+d.Host,
	)
	cmd.Env = cleanEnv("DOCKER_")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that the containerd it supervises can be
	// killed with it if it hangs on shutdown; SIGTERM on the test binary's
	// death lets it stop that containerd itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start dockerd: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.LogPath)
			if len(b) > logTailBytes {
				b = b[len(b)-logTailBytes:]
			}
			t.Logf("dockerd log:\n%s", b)
		}
	})

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(d.LogPath)
			t.Fatalf("dockerd exited: %v\n%s", waitErr, b)
		default:
		}
		_, err := d.Run("info")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd not ready after %v: %v", startTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// Run runs `docker -H <host> args...` and returns its combined output.
func (d *Dockerd) Run(args ...string) (string, error) {
	return run(d.env, "", append([]string{d.cli, "-H", d.Host}, args...)...)
}

// RunInput is Run with stdin, for `login --password-stdin`.
func (d *Dockerd) RunInput(stdin string, args ...string) (string, error) {
	return run(d.env, stdin, append([]string{d.cli, "-H", d.Host}, args...)...)
}

// MustRun is Run that fails the test on error.
func (d *Dockerd) MustRun(args ...string) string {
	d.t.Helper()
	out, err := d.Run(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// Login logs the CLI in to s with its credentials. It does nothing for a
// registry without credentials; against a registry that has no
// authentication `docker login` succeeds anyway, so it is harmless either way.
func (d *Dockerd) Login(s *Server) {
	d.t.Helper()
	if s.Username == "" {
		return
	}
	argv := []string{d.cli, "-H", d.Host, "login", "--username", s.Username, "--password-stdin", s.Host}
	if _, err := run(d.env, s.Password, argv...); err != nil {
		d.t.Fatal(fmt.Errorf("docker login: %w", err))
	}
}
