//go:build cgo

package encryption

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// PKCS11 is the KEK in an HSM: AES-256 secret keys with one label, one
// object per version, whose CKA_ID is the version's number in decimal.
// Wrapping runs in the HSM (CKM_AES_GCM); the keys never leave it.
type PKCS11 struct {
	ctx   *crypto11.Context
	token string
	label string

	mu    sync.Mutex
	aeads map[int]cipher.AEAD
}

// openPKCS11 opens the token that spec names:
// module=PATH;token=LABEL;label=KEYLABEL and pin=PIN or pin-file=PATH (or
// BERTH_PKCS11_PIN in the environment). A token without a key of the label
// gets version 1 made.
func openPKCS11(spec string) (KeyProvider, error) {
	attrs := map[string]string{}
	for _, part := range strings.Split(spec, ";") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("encryption key pkcs11: %q is not NAME=VALUE", redactSpec(part))
		}
		switch k {
		case "module", "token", "label", "pin", "pin-file":
		default:
			return nil, fmt.Errorf("encryption key pkcs11: unknown attribute %q (want module, token, label, pin or pin-file)", k)
		}
		attrs[k] = v
	}
	for _, k := range []string{"module", "token", "label"} {
		if attrs[k] == "" {
			return nil, fmt.Errorf("encryption key pkcs11: %s= is missing", k)
		}
	}
	pin := attrs["pin"]
	if f := attrs["pin-file"]; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("encryption key pkcs11: read the PIN: %w", err)
		}
		pin = strings.TrimSpace(string(b))
	}
	if pin == "" {
		pin = os.Getenv("BERTH_PKCS11_PIN")
	}
	if pin == "" {
		return nil, errors.New("encryption key pkcs11: no PIN (pin-file=PATH, or BERTH_PKCS11_PIN)")
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: attrs["module"], TokenLabel: attrs["token"], Pin: pin, GCMIVLength: 12})
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11 token %q: %v", ErrKeyUnavailable, attrs["token"], err)
	}
	p := &PKCS11{ctx: ctx, token: attrs["token"], label: attrs["label"], aeads: map[int]cipher.AEAD{}}
	_, err = p.Versions(context.Background())
	if errors.Is(err, errNoVersions) {
		_, err = p.NewVersion(context.Background())
	}
	if err != nil {
		ctx.Close()
		return nil, err
	}
	return p, nil
}

var errNoVersions = errors.New("no key of the label in the token")

// ID implements KeyProvider.
func (p *PKCS11) ID() string { return "pkcs11:" + p.token + "/" + p.label }

// Versions implements KeyProvider.
func (p *PKCS11) Versions(context.Context) ([]int, error) {
	keys, err := p.ctx.FindKeys(nil, []byte(p.label))
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11: find keys: %v", ErrKeyUnavailable, err)
	}
	var out []int
	for _, k := range keys {
		a, err := p.ctx.GetAttribute(k, crypto11.CkaId)
		if err != nil {
			return nil, fmt.Errorf("%w: pkcs11: key id: %v", ErrKeyUnavailable, err)
		}
		if v, err := strconv.Atoi(string(a.Value)); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: pkcs11 token %q has no key labelled %q", errNoVersions, p.token, p.label)
	}
	return out, nil
}

// AEAD implements KeyProvider.
func (p *PKCS11) AEAD(_ context.Context, v int) (cipher.AEAD, error) {
	p.mu.Lock()
	a := p.aeads[v]
	p.mu.Unlock()
	if a != nil {
		return a, nil
	}
	k, err := p.ctx.FindKey([]byte(strconv.Itoa(v)), []byte(p.label))
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11: find key version %d: %v", ErrKeyUnavailable, v, err)
	}
	if k == nil {
		return nil, fmt.Errorf("%w: pkcs11 token %q has no version %d of key %q", ErrKeyUnavailable, p.token, v, p.label)
	}
	a, err = k.NewGCM()
	if err != nil {
		return nil, err
	}
	a = recovering{a}
	p.mu.Lock()
	p.aeads[v] = a
	p.mu.Unlock()
	return a, nil
}

// NewVersion implements KeyProvider: it generates the next version's key
// in the HSM, sensitive and not extractable.
func (p *PKCS11) NewVersion(ctx context.Context) (int, error) {
	vs, err := p.Versions(ctx)
	if err != nil && !errors.Is(err, errNoVersions) {
		return 0, err
	}
	v := 1
	if len(vs) > 0 {
		v = vs[len(vs)-1] + 1
	}
	tmpl, err := crypto11.NewAttributeSetWithIDAndLabel([]byte(strconv.Itoa(v)), []byte(p.label))
	if err != nil {
		return 0, err
	}
	tmpl.AddIfNotPresent([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	})
	if _, err := p.ctx.GenerateSecretKeyWithAttributes(tmpl, 256, crypto11.CipherAES); err != nil {
		return 0, fmt.Errorf("%w: pkcs11: generate key version %d: %v", ErrKeyUnavailable, v, err)
	}
	return v, nil
}

// Close implements KeyProvider.
func (p *PKCS11) Close() error { return p.ctx.Close() }

// recovering turns the panics of crypto11's Seal (it has no error to
// return) into a failed Open of what it returns: callers check every
// wrap by opening it (the check value) or get ErrKeyUnavailable.
type recovering struct{ cipher.AEAD }

func (r recovering) Seal(dst, nonce, pt, ad []byte) (out []byte) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	return r.AEAD.Seal(dst, nonce, pt, ad)
}
