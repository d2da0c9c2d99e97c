package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/storage"
)

// berth fsck --data on an encrypted registry checks the content decrypted
// with --encryption-key (read as stored, every blob would look damaged, and
// --repair would quarantine them all), and refuses to run without it.
func TestFsckOfflineEncrypted(t *testing.T) {
	ctx := context.Background()
	key := filepath.Join(t.TempDir(), "kek")
	if err := encryption.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.EncryptionKey = "file:" + key
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: "correct horse battery staple"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()

	// One sealed blob, linked in a repository.
	md, err := meta.OpenSQLite(ctx, cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := encryption.OpenKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := encryption.OpenKeyring(ctx, md.Database(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := storage.OpenFS(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("layer "), 50000)
	d := digest.FromBytes(content)
	if _, err := encryption.NewBlobs(fs, keys).Put(ctx, d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := md.LinkBlob(ctx, "team/app", d, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	md.Close()

	without := config.Config{Data: cfg.Data}
	if _, err := checkOffline(ctx, without, true); err == nil || !strings.Contains(err.Error(), "--encryption-key") {
		t.Fatalf("fsck --data of an encrypted registry without its key: %v", err)
	}
	rep, err := checkOffline(ctx, config.Config{Data: cfg.Data, EncryptionKey: "file:" + key}, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsChecked != 1 || rep.Problems() != 0 || rep.BytesChecked != int64(len(content)) {
		t.Fatalf("fsck with the key: %+v", rep)
	}
}
