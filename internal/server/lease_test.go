package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGCUnderLease: garbage collection runs under a lease in the database,
// so while another node holds it a collection is refused (409), and one
// that ran leaves the lease free.
func TestGCUnderLease(t *testing.T) {
	e := newEnv(t)
	tok := e.accessToken("owner", ownerPassword)
	leases := e.srv.Metadata().Database().Leases(nil)
	ctx := context.Background()
	if ok, err := leases.Acquire(ctx, "gc", "another-node", time.Hour); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	st, body, _ := e.do("POST", "/api/v1/gc", bearer(tok), strings.NewReader(`{"dryRun":true}`))
	if st != http.StatusConflict || !strings.Contains(body, "another node") {
		t.Errorf("GC while another node holds the lease: %d %s, want 409", st, body)
	}
	if err := leases.Release(ctx, "gc", "another-node"); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := e.do("POST", "/api/v1/gc", bearer(tok), strings.NewReader(`{"dryRun":true}`)); st != http.StatusOK {
		t.Fatalf("GC with the lease free: %d %s", st, body)
	}
	if h, err := leases.Holder(ctx, "gc"); err != nil || h != "" {
		t.Errorf("after a collection the lease is held by %q (%v), want free", h, err)
	}
}
