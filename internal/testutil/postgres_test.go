package testutil

import (
	"strconv"
	"strings"
	"testing"
)

// The cluster starts as a non-root user, takes connections on its loopback
// port, and comes back after an outage with its data.
func TestPostgresStopStart(t *testing.T) {
	p := StartPostgres(t)
	url := p.NewDatabase()
	db := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	psql := func(sql string) (string, error) {
		return p.pg("psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", p.User, "-d", db, "-c", sql)
	}
	if out, err := psql("CREATE TABLE t (v int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p.Stop()
	if _, err := psql("SELECT 1"); err == nil {
		t.Fatal("query succeeded while the cluster was stopped")
	}
	p.Start()
	out, err := psql("SELECT v FROM t")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("after restart: %q, %v", out, err)
	}
}
