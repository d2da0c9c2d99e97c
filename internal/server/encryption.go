package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/encryption"
)

// keyCheckInterval is how often the encryption key is checked: how soon
// content is refused after the key went away, and served after it is back.
const keyCheckInterval = 2 * time.Second

// openEncryption wraps the content store in encryption when a key is
// configured. A registry whose content is encrypted does not start without
// its key: it would serve ciphertext as content, and store plain content
// beside it.
func (s *Server) openEncryption(ctx context.Context) error {
	db := s.meta.Database()
	if err := encryption.Migrate(ctx, db); err != nil {
		return err
	}
	if s.cfg.EncryptionKey == "" {
		on, err := encryption.Enabled(ctx, db)
		if err != nil {
			return err
		}
		if on {
			return errors.New("this registry's content is encrypted: start it with --encryption-key (see docs/encryption.md)")
		}
		return nil
	}
	p, err := encryption.ParseKeySpec(s.cfg.EncryptionKey)
	if err != nil {
		return err
	}
	keys, err := encryption.OpenKeyring(ctx, db, p, s.log)
	if err != nil {
		p.Close()
		return err
	}
	inner, ok := s.blobs.(encryption.Inner)
	if !ok {
		p.Close()
		return fmt.Errorf("the content store %T cannot be encrypted", s.blobs)
	}
	s.enc = encryption.NewBlobs(inner, keys)
	s.blobs = s.enc
	s.log.Info("content encrypted at rest", "key", keys.KeyID(), "provider", p.ID())
	return nil
}

// encryptionJobs runs, until ctx ends, what encryption does in the
// background: watching the key, encrypting content stored before
// encryption was on, and rewrapping data keys after a rotation. The work
// runs under a lease (one node of several) and is retried every minute
// until done; a rotation starts the rewrap at once.
func (s *Server) encryptionJobs(ctx context.Context) {
	go s.enc.Keyring().Watch(ctx, keyCheckInterval)
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.rewrapNow:
		}
		err := s.underLease(ctx, "encryption", func(ctx context.Context) error {
			if err := s.enc.EncryptExisting(ctx); err != nil {
				return fmt.Errorf("encrypt existing content: %w", err)
			}
			n, err := s.enc.Keyring().Rewrap(ctx)
			if n > 0 {
				s.log.Info("data keys rewrapped with the current key version", "count", n)
			}
			return err
		})
		if err != nil && ctx.Err() == nil && !errors.Is(err, errLeaseHeld) {
			s.log.Warn("encryption background work", "err", err)
		}
		t.Reset(time.Minute)
	}
}

// encryptionAPI is the API's face of encryption.
type encryptionAPI struct{ s *Server }

func (e encryptionAPI) Status(ctx context.Context) (encryption.Status, error) {
	if e.s.enc == nil {
		return encryption.Status{}, nil
	}
	return e.s.enc.Keyring().Status(ctx)
}

func (e encryptionAPI) RotateKey(ctx context.Context, version int) (encryption.Status, error) {
	if e.s.enc == nil {
		return encryption.Status{}, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
			Message: "encryption is not on: start berth serve with --encryption-key"}
	}
	err := e.s.underLease(ctx, "encryption-rotate", func(ctx context.Context) error {
		_, err := e.s.enc.Keyring().Rotate(ctx, version)
		return err
	})
	if errors.Is(err, errLeaseHeld) {
		return encryption.Status{}, newLeaseHeldError("a key rotation")
	}
	if errors.Is(err, encryption.ErrVersionNotNewer) {
		return encryption.Status{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	}
	if errors.Is(err, encryption.ErrKeyUnavailable) {
		return encryption.Status{}, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: err.Error()}
	}
	if err != nil {
		return encryption.Status{}, err
	}
	select {
	case e.s.rewrapNow <- struct{}{}:
	default:
	}
	return e.s.enc.Keyring().Status(ctx)
}
