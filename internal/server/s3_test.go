package server_test

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/testutil"
)

// With blobs on S3, /readyz reports the bucket as the storage part: ok
// while it answers, unreachable (503) during an outage of the object store
// while the database stays ok, and ok again once it is back.
func TestReadyzReportsTheObjectStore(t *testing.T) {
	gw := testutil.StartS3(t)
	gw.SetEnv(t)
	url := gw.URL(gw.NewBucket(), "reg") + "&max-attempts=1"
	e := newEnv(t, func(c *config.Config) { c.Storage = url })
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	if st, text, r := e.readiness(); st != 200 || r.Status != "ready" || r.Checks["storage"].Status != "ok" || r.Checks["database"].Status != "ok" {
		t.Fatalf("readyz with the bucket up: %d %q %+v", st, text, r)
	}
	gw.Stop()
	st, text, r := e.readiness()
	if st != 503 || r.Status != "not ready" || r.Checks["storage"].Status != "unreachable" || r.Checks["database"].Status != "ok" {
		t.Fatalf("readyz with the object store down: %d %q %+v", st, text, r)
	}
	if strings.Contains(text, gw.SecretKey) || strings.Contains(text, gw.Endpoint) {
		t.Errorf("readyz shows the object store's details: %q", text)
	}
	gw.Start()
	if st, text, r := e.readiness(); st != 200 || r.Checks["storage"].Status != "ok" {
		t.Fatalf("readyz with the bucket back: %d %q %+v", st, text, r)
	}
}
