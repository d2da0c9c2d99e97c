package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretWrapper wraps secrets before they are stored, with the registry's
// encryption key (encryption at rest, internal/encryption): the private
// parts of the token signing keys and the password hashes of users,
// tokens and the admin user. Memory holds them unwrapped (loaded once), so
// credential checks cost nothing more.
type SecretWrapper interface {
	WrapSecret(ctx context.Context, purpose string, plain []byte) ([]byte, error)
	UnwrapSecret(ctx context.Context, purpose string, wrapped []byte) ([]byte, error)
}

// wrappedPrefix marks a stored secret as wrapped; what lacks it was stored
// before encryption was on, and is wrapped in place at the next start.
const wrappedPrefix = "wrapped:v1:"

const (
	signingKeyPurpose   = "signing key"
	passwordHashPurpose = "password hash"
)

// sealSecret returns what to store of secret enc: wrapped when the service
// has a wrapper, else enc itself.
func (s *Service) sealSecret(ctx context.Context, purpose, enc string) (string, error) {
	if s.opts.Secrets == nil {
		return enc, nil
	}
	w, err := s.opts.Secrets.WrapSecret(ctx, purpose, []byte(enc))
	if err != nil {
		return "", fmt.Errorf("wrap %s: %w", purpose, err)
	}
	return wrappedPrefix + base64.StdEncoding.EncodeToString(w), nil
}

// openSecret reverses sealSecret.
func (s *Service) openSecret(ctx context.Context, purpose, stored string) (string, error) {
	rest, ok := strings.CutPrefix(stored, wrappedPrefix)
	if !ok {
		return stored, nil
	}
	if s.opts.Secrets == nil {
		return "", fmt.Errorf("the %s is wrapped with the registry's encryption key: start with --encryption-key", purpose)
	}
	w, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("wrapped %s: %w", purpose, err)
	}
	plain, err := s.opts.Secrets.UnwrapSecret(ctx, purpose, w)
	if err != nil {
		return "", fmt.Errorf("unwrap %s: %w", purpose, err)
	}
	return string(plain), nil
}

// storedSecrets are the columns that hold secrets, by table: the key
// columns that find a row, and the secret's column.
var storedSecrets = []struct {
	table, keys, column, purpose string
}{
	{"signing_keys", "kid", "private_key", signingKeyPurpose},
	{"users", "name", "password_hash", passwordHashPurpose},
	{"passwords", "owner_kind || '/' || owner || '/' || slot", "hash", passwordHashPurpose},
}

// wrapStoredSecrets wraps the secrets stored before encryption was turned
// on, in place (each a compare-and-set on the value it read). It first
// makes sure the wrapping key exists, so that wraps inside transactions
// (password changes) only read it.
func (s *Service) wrapStoredSecrets(ctx context.Context) error {
	if s.opts.Secrets == nil {
		return nil
	}
	if _, err := s.opts.Secrets.WrapSecret(ctx, "probe", nil); err != nil {
		return fmt.Errorf("wrap secrets: %w", err)
	}
	for _, c := range storedSecrets {
		if err := s.wrapColumn(ctx, c.table, c.keys, c.column, c.purpose); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) wrapColumn(ctx context.Context, table, keys, column, purpose string) error {
	rows, err := s.db.W().QueryContext(ctx, `SELECT `+keys+`, `+column+` FROM `+table)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	plain := map[string]string{}
	for rows.Next() {
		var key, v string
		if err := rows.Scan(&key, &v); err != nil {
			rows.Close()
			return fmt.Errorf("read %s: %w", table, err)
		}
		if !strings.HasPrefix(v, wrappedPrefix) {
			plain[key] = v
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	var errs []error
	for key, v := range plain {
		w, err := s.sealSecret(ctx, purpose, v)
		if err != nil {
			return err
		}
		if _, err := s.db.W().ExecContext(ctx, `UPDATE `+table+` SET `+column+` = ? WHERE `+keys+` = ? AND `+column+` = ?`, w, key, v); err != nil {
			errs = append(errs, fmt.Errorf("wrap %s of %s %s: %w", purpose, table, key, err))
		}
	}
	return errors.Join(errs...)
}
