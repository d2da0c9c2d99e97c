package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postgres is a private PostgreSQL cluster: its own data directory, socket
// directory and loopback port, owned by a non-root user because PostgreSQL
// refuses to run as root.
type Postgres struct {
	Port int
	// User is the cluster's superuser; connections from loopback need no
	// password (trust), which is safe because nothing but this test can
	// reach a loopback port of a temporary cluster.
	User string

	t       testing.TB
	bin     string
	dataDir string
	logPath string
	cred    *syscall.Credential

	mu      sync.Mutex
	running bool
	dbs     int
}

// postgresBin finds the directory of initdb and pg_ctl: Debian keeps them
// out of PATH under /usr/lib/postgresql/<major>/bin. The newest major wins.
func postgresBin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// A PATH entry may be a symbolic link into the real bin directory,
		// which also holds createdb and psql.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return majorOf(dirs[i]) > majorOf(dirs[j])
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	msg := "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package (scripts/test does) to run this test"
	if E2E() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// runAs returns the credential to run PostgreSQL under: the current user
// unless that is root, else the "postgres" account if the package made one,
// else nobody.
func runAs(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	t.Fatal("running as root and neither a postgres nor a nobody account exists to run PostgreSQL as")
	return nil
}

// StartPostgres initialises and starts a cluster for this test and stops it
// when the test ends. Durability settings stay at PostgreSQL's defaults
// (fsync on) so that crash tests of berth mean what they say.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := postgresBin(t)
	cred := runAs(t)
	dir, err := os.MkdirTemp(shortBase(), "pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{
		Port:    port,
		User:    "berth",
		t:       t,
		bin:     bin,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		cred:    cred,
	}
	if out, err := p.pg("initdb", "-D", p.dataDir, "-U", p.User, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"max_connections = 200",
		"shared_buffers = 64MB",
		// Tests start many nodes and pools; keep idle ones from piling up.
		"idle_session_timeout = 0",
		"",
	}, "\n")
	f, err := os.OpenFile(filepath.Join(p.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(func() {
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if running {
			p.Stop()
		}
	})
	return p
}

// pg runs one of the cluster's programs as the cluster's owner.
func (p *Postgres) pg(prog string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(p.bin, prog), args...)
	cmd.Env = append(cleanEnv("PG"), "LC_ALL=C")
	cmd.Dir = filepath.Dir(p.dataDir)
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Start starts the cluster (again) and waits until it accepts connections.
func (p *Postgres) Start() {
	p.t.Helper()
	out, err := p.pg("pg_ctl", "-D", p.dataDir, "-l", p.logPath, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(p.logPath)
		p.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()
}

// Stop stops the cluster at once (fast shutdown: open sessions are ended),
// as an outage looks to its clients.
func (p *Postgres) Stop() {
	p.t.Helper()
	out, err := p.pg("pg_ctl", "-D", p.dataDir, "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		p.t.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	p.mu.Lock()
	p.running = false
	p.mu.Unlock()
}

// URL is a connection string for database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", p.User, p.Port, db)
}

// NewDatabase creates an empty database and returns its connection string,
// so that tests sharing one cluster do not see each other's schema.
func (p *Postgres) NewDatabase() string {
	p.t.Helper()
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("berth_%d_%d", time.Now().UnixNano()%1e6, p.dbs)
	p.mu.Unlock()
	out, err := p.pg("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", p.User, name)
	if err != nil {
		p.t.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return p.URL(name)
}

// Log returns the server log, for failure messages.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// shortBase is a base directory for temporary directories whose paths end up
// in unix socket names.
func shortBase() string {
	if base := os.TempDir(); len(base) <= 40 {
		return base
	}
	return "/tmp"
}
