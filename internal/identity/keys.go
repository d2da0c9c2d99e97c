package identity

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/sqldb"
)

// KeyPublishDelay is how long a new signing key is published (every node
// verifies with it) before any node signs with it: longer than a node may
// take to learn of it, which ConfirmWithin bounds, so no node ever receives
// a token signed with a key it does not know yet.
const KeyPublishDelay = 3 * ConfirmWithin

// signingKey is a key that verifies tokens and, from activeFrom on until
// a newer key is active, signs them.
type signingKey struct {
	kid        string
	created    time.Time
	activeFrom time.Time
	signer     *auth.Signer
}

// SigningKey is a signing key as the faces show it (never its private part).
type SigningKey struct {
	ID         string    `json:"kid"`
	Created    time.Time `json:"created"`
	ActiveFrom time.Time `json:"activeFrom"`
	// Signing is true for the key that signs new tokens now.
	Signing bool `json:"signing"`
}

// tokenConfig is the configuration of every signer and verifier.
func (s *Service) tokenConfig() auth.TokenConfig {
	return auth.TokenConfig{Issuer: s.opts.RegistryName, Audience: s.opts.RegistryName, AccessTTL: s.opts.AccessTTL, RefreshTTL: s.opts.RefreshTTL, Now: s.opts.Now}
}

// ensureSigningKey makes sure the database holds a signing key: the one a
// database from before signing_keys kept in settings, else a new one.
func (s *Service) ensureSigningKey(ctx context.Context) error {
	var n int
	if err := s.db.W().QueryRowContext(ctx, `SELECT COUNT(*) FROM signing_keys`).Scan(&n); err != nil {
		return fmt.Errorf("read signing keys: %w", err)
	}
	if n > 0 {
		return nil
	}
	key, err := s.signingKey(ctx)
	if err != nil {
		return err
	}
	enc, err := auth.EncodeSigningKey(key)
	if err != nil {
		return err
	}
	if enc, err = s.sealSecret(ctx, signingKeyPurpose, enc); err != nil {
		return err
	}
	// Active from the start of time: it is the one key there is.
	if _, err := s.db.W().ExecContext(ctx, `INSERT INTO signing_keys(kid, private_key, created_at, active_from) VALUES (?, ?, ?, 0) ON CONFLICT(kid) DO NOTHING`,
		auth.KeyID(key.Public().(ed25519.PublicKey)), enc, s.now().UnixMilli()); err != nil {
		return fmt.Errorf("store signing key: %w", err)
	}
	return nil
}

// readKeys loads the signing keys into st, with the verifier of them all.
func (s *Service) readKeys(ctx context.Context, tx *sqldb.Tx, st *state) error {
	rows, err := tx.QueryContext(ctx, `SELECT kid, private_key, created_at, active_from FROM signing_keys`)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	defer rows.Close()
	cfg := s.tokenConfig()
	for rows.Next() {
		var kid, enc string
		var created, from int64
		if err := rows.Scan(&kid, &enc, &created, &from); err != nil {
			return fmt.Errorf("load signing keys: %w", err)
		}
		if enc, err = s.openSecret(ctx, signingKeyPurpose, enc); err != nil {
			return fmt.Errorf("signing key %s: %w", kid, err)
		}
		key, err := auth.DecodeSigningKey(enc)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", kid, err)
		}
		signer, err := auth.NewSigner(key, cfg)
		if err != nil {
			return err
		}
		st.keys = append(st.keys, &signingKey{kid: signer.KeyID(), created: time.UnixMilli(created).UTC(), activeFrom: time.UnixMilli(from).UTC(), signer: signer})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	if len(st.keys) == 0 {
		return errors.New("load signing keys: none")
	}
	sortKeys(st.keys)
	// The same keys keep the same verifier, so that what was checked with
	// it (tokenauth caches signature checks by verifier) stays checked.
	// (s.keys is only changed under writeMu, which the caller holds.)
	if sameKeys(st.keys, s.keys) {
		st.keys, st.verifier = s.keys, s.verifier
		return nil
	}
	st.verifier, err = s.verifierOf(st.keys)
	return err
}

func sortKeys(keys []*signingKey) {
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].activeFrom.Equal(keys[j].activeFrom) {
			return keys[i].activeFrom.Before(keys[j].activeFrom)
		}
		return keys[i].kid < keys[j].kid
	})
}

func sameKeys(a, b []*signingKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].kid != b[i].kid || !a[i].activeFrom.Equal(b[i].activeFrom) {
			return false
		}
	}
	return true
}

// verifierOf sorts keys by activation and returns a verifier of them all.
func (s *Service) verifierOf(keys []*signingKey) (*auth.Verifier, error) {
	sortKeys(keys)
	pubs := make([]ed25519.PublicKey, len(keys))
	for i, k := range keys {
		pubs[i] = k.signer.PublicKey()
	}
	return auth.NewVerifier(s.tokenConfig(), pubs...)
}

// signingLocked returns the key that signs at now: the newest active one.
// Call it with s.mu held.
func (s *Service) signingLocked(now time.Time) *signingKey {
	cur := s.keys[0]
	for _, k := range s.keys[1:] {
		if !k.activeFrom.After(now) {
			cur = k
		}
	}
	return cur
}

// Signer issues tokens with the signing key active now.
func (s *Service) Signer() *auth.Signer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.signingLocked(s.now()).signer
}

// Verifier checks tokens signed with any key the registry holds.
func (s *Service) Verifier() *auth.Verifier {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.verifier
}

// SigningKeys lists the signing keys, oldest first.
func (s *Service) SigningKeys(actor auth.Identity) ([]SigningKey, error) {
	if err := s.authorize(actor, auth.ManageRegistry); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur := s.signingLocked(s.now())
	out := make([]SigningKey, len(s.keys))
	for i, k := range s.keys {
		out[i] = SigningKey{ID: k.kid, Created: k.created, ActiveFrom: k.activeFrom, Signing: k == cur}
	}
	return out, nil
}

// RotateSigningKey adds a new signing key. Every node verifies with it at
// once, and signs with it from KeyPublishDelay on; the older keys keep
// verifying the tokens they signed until they are retired.
func (s *Service) RotateSigningKey(ctx context.Context, actor auth.Identity) (SigningKey, error) {
	if err := s.authorize(actor, auth.ManageRegistry); err != nil {
		return SigningKey{}, err
	}
	key := auth.GenerateSigningKey()
	enc, err := auth.EncodeSigningKey(key)
	if err != nil {
		return SigningKey{}, err
	}
	if enc, err = s.sealSecret(ctx, signingKeyPurpose, enc); err != nil {
		return SigningKey{}, err
	}
	signer, err := auth.NewSigner(key, s.tokenConfig())
	if err != nil {
		return SigningKey{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond) // as stored
	k := &signingKey{kid: signer.KeyID(), created: now, activeFrom: now.Add(KeyPublishDelay), signer: signer}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	keys := append(append([]*signingKey{}, s.keys...), k)
	verifier, err := s.verifierOf(keys)
	if err != nil {
		return SigningKey{}, err
	}
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchKeys()
		if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys(kid, private_key, created_at, active_from) VALUES (?, ?, ?, ?)`,
			k.kid, enc, now.UnixMilli(), k.activeFrom.UnixMilli()); err != nil {
			return fmt.Errorf("store signing key: %w", err)
		}
		return s.record(ctx, tx, actor, "signing key "+k.kid, "created; signs from "+k.activeFrom.Format(time.RFC3339))
	})
	if err != nil {
		return SigningKey{}, err
	}
	s.apply(func() { s.keys, s.verifier = keys, verifier })
	return SigningKey{ID: k.kid, Created: k.created, ActiveFrom: k.activeFrom}, nil
}

// RetireSigningKey deletes a signing key that no longer signs: tokens it
// signed stop verifying, on every node. The key that signs now, and any
// newer one, cannot be retired.
func (s *Service) RetireSigningKey(ctx context.Context, actor auth.Identity, kid string) error {
	if err := s.authorize(actor, auth.ManageRegistry); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur := s.signingLocked(s.now())
	var keys []*signingKey
	found := false
	for _, k := range s.keys {
		if k.kid != kid {
			keys = append(keys, k)
			continue
		}
		found = true
		if !k.activeFrom.Before(cur.activeFrom) {
			return errf(ErrForbidden, "signing key %s signs now or will: rotate first, and retire it once it no longer signs", kid)
		}
	}
	if !found {
		return errf(ErrNotFound, "signing key %q not found", kid)
	}
	verifier, err := s.verifierOf(keys)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx *sqldb.Tx) error {
		s.touchKeys()
		if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE kid = ?`, kid); err != nil {
			return fmt.Errorf("delete signing key: %w", err)
		}
		return s.record(ctx, tx, actor, "signing key "+kid, "retired")
	})
	if err != nil {
		return err
	}
	s.apply(func() { s.keys, s.verifier = keys, verifier })
	return nil
}
