package encryption

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// secretsKeyName names the data key that wraps the secrets of the
// metadata store (the signing keys' private parts). It lives with the
// blobs' data keys, so a rotation rewraps it with them; no blob has a name
// of this form.
const secretsKeyName = digest.Digest("secrets:metadata")

func (k *Keyring) secretsAEAD(ctx context.Context) (cipher.AEAD, error) {
	dek, err := k.DataKey(ctx, secretsKeyName, true)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// WrapSecret seals a secret of the metadata store (identity.SecretWrapper).
func (k *Keyring) WrapSecret(ctx context.Context, purpose string, plain []byte) ([]byte, error) {
	a, err := k.secretsAEAD(ctx)
	if err != nil {
		return nil, err
	}
	return seal(a, plain, []byte("berth secret\x00"+purpose))
}

// UnwrapSecret opens what WrapSecret sealed.
func (k *Keyring) UnwrapSecret(ctx context.Context, purpose string, wrapped []byte) ([]byte, error) {
	a, err := k.secretsAEAD(ctx)
	if err != nil {
		return nil, err
	}
	p, err := open(a, wrapped, []byte("berth secret\x00"+purpose))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", purpose, ErrTampered)
	}
	return p, nil
}
