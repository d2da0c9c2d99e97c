package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/testutil"
)

// startS3Registry starts the berth binary with its blobs in a fresh bucket
// of a real S3 gateway (storage URL parameters in extra, e.g.
// "&redirect=true") and returns it with the gateway and bucket.
func startS3Registry(t *testing.T, extra string) (*testutil.Server, *testutil.S3Server, string) {
	t.Helper()
	requireE2E(t)
	gw := testutil.StartS3(t)
	bucket := gw.NewBucket()
	srv := testutil.StartServer(t, testutil.WithArgs("--storage", gw.URL(bucket, "reg")+extra), testutil.WithEnv(gw.Env()...))
	return srv, gw, bucket
}

// bucketBlobs counts the blob objects in the bucket.
func bucketBlobs(t *testing.T, gw *testutil.S3Server, bucket string) int {
	t.Helper()
	out, err := gw.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("reg/blobs/")})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Contents)
}

// blobUpload pushes content to repo by raw requests: monolithic (one POST
// with ?digest=) or chunked (POST, then PATCHes of chunk bytes with
// Content-Range, then the final PUT).
func blobUpload(t *testing.T, srv *testutil.Server, c *http.Client, repo string, content []byte, chunk int) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	do := func(method, url string, body []byte, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	base := srv.URL + "/v2/" + repo + "/blobs/uploads/"
	if chunk == 0 {
		if resp := do("POST", base+"?digest="+d.String(), content); resp.StatusCode != http.StatusCreated {
			t.Fatalf("monolithic upload: %s", resp.Status)
		}
		return d
	}
	resp := do("POST", base, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = srv.URL + loc
	}
	for off := 0; off < len(content); off += chunk {
		end := min(off+chunk, len(content))
		resp := do("PATCH", loc, content[off:end], "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("chunk at %d: %s", off, resp.Status)
		}
		if loc = resp.Header.Get("Location"); !strings.HasPrefix(loc, "http") {
			loc = srv.URL + loc
		}
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if resp := do("PUT", loc+sep+"digest="+d.String(), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("final PUT: %s", resp.Status)
	}
	return d
}

// TestS3Storage runs berth serve --storage s3://... against a real S3
// gateway: an image pushed and pulled with go-containerregistry, blobs
// pushed monolithic and in chunks that cross S3 part boundaries, all of it
// in the bucket and none on the local disk.
func TestS3Storage(t *testing.T) {
	srv, gw, bucket := startS3Registry(t, "")
	ctx := t.Context()
	opts := srv.RemoteOptions(ctx)

	img := testutil.RandomImage(t, 3, 6<<20)
	want := testutil.DigestsOf(t, img)
	ref := srv.Ref(t, "e2e/s3/image:v1")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	verifyImage(t, got, want)

	c := srv.Client(t, ctx, "repository:e2e/s3/raw:pull,push")
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"monolithic", 3 << 20, 0},
		{"monolithic, several parts", 40 << 20, 0},
		{"chunks smaller than a part", 5<<20 + 17, 1 << 20},
		{"chunks across parts", 37 << 20, 7 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := randomBytes(t, tc.size)
			d := blobUpload(t, srv, c, "e2e/s3/raw", content, tc.chunk)
			resp, err := c.Get(srv.URL + "/v2/e2e/s3/raw/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, content) {
				t.Fatalf("GET blob: %s, %d bytes (err %v), want %d bytes", resp.Status, len(body), err, len(content))
			}
		})
	}
	// 3 layers and a config, and the four raw blobs.
	if n := bucketBlobs(t, gw, bucket); n != 8 {
		t.Errorf("the bucket holds %d blobs, want 8", n)
	}
	if n := srv.CheckBlobStore(t); n != 0 {
		t.Errorf("%d blobs on the local disk, want none", n)
	}
	if strings.Contains(srv.Log(), gw.SecretKey) {
		t.Error("the server's log holds the S3 secret key")
	}
}

// TestS3Redirect: with redirect=true, GETs of large blobs are answered 307
// to a pre-signed URL that serves the blob without credentials, which
// go-containerregistry follows; HEAD and small blobs are answered by berth.
func TestS3Redirect(t *testing.T) {
	srv, _, _ := startS3Registry(t, "&redirect=true&redirect-ttl=10m")
	ctx := t.Context()
	img := testutil.RandomImage(t, 2, 3<<20)
	want := testutil.DigestsOf(t, img)
	ref := srv.Ref(t, "e2e/s3/redirect:v1")
	if err := remote.Write(ref, img, srv.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := remote.Image(ref, srv.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("pull through redirects: %v", err)
	}
	verifyImage(t, got, want)

	c := srv.Client(t, ctx, "repository:e2e/s3/redirect:pull")
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	layer := want.Layers[0]
	blobURL := srv.URL + "/v2/e2e/s3/redirect/blobs/" + layer.String()
	resp, err := c.Get(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" || strings.HasPrefix(loc, srv.URL) {
		t.Fatalf("GET of a layer = %s, Location %q; want 307 to the object store", resp.Status, loc)
	}
	// The pre-signed URL needs no credentials.
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digest.FromBytes(body) != digest.Digest(layer.String()) {
		t.Fatalf("pre-signed URL: %s, %d bytes not hashing to %s", resp.Status, len(body), layer)
	}
	req, _ := http.NewRequestWithContext(ctx, "HEAD", blobURL, nil)
	if resp, err = c.Do(req); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != layer.String() {
		t.Fatalf("HEAD of a layer = %v, %v; want 200 from berth", resp, err)
	}
	resp.Body.Close()
	// The config is small: hashed and served by berth itself.
	resp, err = c.Get(srv.URL + "/v2/e2e/s3/redirect/blobs/" + want.Config.String())
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET of the config = %v, %v; want 200 from berth", resp, err)
	}
	resp.Body.Close()
	// Without access there is no redirect either.
	anon, err := http.Get(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	anon.Body.Close()
	if anon.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET of a layer = %s, want 401", anon.Status)
	}
}
