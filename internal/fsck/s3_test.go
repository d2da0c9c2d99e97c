package fsck

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

// fsck on S3: a damaged object (changed bytes, same size; or truncated)
// is found, copied into quarantine/ with its note and removed, so the blob
// reads as not stored; the check before serving refuses a damaged small
// blob the same way; pushing the blob again repairs it.
func TestCheckOnS3(t *testing.T) {
	ctx := context.Background()
	gw := testutil.StartS3(t)
	gw.SetEnv(t)
	bucket := gw.NewBucket()
	cfg, err := s3store.ParseURL(gw.URL(bucket, "reg"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	blobs := s3store.NewBlobs(st, s3store.NewDBSessions(md, storage.UploadLimits{}), md, s3store.BlobsOptions{})
	srv := httptest.NewServer(registry.New(registry.Options{Blobs: blobs, Meta: md, Authorizer: testutil.AllowAll{}}))
	defer srv.Close()
	send := func(method, path string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	overwrite := func(d digest.Digest, b []byte) {
		t.Helper()
		key := "reg/blobs/sha256/" + d.Encoded()[:2] + "/" + d.Encoded()
		if _, err := gw.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
	var contents [][]byte
	var ds []digest.Digest
	for _, n := range []int{2 << 20, 3 << 20, 1000} {
		b := make([]byte, n)
		rand.Read(b)
		d := digest.FromBytes(b)
		if got := send("POST", "/v2/app/blobs/uploads/?digest="+d.String(), b); got != http.StatusCreated {
			t.Fatalf("push: %d", got)
		}
		contents, ds = append(contents, b), append(ds, d)
	}
	changed := bytes.Clone(contents[0])
	changed[12345] ^= 1
	overwrite(ds[0], changed)
	overwrite(ds[1], contents[1][:1000])

	r, err := Check(ctx, md, blobs, Options{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DamagedBlobs) != 2 {
		t.Fatalf("damaged = %+v, want the changed and the truncated blob", r.DamagedBlobs)
	}
	for _, b := range r.DamagedBlobs {
		if !b.Quarantined || (b.Digest != ds[0] && b.Digest != ds[1]) {
			t.Errorf("damaged blob %+v", b)
		}
		if _, err := blobs.Stat(ctx, b.Digest); err == nil {
			t.Errorf("damaged blob %s still readable", b.Digest)
		}
	}
	if got := send("HEAD", "/v2/app/blobs/"+ds[0].String(), nil); got != http.StatusNotFound {
		t.Errorf("HEAD of a quarantined blob = %d, want 404", got)
	}

	// The check before serving: a changed byte in a small blob.
	small := bytes.Clone(contents[2])
	small[10] ^= 1
	overwrite(ds[2], small)
	if got := send("GET", "/v2/app/blobs/"+ds[2].String(), nil); got != http.StatusNotFound {
		t.Errorf("GET of a damaged small blob = %d, want 404", got)
	}

	q, err := blobs.Quarantined(ctx)
	if err != nil || len(q) != 3 {
		t.Fatalf("quarantined = %+v, %v; want 3", q, err)
	}
	out, err := gw.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("reg/" + q[0].Path)})
	if err != nil {
		t.Fatalf("quarantined object %s: %v", q[0].Path, err)
	}
	kept, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(kept, changed) && !bytes.Equal(kept, contents[1][:1000]) {
		t.Errorf("quarantine holds %d bytes, not the damaged content", len(kept))
	}

	// Pushing again repairs.
	for i, d := range ds {
		if got := send("POST", "/v2/app/blobs/uploads/?digest="+d.String(), contents[i]); got != http.StatusCreated {
			t.Fatalf("re-push: %d", got)
		}
	}
	if r, err := Check(ctx, md, blobs, Options{}); err != nil || r.Problems() != 0 {
		t.Fatalf("after re-push: %+v, %v", r, err)
	}
}
