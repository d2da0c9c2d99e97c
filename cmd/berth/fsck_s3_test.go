package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

// berth fsck --config on a configuration with blobs on S3 checks the
// bucket, not the (empty) blob directory: a truncated layer is reported
// and, with --repair, quarantined in the bucket.
func TestCLIFsckOfflineS3(t *testing.T) {
	ctx := context.Background()
	gw := testutil.StartS3(t)
	gw.SetEnv(t)
	bucket := gw.NewBucket()
	url := gw.URL(bucket, "reg")
	dir := t.TempDir()
	md, err := meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := s3store.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	blobs := s3store.NewBlobs(st, s3store.NewDBSessions(md, storage.UploadLimits{}), md, s3store.BlobsOptions{})
	layer := bytes.Repeat([]byte("layer "), 1000)
	ld := digest.FromBytes(layer)
	if _, err := blobs.Put(ctx, ld, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	if err := md.LinkBlob(ctx, "team/app", ld, int64(len(layer))); err != nil {
		t.Fatal(err)
	}
	md.Close()
	cfgFile := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(cfgFile, []byte("data: "+dir+"\nstorage: "+url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, nil)
	if out := c.ok("fsck", "--config", cfgFile); !strings.Contains(out, "Checked 1 blob(s)") || !strings.Contains(out, "No problems found") {
		t.Fatalf("healthy bucket: %s", out)
	}
	key := "reg/blobs/sha256/" + ld.Encoded()[:2] + "/" + ld.Encoded()
	if _, err := gw.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(layer[:1000])}); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.run("", "fsck", "--config", cfgFile, "--repair")
	if err == nil || !strings.Contains(out, ld.String()) {
		t.Fatalf("fsck of a truncated layer: %v\n%s", err, out)
	}
	if _, err := gw.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String(key)}); err == nil {
		t.Error("the damaged object is still in place after --repair")
	}
	q, err := blobs.Quarantined(ctx)
	if err != nil || len(q) != 1 || q[0].Digest != ld {
		t.Errorf("quarantined = %+v, %v", q, err)
	}
}
