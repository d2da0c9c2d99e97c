package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// versitygwVersion is the S3 server of the scale-out workloads, the one the
// test suite runs.
const versitygwVersion = "v1.8.0"

// pgServer is a private PostgreSQL cluster of the run: its own data
// directory and loopback port, trust authentication (only this machine's
// loopback reaches it), durability settings at PostgreSQL's defaults.
type pgServer struct {
	bin     string
	dataDir string
	port    int
	cred    *syscall.Credential // PostgreSQL refuses to run as root
	dbs     int
}

// startPostgres initialises and starts a cluster in a directory of its
// own under the system's temporary directory: the unprivileged account it
// may run as must reach it, and its socket path must be short.
func startPostgres(ctx context.Context) (*pgServer, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-pg-")
	if err != nil {
		return nil, err
	}
	p := &pgServer{bin: bin, dataDir: filepath.Join(dir, "pgdata")}
	if os.Geteuid() == 0 {
		if p.cred, err = unprivileged(); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if p.port, err = freePort(); err != nil {
		return nil, err
	}
	if out, err := p.run(ctx, "initdb", "-D", p.dataDir, "-U", "berth", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 200\nshared_buffers = 128MB\n", p.port, dir)
	f, err := os.OpenFile(filepath.Join(p.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir, "-l", filepath.Join(dir, "postgres.log"), "-w", "-t", "60", "start"); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return p, nil
}

// postgresBin finds the directory of initdb and pg_ctl, which Debian keeps
// out of PATH; the newest major version wins.
func postgresBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's initdb and pg_ctl not found (Debian package postgresql)")
}

// unprivileged is the account to run PostgreSQL as when the run is root's.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root, and no postgres or nobody account to run PostgreSQL as")
}

func (p *pgServer) run(ctx context.Context, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, prog), args...)
	cmd.Env = append(cleanEnv("PG"), "LC_ALL=C")
	cmd.Dir = filepath.Dir(p.dataDir)
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// newDatabase creates an empty database and returns its URL.
func (p *pgServer) newDatabase(ctx context.Context) (string, error) {
	p.dbs++
	name := fmt.Sprintf("bench%d", p.dbs)
	if out, err := p.run(ctx, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "berth", name); err != nil {
		return "", fmt.Errorf("createdb: %v\n%s", err, out)
	}
	return fmt.Sprintf("postgres://berth@127.0.0.1:%d/%s?sslmode=disable", p.port, name), nil
}

// stop stops the cluster and removes its directory.
func (p *pgServer) stop() {
	_, _ = p.run(context.Background(), "pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
	_ = os.RemoveAll(filepath.Dir(p.dataDir))
}

// s3Server is Versity's S3 gateway over a directory of the run, on a
// loopback port, with keys made for the run.
type s3Server struct {
	endpoint, region string
	access, secret   string
	cmd              *exec.Cmd
	done             chan struct{}
	client           *s3.Client
}

// startS3 starts the gateway, installing it with go install into the user
// cache directory when it is missing and install is true.
func startS3(ctx context.Context, dir string, install bool) (*s3Server, error) {
	bin, err := versitygw(ctx, install)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "s3")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	s := &s3Server{endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), region: "us-east-1",
		access: "bench" + randomHex(6), secret: randomHex(20), done: make(chan struct{})}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "--access", s.access, "--secret", s.secret, "--port", "127.0.0.1:"+strconv.Itoa(port),
		"--region", s.region, "--keep-alive", "--quiet", "posix", root)
	s.cmd.Env = cleanEnv("ROOT_", "VGW_", "AWS_")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.endpoint, "http://"), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-s.done:
			return nil, errors.New("versitygw exited at start")
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("versitygw did not listen within %v", startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.client = s3.New(s3.Options{Region: s.region, BaseEndpoint: aws.String(s.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.access, s.secret, "")})
	return s, nil
}

// versitygw finds the gateway on PATH or in GOBIN/GOPATH's bin, else
// installs it.
func versitygw(ctx context.Context, install bool) (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.CommandContext(ctx, "go", "env", v).Output()
		dir := strings.TrimSpace(string(out))
		if err != nil || dir == "" {
			continue
		}
		if v == "GOPATH" {
			dir = filepath.Join(filepath.SplitList(dir)[0], "bin")
		}
		if p := filepath.Join(dir, "versitygw"); isExecutable(p) {
			return p, nil
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "berth-bench", "versitygw-"+versitygwVersion)
	bin := filepath.Join(dir, "versitygw")
	if isExecutable(bin) {
		return bin, nil
	}
	if !install {
		return "", errors.New("versitygw not found and -install=false")
	}
	logf("installing versitygw %s into %s", versitygwVersion, dir)
	env := append(cleanEnv("GOBIN=", "GOFLAGS="), "GOBIN="+dir)
	if out, err := runCmd(ctx, os.TempDir(), env, "go", "install", "github.com/versity/versitygw/cmd/versitygw@"+versitygwVersion); err != nil {
		return "", fmt.Errorf("go install versitygw: %v\n%s", err, out)
	}
	return bin, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func (s *s3Server) newBucket(ctx context.Context, name string) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

// berthURL is berth's --storage for bucket/prefix on this server.
func (s *s3Server) berthURL(bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + s.endpoint + "&region=" + s.region + "&path-style=true"
}

// keys is the environment that gives berth the server's keys.
func (s *s3Server) keys() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.access, "AWS_SECRET_ACCESS_KEY=" + s.secret, "AWS_REGION=" + s.region}
}

// distributionStorage is Distribution's storage section for bucket on this
// server: its S3 driver, path-style, plain HTTP, and blobs served through
// the registry (by default it redirects GETs to the object store, which
// would measure the S3 server instead).
func (s *s3Server) distributionStorage(bucket string) string {
	return fmt.Sprintf(`  s3:
    accesskey: %q
    secretkey: %q
    region: %q
    regionendpoint: %q
    forcepathstyle: true
    bucket: %q
    rootdirectory: /dist
    secure: false
    v4auth: true
  redirect:
    disable: true`, s.access, s.secret, s.region, s.endpoint, bucket)
}

func (s *s3Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}
