package migrate

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

// An encrypted registry moves from SQLite and the filesystem to PostgreSQL
// and S3 with its key: the target holds its blobs sealed, serves the same
// content with the same key, and its logins keep working (their password
// hashes are wrapped with the key); and it moves back the same way. Without the key, or with another one,
// berth migrate refuses.
func TestMigrateEncryptedSource(t *testing.T) {
	dir := t.TempDir()
	key, other := filepath.Join(dir, "kek"), filepath.Join(dir, "other")
	for _, k := range []string{key, other} {
		if err := encryption.GenerateKeyFile(k); err != nil {
			t.Fatal(err)
		}
	}
	f := fillRegistry(t, testutil.WithArgs("--encryption-key", "file:"+key))

	target := t.TempDir()
	_, err := Run(t.Context(), Options{FromData: f.dataDir, ToData: target})
	if err == nil || !strings.Contains(err.Error(), "--encryption-key") {
		t.Fatalf("migrate of an encrypted registry without its key: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(target, "*")); len(m) != 0 {
		t.Fatalf("the refused migration wrote %v", m)
	}
	if _, err := Run(t.Context(), Options{FromData: f.dataDir, ToData: t.TempDir(), EncryptionKey: "file:" + other}); err == nil {
		t.Fatal("migrate with another key than the source's succeeded")
	}

	pg := testutil.StartPostgres(t)
	s3 := testutil.StartS3(t)
	setS3Env(t, s3)
	url := s3.URL(s3.NewBucket(), "")
	dbURL := pg.NewDatabase()
	rep, err := Run(t.Context(), Options{FromData: f.dataDir, ToDatabase: dbURL, ToStorage: url, EncryptionKey: "file:" + key})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsCopied == 0 || rep.Rows["encryption_data_keys"] == 0 || rep.Rows["encryption_kek"] == 0 {
		t.Fatalf("report: %+v", rep)
	}
	// What S3 holds is sealed: no object's bytes match its digest.
	raw := s3Store(t, url)
	var objects int
	if err := raw.Walk(t.Context(), func(b storage.BlobInfo) error {
		r, err := raw.Open(t.Context(), b.Digest)
		if err != nil {
			return err
		}
		defer r.Close()
		got, err := digest.FromReader(r)
		if err != nil {
			return err
		}
		if got == b.Digest {
			t.Errorf("blob %s is stored in the clear in the target", b.Digest)
		}
		objects++
		_, err = io.Copy(io.Discard, r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if int64(objects) != rep.BlobsCopied {
		t.Fatalf("the target holds %d objects, %d blobs were copied", objects, rep.BlobsCopied)
	}

	srv := testutil.StartServer(t, testutil.WithPassword(ownerPassword),
		testutil.WithArgs("--database", dbURL, "--storage", url, "--encryption-key", "file:"+key), testutil.WithEnv(s3.Env()...))
	checkServed(t, srv, f, true)
	srv.Stop()

	// And back from PostgreSQL and S3 into a data directory.
	back := filepath.Join(t.TempDir(), "back")
	if _, err := Run(t.Context(), Options{FromDatabase: dbURL, FromStorage: url, ToData: back, EncryptionKey: "file:" + key}); err != nil {
		t.Fatal(err)
	}
	srv = testutil.StartServer(t, testutil.WithDataDir(back), testutil.WithPassword(ownerPassword), testutil.WithArgs("--encryption-key", "file:"+key))
	checkServed(t, srv, f, true)
}
