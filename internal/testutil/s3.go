package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWVersion is the S3 gateway the tests run; scripts/test installs it
// with go install.
const VersityGWVersion = "v1.8.0"

// S3Server is a private S3-compatible server: Versity's gateway over a
// temporary directory (its posix backend), on a loopback port, with a root
// account whose keys are made for this test.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	Region    string
	AccessKey string
	SecretKey string
	Dir       string // the gateway's root: one directory per bucket

	t       testing.TB
	bin     string
	logPath string
	port    int

	mu  sync.Mutex
	cmd *exec.Cmd
	n   int
}

// StartS3 starts an S3 gateway for this test and stops it when the test ends.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	bin := LookGoTool(t, "versitygw", "github.com/versity/versitygw/cmd/versitygw@"+VersityGWVersion)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &S3Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Region:    "us-east-1",
		AccessKey: "berth" + randomHex(t, 6),
		SecretKey: randomHex(t, 20),
		Dir:       filepath.Join(dir, "root"),
		t:         t,
		bin:       bin,
		logPath:   filepath.Join(dir, "versitygw.log"),
		port:      port,
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the gateway (again, after Stop) and waits for its port.
func (s *S3Server) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", "127.0.0.1:"+strconv.Itoa(s.port),
		"--region", s.Region,
		"--keep-alive", "--quiet",
		"posix", s.Dir)
	cmd.Env = cleanEnv("ROOT_", "VGW_", "AWS_")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		s.t.Fatalf("start versitygw: %v", err)
	}
	_ = logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-exited:
			s.t.Fatalf("versitygw exited at start:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			s.t.Fatalf("versitygw did not listen on %s within 30s:\n%s", addr, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
}

// Stop kills the gateway, as an outage of the object store looks to berth.
func (s *S3Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_, _ = cmd.Process.Wait()
}

// Log returns the gateway's output, for failure messages.
func (s *S3Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Client is an S3 client of the gateway's root account.
func (s *S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// NewBucket creates an empty bucket with a name unique to this server.
func (s *S3Server) NewBucket() string {
	s.t.Helper()
	s.mu.Lock()
	s.n++
	name := fmt.Sprintf("berth-test-%d", s.n)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		s.t.Fatalf("create bucket %s: %v\n%s", name, err, s.Log())
	}
	return name
}

// URL is berth's --storage value for bucket (and an optional key prefix)
// on this server; the keys go in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (Env).
func (s *S3Server) URL(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u + "?endpoint=" + s.Endpoint + "&region=" + s.Region + "&path-style=true"
}

// SetEnv gives the test's own process the server's keys (the AWS SDK's
// default chain reads them from the environment), until the test ends.
func (s *S3Server) SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Env is the environment that gives a berth process this server's keys.
func (s *S3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=" + s.Region}
}

// LookGoTool finds a Go tool installed with go install: on PATH, else in
// GOBIN or GOPATH/bin, which a non-login PATH often lacks. Missing, it skips
// the test (fails it under BERTH_E2E=1) and says how to install it.
func LookGoTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			continue
		}
		dir := strings.TrimSpace(string(out))
		if dir == "" {
			continue
		}
		if v == "GOPATH" {
			dir = filepath.Join(filepath.SplitList(dir)[0], "bin")
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found; install it with `go install %s` (scripts/test does) to run this test", name, pkg)
	if E2E() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
