package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// E2E reports whether end-to-end tests were asked for (BERTH_E2E=1). The
// project's test script sets it; without it, tests that need real clients
// skip.
func E2E() bool { return os.Getenv("BERTH_E2E") == "1" }

// LookTool returns the path of the first of names found on PATH or in the
// sbin directories (dockerd lives in /usr/sbin, which a non-login PATH may
// lack). When none is found it skips the test, or fails it under BERTH_E2E=1
// so that a broken machine cannot pass by skipping.
func LookTool(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			p := dir + "/" + n
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	msg := fmt.Sprintf("%s not found; install it (scripts/test does) to run this test", strings.Join(names, " or "))
	if E2E() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// cmdTimeout bounds one client command (a push, a pull), so that a hung
// client fails its test instead of eating the whole `go test -timeout`.
const cmdTimeout = 5 * time.Minute

// run runs argv with env and optional stdin, and returns its combined output.
// The error includes the command line and the output, ready for t.Fatal.
func run(env []string, stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out.String())
	}
	return out.String(), nil
}

// runStdout is run with stdout and stderr kept apart, for commands whose
// stdout is parsed (JSON from inspect).
func runStdout(env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// shortTempDir makes a temporary directory with a short path, for unix
// socket paths that must stay under the kernel's 108-byte limit whatever the
// test's name is. It is removed when the test ends.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
