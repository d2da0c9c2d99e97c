package encryption

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-registry/berth/internal/storage"
)

// ErrKeyUnavailable means the key-encryption key cannot be used now (its
// file is missing or unreadable, the HSM does not answer, or it is not the
// key this registry's data keys were wrapped with). Content is refused,
// not lost, until it is back.
var ErrKeyUnavailable = storage.ErrKeyUnavailable

// KeyProvider holds the key-encryption key (KEK) in its versions. A
// version's key wraps data keys through an AEAD that, for an HSM, runs in
// the HSM: the key never leaves it.
type KeyProvider interface {
	// ID names the key (not secret): the file's fingerprint, the HSM
	// token and key label.
	ID() string
	// Versions lists the versions the provider holds, oldest first; it
	// reads them again from the source (a changed file, new HSM objects).
	Versions(ctx context.Context) ([]int, error)
	// AEAD returns version v's key as an AEAD with 12-byte nonces.
	AEAD(ctx context.Context, v int) (cipher.AEAD, error)
	// NewVersion makes a new version (rotation) and returns it.
	NewVersion(ctx context.Context) (int, error)
	Close() error
}

// ParseKeySpec opens the provider a --encryption-key setting names:
// file:PATH, or pkcs11:module=PATH;token=LABEL;pin=PIN;label=KEYLABEL
// (pin may instead come from pin-file=PATH or the BERTH_PKCS11_PIN
// environment variable).
func ParseKeySpec(spec string) (KeyProvider, error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("encryption key %q: want file:PATH or pkcs11:module=PATH;token=LABEL;label=KEY", redactSpec(spec))
	}
	switch kind {
	case "file":
		if rest == "" {
			return nil, errors.New("encryption key file: no path")
		}
		return OpenKeyFile(rest)
	case "pkcs11":
		return openPKCS11(rest)
	}
	return nil, fmt.Errorf("encryption key %q: unknown provider %q (want file or pkcs11)", redactSpec(spec), kind)
}

// redactSpec hides a PIN in a key setting, for messages.
func redactSpec(spec string) string {
	parts := strings.Split(spec, ";")
	for i, p := range parts {
		if k, _, ok := strings.Cut(p, "="); ok && strings.HasSuffix(k, "pin") {
			parts[i] = k + "=xxxxx"
		}
	}
	return strings.Join(parts, ";")
}

// KeyFile is the KEK in a local file: one line per version, "VERSION
// BASE64-KEY" (32 bytes), comments after #. The file is read again when it
// changes, so a version added by rotation on one node, or a file put back
// after it went missing, is seen without a restart.
type KeyFile struct {
	path string

	mu   sync.Mutex
	keys map[int][]byte
	id   string
	mod  string // what the file was when read: size and time
}

// GenerateKeyFile writes a new key file with one version; it refuses to
// replace an existing file.
func GenerateKeyFile(path string) error {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "# berth key-encryption key: keep it secret, keep a copy; without it encrypted content is lost\n1 %s\n", base64.StdEncoding.EncodeToString(k))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// OpenKeyFile reads a key file.
func OpenKeyFile(path string) (*KeyFile, error) {
	k := &KeyFile{path: path}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *KeyFile) reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("%w: key file: %v", ErrKeyUnavailable, err)
	}
	mod := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	if mod == k.mod && k.keys != nil {
		return nil
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("%w: key file: %v", ErrKeyUnavailable, err)
	}
	keys, err := parseKeyFile(b)
	if err != nil {
		return fmt.Errorf("%w: key file %s: %v", ErrKeyUnavailable, filepath.Base(k.path), err)
	}
	first := slices.Min(mapKeys(keys))
	fp := sha256.Sum256(append([]byte("berth kek id\x00"), keys[first]...))
	id := "file:" + hex.EncodeToString(fp[:8])
	if k.id != "" && id != k.id {
		return fmt.Errorf("%w: key file %s now holds another key (%s, was %s)", ErrKeyUnavailable, filepath.Base(k.path), id, k.id)
	}
	k.keys, k.id, k.mod = keys, id, mod
	return nil
}

func mapKeys(m map[int][]byte) []int {
	out := make([]int, 0, len(m))
	for v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func parseKeyFile(b []byte) (map[int][]byte, error) {
	keys := map[int][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want VERSION KEY", n)
		}
		v, err := strconv.Atoi(f[0])
		if err != nil || v < 1 {
			return nil, fmt.Errorf("line %d: version %q is not a positive number", n, f[0])
		}
		key, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("line %d: the key is not 32 bytes in base64", n)
		}
		if _, dup := keys[v]; dup {
			return nil, fmt.Errorf("line %d: version %d twice", n, v)
		}
		keys[v] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the file")
	}
	return keys, sc.Err()
}

// ID implements KeyProvider.
func (k *KeyFile) ID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// Versions implements KeyProvider.
func (k *KeyFile) Versions(context.Context) ([]int, error) {
	if err := k.reload(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return mapKeys(k.keys), nil
}

// AEAD implements KeyProvider.
func (k *KeyFile) AEAD(_ context.Context, v int) (cipher.AEAD, error) {
	k.mu.Lock()
	key, ok := k.keys[v]
	k.mu.Unlock()
	if !ok {
		if err := k.reload(); err != nil {
			return nil, err
		}
		k.mu.Lock()
		key, ok = k.keys[v]
		k.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("%w: key file %s has no version %d", ErrKeyUnavailable, filepath.Base(k.path), v)
		}
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// NewVersion implements KeyProvider: it adds a version to the file
// (written beside it and renamed over it, so the file is never half
// written).
func (k *KeyFile) NewVersion(ctx context.Context) (int, error) {
	if err := k.reload(); err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old, err := os.ReadFile(k.path)
	if err != nil {
		return 0, fmt.Errorf("%w: key file: %v", ErrKeyUnavailable, err)
	}
	v := slices.Max(mapKeys(k.keys)) + 1
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	next := fmt.Appendf(old, "%d %s\n", v, base64.StdEncoding.EncodeToString(key))
	tmp := k.path + ".new"
	if err := os.WriteFile(tmp, next, 0o600); err != nil {
		return 0, fmt.Errorf("write key file: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, k.path); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("write key file: %w", err)
	}
	k.keys[v] = key
	k.mod = ""
	return v, nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Close implements KeyProvider.
func (k *KeyFile) Close() error { return nil }
