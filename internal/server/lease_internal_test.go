package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
)

// TestJobStopsWhenItsLeaseIsLost: a job whose lease another node took over
// (it expired while this node stalled) has its context cancelled at the
// next renewal, and the lease stays the other node's.
func TestJobStopsWhenItsLeaseIsLost(t *testing.T) {
	ctx := context.Background()
	md, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	s := &Server{meta: md, log: slog.New(slog.DiscardHandler), holder: "this-node", leaseRenewal: 10 * time.Millisecond}
	err = s.underLease(ctx, "gc", func(ctx context.Context) error {
		if _, err := md.DB().ExecContext(ctx, `UPDATE leases SET holder = 'other-node' WHERE name = 'gc'`); err != nil {
			return err
		}
		<-ctx.Done() // cancelled by the failed renewal, or the test times out
		return context.Cause(ctx)
	})
	if !errors.Is(err, sqldb.ErrLeaseLost) {
		t.Fatalf("job ended with %v, want ErrLeaseLost", err)
	}
	if h, err := md.Database().Leases(nil).Holder(ctx, "gc"); err != nil || h != "other-node" {
		t.Errorf("lease holder after the job = %q, %v; want other-node (a lost lease is not released)", h, err)
	}
}
