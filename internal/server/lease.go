package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/sqldb"
)

// leaseTTL is how long a job's lease lasts without renewal: a node that
// dies mid-job holds the job up for at most this long.
const leaseTTL = time.Minute

// errLeaseHeld means another node (or an earlier run of this one that
// ended without releasing) holds a job's lease.
var errLeaseHeld = errors.New("held by another node")

// newHolder names this process as a lease holder: the host and a random
// part, so that a restarted process is a new holder.
func newHolder() string {
	host, _ := os.Hostname()
	var b [6]byte
	rand.Read(b[:])
	return host + "/" + hex.EncodeToString(b[:])
}

// underLease runs fn while holding lease name in the database, so that one
// node of several runs the job at a time. It renews the lease while fn
// runs, and cancels fn's context if the lease is lost. It fails with
// errLeaseHeld, without running fn, if someone else holds it.
func (s *Server) underLease(ctx context.Context, name string, fn func(context.Context) error) error {
	leases := s.meta.Database().Leases(nil)
	ok, err := leases.Acquire(ctx, name, s.holder, leaseTTL)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("lease %s: %w", name, errLeaseHeld)
	}
	defer leases.Release(context.WithoutCancel(ctx), name, s.holder)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	every := s.leaseRenewal
	if every == 0 {
		every = leaseTTL / 3
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := leases.Renew(ctx, name, s.holder, leaseTTL); errors.Is(err, sqldb.ErrLeaseLost) {
					s.log.Error("job lease lost; stopping the job", "lease", name)
					cancel(err)
					return
				} else if err != nil {
					s.log.Warn("renew job lease", "lease", name, "err", err)
				}
			}
		}
	}()
	return fn(ctx)
}

// leaseHeldError is errLeaseHeld with the API's answer to it (409).
type leaseHeldError struct{ apiErr *api.Error }

func newLeaseHeldError(job string) error {
	return leaseHeldError{&api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
		Message: job + " is running on another node (or a node that stopped during it: its lease expires within " + leaseTTL.String() + ")"}}
}

func (e leaseHeldError) Error() string   { return e.apiErr.Message }
func (e leaseHeldError) Unwrap() []error { return []error{e.apiErr, errLeaseHeld} }
