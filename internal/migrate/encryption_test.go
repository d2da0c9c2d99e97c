package migrate

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/server"
)

// berth migrate refuses a source whose content is encrypted (it would copy
// ciphertext under digests it does not match) and writes nothing.
func TestMigrateRefusesEncryptedSource(t *testing.T) {
	key := filepath.Join(t.TempDir(), "kek")
	if err := encryption.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.EncryptionKey = "file:" + key
	srv, err := server.New(t.Context(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: "correct horse battery staple"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	target := t.TempDir()
	_, err = Run(t.Context(), Options{FromData: cfg.Data, ToData: target})
	if err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("migrate of an encrypted registry: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(target, "*")); len(m) != 0 {
		t.Fatalf("the refused migration wrote %v", m)
	}
}
