package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The reference registries.
const (
	distributionModule  = "github.com/distribution/distribution/v3/cmd/registry"
	distributionVersion = "v3.1.2"
	debianPackage       = "docker-registry"
	debianVersion       = "2.8.2"
)

// installTimeout bounds one build or package installation.
const installTimeout = 10 * time.Minute

// buildBerth builds ./cmd/berth of the module at root into dir.
func buildBerth(ctx context.Context, root, dir string) (*flavour, error) {
	bin := filepath.Join(dir, "berth")
	// No VCS stamping: it fails in a checkout without commits.
	if out, err := runCmd(ctx, root, nil, "go", "build", "-buildvcs=false", "-o", bin, "./cmd/berth"); err != nil {
		return nil, fmt.Errorf("go build ./cmd/berth: %v\n%s", err, out)
	}
	return &flavour{key: keyBerth, label: "berth", bin: bin, version: "this checkout"}, nil
}

// distributionV3 returns Distribution v3.1.2: the binary given with
// -distribution, else the one in the benchmark's cache directory, which it
// installs there with `go install` when missing and install is true.
func distributionV3(ctx context.Context, given string, install bool, logf func(string, ...any)) (*flavour, error) {
	f := &flavour{key: keyV3, label: distributionVersion}
	if given != "" {
		f.bin = given
	} else {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(cache, "berth-bench", "distribution-"+distributionVersion)
		f.bin = filepath.Join(dir, "registry")
		if _, err := os.Stat(f.bin); err != nil {
			if !install {
				return nil, fmt.Errorf("%s not found and -install=false", f.bin)
			}
			logf("installing Distribution %s into %s (takes a few minutes the first time)", distributionVersion, dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			// Run outside any module so that this module's go.mod is not involved.
			env := append(cleanEnv("GOBIN=", "GOFLAGS="), "GOBIN="+dir)
			if out, err := runCmd(ctx, os.TempDir(), env, "go", "install", distributionModule+"@"+distributionVersion); err != nil {
				return nil, fmt.Errorf("go install %s@%s: %v\n%s", distributionModule, distributionVersion, err, out)
			}
		}
	}
	v, err := versionOf(ctx, f.bin)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(v, distributionVersion) {
		return nil, fmt.Errorf("%s is %q, want %s", f.bin, v, distributionVersion)
	}
	f.version = v
	return f, nil
}

// distributionDebian returns Debian's docker-registry (Distribution 2.8.2):
// the binary given with -docker-registry, else the one on PATH or in
// /usr/bin, which it installs with apt-get when missing and install is true.
func distributionDebian(ctx context.Context, given string, install bool, logf func(string, ...any)) (*flavour, error) {
	f := &flavour{key: keyV2, label: debianVersion, bin: given}
	if f.bin == "" {
		f.bin = lookDebian()
	}
	if f.bin == "" {
		if !install {
			return nil, fmt.Errorf("%s not found and -install=false", debianPackage)
		}
		logf("installing the Debian package %s", debianPackage)
		argv := []string{"apt-get", "install", "-y", "--no-install-recommends", debianPackage}
		if os.Geteuid() != 0 {
			argv = append([]string{"sudo", "-n"}, argv...)
		}
		env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := runCmd(ctx, "", env, argv...); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		if f.bin = lookDebian(); f.bin == "" {
			return nil, fmt.Errorf("%s installed, but no docker-registry binary found", debianPackage)
		}
	}
	v, err := versionOf(ctx, f.bin)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(v, debianVersion) {
		// Another release still makes a useful column; the report says which.
		f.label = strings.TrimPrefix(strings.Fields(v)[len(strings.Fields(v))-1], "v")
	}
	f.version = v
	return f, nil
}

func lookDebian() string {
	if p, err := exec.LookPath("docker-registry"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/docker-registry"); err == nil {
		return "/usr/bin/docker-registry"
	}
	return ""
}

// versionOf runs `bin --version` and returns its first line, without the
// binary's path.
func versionOf(ctx context.Context, bin string) (string, error) {
	out, err := runCmd(ctx, "", nil, bin, "--version")
	if err != nil {
		return "", fmt.Errorf("%s --version: %v\n%s", bin, err, out)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	fields := strings.Fields(line)
	if len(fields) > 1 && strings.HasPrefix(fields[0], "/") {
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return "", fmt.Errorf("%s --version printed nothing", bin)
	}
	return strings.Join(fields, " "), nil
}

// runCmd runs argv in dir (the current directory if empty) with env (this
// process's if nil) and returns its combined output.
func runCmd(ctx context.Context, dir string, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// moduleRoot finds the berth module by walking up from the working
// directory to the go.mod that declares it.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/berth-registry/berth\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the benchmark inside the berth module (go run ./bench)")
		}
		dir = parent
	}
}
