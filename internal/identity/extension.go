package identity

import (
	"context"
	"fmt"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// An Extension is state kept beside the identities in tables of its own
// (the network rules), which credential checks read from memory as they
// read the identities. It is changed through ChangeExtension, as an
// identity change, so that it reaches every node by the same feed: the
// change is in force on every live node when the call returns, and a node
// that cannot confirm it is current refuses credentials.
type Extension interface {
	// LoadExtension reads the extension's state in tx (a snapshot, or the
	// change's own transaction) and returns the function that puts it
	// into memory; that function runs under the identity lock and must not
	// block.
	LoadExtension(ctx context.Context, tx *sqldb.Tx) (install func(), err error)
}

// ChangeExtension runs fn as one identity change made by actor, who needs
// the management right perm, with a permission-change audit record (target,
// reason) in the same transaction; then the extensions' state is loaded in
// that transaction and put into memory once it has committed.
func (s *Service) ChangeExtension(ctx context.Context, actor auth.Identity, perm auth.Permission, target, reason string, fn func(*sqldb.Tx) error) error {
	if err := s.authorize(actor, perm); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touched.Ext = true
		if err := fn(tx); err != nil {
			return err
		}
		return s.record(ctx, tx, actor, target, reason)
	})
	if err != nil {
		return err
	}
	s.apply(func() {})
	return nil
}

// extensionsTouched reports whether the change in progress changes what
// the extensions hold: their own state, or tokens (whose state they may
// keep, deleted with the token).
func (s *Service) extensionsTouched() bool {
	return len(s.opts.Extensions) > 0 && (s.touched.Ext || len(s.touched.Tokens) > 0)
}

// loadExtensions reads every extension's state in tx.
func (s *Service) loadExtensions(ctx context.Context, tx *sqldb.Tx) ([]func(), error) {
	var out []func()
	for _, e := range s.opts.Extensions {
		f, err := e.LoadExtension(ctx, tx)
		if err != nil {
			return nil, fmt.Errorf("load identity extension: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}
