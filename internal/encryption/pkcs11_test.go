//go:build cgo

package encryption_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testutil"
)

func pkcs11Spec(h *testutil.SoftHSM) string {
	return "pkcs11:module=" + h.Module + ";token=" + h.Token + ";label=berth-kek;pin=" + h.PIN
}

// newPKCS11Env is an env whose KEK is in a SoftHSM token.
func newPKCS11Env(t *testing.T, h *testutil.SoftHSM) (*env, encryption.KeyProvider) {
	t.Helper()
	ctx := context.Background()
	md, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	e := &env{md: md, db: md.Database()}
	if err := encryption.Migrate(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	p, err := encryption.ParseKeySpec(pkcs11Spec(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if e.keys, err = encryption.OpenKeyring(ctx, e.db, p, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Err(); err != nil {
		t.Fatal(err)
	}
	return e, p
}

// The conformance suite passes with the KEK in an HSM, and a rotation
// makes a second key in the HSM, rewraps every data key with it, and a
// new session on the token (a restarted node) reads everything.
func TestPKCS11(t *testing.T) {
	h := testutil.StartSoftHSM(t)
	ctx := context.Background()
	t.Run("Conformance", func(t *testing.T) {
		e, _ := newPKCS11Env(t, h)
		storagetest.Run(t, storagetest.Options{}, func(t *testing.T) storagetest.Store {
			fs, err := storage.NewFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return testStore{encryption.NewBlobs(fs, e.keys), fs}
		})
	})
	t.Run("RotateAndReopen", func(t *testing.T) {
		e, p := newPKCS11Env(t, h)
		if got := p.ID(); got != "pkcs11:berth/berth-kek" {
			t.Errorf("ID = %q", got)
		}
		root := t.TempDir()
		fs, err := storage.NewFS(root)
		if err != nil {
			t.Fatal(err)
		}
		s := testStore{encryption.NewBlobs(fs, e.keys), fs}
		content, _ := storagetest.Random(t, 200000)
		d := put(t, s, content)
		v, err := e.keys.Rotate(ctx, 0)
		if err != nil || v < 2 {
			t.Fatalf("Rotate = %d, %v", v, err)
		}
		if n, err := e.keys.Rewrap(ctx); err != nil || n == 0 {
			t.Fatalf("Rewrap = %d, %v", n, err)
		}
		vs, err := p.Versions(ctx)
		if err != nil || len(vs) < 2 {
			t.Fatalf("versions in the token: %v, %v", vs, err)
		}
		p2, err := encryption.ParseKeySpec(pkcs11Spec(h))
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close()
		k2, err := encryption.OpenKeyring(ctx, e.db, p2, nil)
		if err != nil || k2.Err() != nil {
			t.Fatalf("reopen: %v, %v", err, k2.Err())
		}
		got, err := readAll(testStore{encryption.NewBlobs(fs, k2), fs}, d)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read after rotation with a new session: %v", err)
		}
	})
	t.Run("KeysStayInTheToken", func(t *testing.T) {
		newPKCS11Env(t, h)
		c, err := crypto11.Configure(&crypto11.Config{Path: h.Module, TokenLabel: h.Token, Pin: h.PIN})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		keys, err := c.FindKeys(nil, []byte("berth-kek"))
		if err != nil || len(keys) == 0 {
			t.Fatalf("keys in the token: %d, %v", len(keys), err)
		}
		for _, k := range keys {
			a, err := c.GetAttribute(k, crypto11.CkaExtractable)
			if err != nil || !bytes.Equal(a.Value, []byte{0}) {
				t.Fatalf("key is extractable: %v %v", a, err)
			}
		}
	})
	t.Run("WrongPIN", func(t *testing.T) {
		if _, err := encryption.ParseKeySpec("pkcs11:module=" + h.Module + ";token=" + h.Token + ";label=berth-kek;pin=wrong"); err == nil {
			t.Fatal("a wrong PIN opened the token")
		}
	})
}
