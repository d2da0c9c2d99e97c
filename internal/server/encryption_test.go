package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/server"
)

// An encrypted registry stores only sealed blobs; without its key it
// refuses content with 503 and is not ready, and with the key back it
// serves again, having lost nothing.
func TestEncryptedRegistryKeyOutage(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "kek")
	if err := encryption.GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) { c.EncryptionKey = "file:" + keyPath })
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	if err := e.pull("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(e.srv.DataDir(), "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte("BERTHENC")) {
			t.Errorf("blob file %s is not sealed", filepath.Base(p))
		}
		n++
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("walked %d blob files: %v", n, err)
	}
	if st, _, r := e.readiness(); st != 200 || r.Checks["encryption"].Status != "ok" {
		t.Fatalf("readyz with the key: %d %+v", st, r)
	}

	if err := os.Rename(keyPath, keyPath+".away"); err != nil {
		t.Fatal(err)
	}
	st, text, r := e.readiness()
	if st != 503 || r.Checks["encryption"].Status != "unreachable" || !strings.Contains(text, "encryption: unreachable") {
		t.Fatalf("readyz without the key: %d %q %+v", st, text, r)
	}
	if err := e.pull("team/app", "owner", ownerPassword); statusOf(err) != 503 {
		t.Fatalf("pull without the key: %v, want 503", err)
	}
	code, body, hdr := e.do("GET", "/v2/team/app/blobs/"+firstLayer(t, e), basic("owner", ownerPassword), nil)
	if code != 503 || !strings.Contains(body, "UNAVAILABLE") || !strings.Contains(body, "encryption key") || hdr.Get("Retry-After") == "" {
		t.Fatalf("blob GET without the key: %d %s", code, body)
	}
	if err := e.push("team/other", "owner", ownerPassword); statusOf(err) != 503 {
		t.Fatalf("push without the key: %v, want 503", err)
	}

	if err := os.Rename(keyPath+".away", keyPath); err != nil {
		t.Fatal(err)
	}
	if st, _, r := e.readiness(); st != 200 || r.Checks["encryption"].Status != "ok" {
		t.Fatalf("readyz with the key back: %d %+v", st, r)
	}
	if err := e.pull("team/app", "owner", ownerPassword); err != nil {
		t.Fatalf("pull with the key back: %v", err)
	}

	// Status and rotation through the API; pulls go on after it.
	code, body, _ = e.do("GET", "/api/v1/encryption", basic("owner", ownerPassword), nil)
	var status encryption.Status
	if code != 200 || json.Unmarshal([]byte(body), &status) != nil || !status.Enabled || !status.Available || status.Version != 1 || status.Provider != "file" {
		t.Fatalf("status: %d %s", code, body)
	}
	code, body, _ = e.do("POST", "/api/v1/encryption/rotateKey", basic("owner", ownerPassword), strings.NewReader(`{}`))
	if code != 200 || json.Unmarshal([]byte(body), &status) != nil || status.Version != 2 || status.Rewrapping == 0 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if err := e.pull("team/app", "owner", ownerPassword); err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}
	code, body, _ = e.do("POST", "/api/v1/encryption/rotateKey", basic("owner", ownerPassword), strings.NewReader(`{"version": 2}`))
	if code != 400 {
		t.Fatalf("rotate to the current version: %d %s", code, body)
	}

	// The registry does not start without its key.
	cfg := config.Default()
	cfg.Data = e.srv.DataDir()
	e.srv.Close()
	if _, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword}); err == nil || !strings.Contains(err.Error(), "--encryption-key") {
		t.Fatalf("start of an encrypted registry without its key: %v", err)
	}
}

// firstLayer returns the digest of a layer of team/app:v1.
func firstLayer(t *testing.T, e *env) string {
	t.Helper()
	code, body, _ := e.do("GET", "/v2/team/app/manifests/v1", basic("owner", ownerPassword), nil)
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest: %d %s", code, body)
	}
	return m.Layers[0].Digest
}

// Turning encryption on for a registry with content: the signing key is
// wrapped in place (and still signs: the same key), content stored before
// still pulls, content pushed now is sealed.
func TestTurningEncryptionOn(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	plain := newEnv(t, func(c *config.Config) { c.Data = data })
	if err := plain.push("team/old", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	oldPW, _ := plain.newToken("old-reader", actions("team/old", "content/read")...)
	var before string
	if err := plain.srv.Metadata().Database().R().QueryRowContext(ctx, `SELECT private_key FROM signing_keys`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	plain.http.Close()
	plain.srv.Close()

	keyPath := filepath.Join(t.TempDir(), "kek")
	if err := encryption.GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) { c.Data = data; c.EncryptionKey = "file:" + keyPath })
	var after string
	if err := e.srv.Metadata().Database().R().QueryRowContext(ctx, `SELECT private_key FROM signing_keys`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(after, "wrapped:v1:") || strings.Contains(after, before) {
		t.Fatalf("signing key not wrapped in place: %.20q", after)
	}
	if err := e.pull("team/old", "owner", ownerPassword); err != nil {
		t.Fatalf("pull of content stored before encryption: %v", err)
	}
	// Password hashes were wrapped in place too, and still check.
	for _, q := range []string{`SELECT password_hash FROM users`, `SELECT hash FROM passwords`} {
		rows, err := e.srv.Metadata().Database().R().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h, "wrapped:v1:") {
				t.Errorf("%s: a hash is stored unwrapped", q)
			}
			n++
		}
		rows.Close()
		if n == 0 {
			t.Fatalf("%s: no rows", q)
		}
	}
	if st, _ := e.login("old-reader", oldPW, "repository:team/old:pull"); st != 200 {
		t.Fatalf("login with a token password from before: %d", st)
	}
	newPW, _ := e.newToken("new-reader", actions("team/old", "content/read")...)
	if st, _ := e.login("new-reader", newPW, "repository:team/old:pull"); st != 200 {
		t.Fatalf("login with a token password made now: %d", st)
	}
	if err := e.push("team/new", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	if err := e.pull("team/new", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	// A new signing key is stored wrapped too.
	if _, err := e.id.RotateSigningKey(ctx, owner); err != nil {
		t.Fatal(err)
	}
	rows, err := e.srv.Metadata().Database().R().QueryContext(ctx, `SELECT private_key FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "wrapped:v1:") {
			t.Errorf("a signing key is stored unwrapped")
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d signing keys, want 2", n)
	}
}
