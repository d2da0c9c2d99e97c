// Package e2e runs real OCI clients (docker through a private dockerd,
// podman, skopeo, go-containerregistry) and the OCI conformance suite
// against a berth server built from this module.
//
// The tests skip unless BERTH_E2E=1; with it, a missing client tool fails
// them. TestConformance runs only when BERTH_CONFORMANCE_BIN names a built
// conformance suite. scripts/test sets both.
//
// BERTH_E2E_REGISTRY=distribution runs the same tests against CNCF
// Distribution (Debian's docker-registry) instead of berth: a way to check
// that a failure is berth's and not the test's. Distribution lacks some of
// what berth promises (the referrers API, accepting an index whose children
// were never pushed), so those tests are expected to fail there.
package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-registry/berth/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// requireE2E skips the test unless BERTH_E2E=1.
func requireE2E(t *testing.T) {
	t.Helper()
	if !testutil.E2E() {
		t.Skip("end-to-end test: set BERTH_E2E=1 to run it (scripts/test does)")
	}
}

// startRegistry skips the test unless BERTH_E2E=1 and starts the registry
// under test.
func startRegistry(t *testing.T, opts ...testutil.Option) *testutil.Server {
	t.Helper()
	requireE2E(t)
	return newRegistry(t, opts...)
}

// newRegistry starts berth, or Distribution under BERTH_E2E_REGISTRY=distribution.
func newRegistry(t *testing.T, opts ...testutil.Option) *testutil.Server {
	t.Helper()
	switch r := os.Getenv("BERTH_E2E_REGISTRY"); r {
	case "", testutil.KindBerth:
		return testutil.StartServer(t, opts...)
	case testutil.KindDistribution:
		return testutil.StartDistribution(t, opts...)
	default:
		t.Fatalf("BERTH_E2E_REGISTRY=%q: want berth or distribution", r)
		return nil
	}
}

// verifyImage checks that img, as read back from a registry, is the image
// that was pushed: same manifest, config and layer digests, and every layer
// blob downloads in full and hashes to its digest (compressed) and diff ID
// (uncompressed).
func verifyImage(t *testing.T, img v1.Image, want testutil.ImageDigests) {
	t.Helper()
	got := testutil.DigestsOf(t, img)
	if got.Manifest != want.Manifest {
		t.Errorf("manifest digest = %s, want %s", got.Manifest, want.Manifest)
	}
	if got.Config != want.Config {
		t.Errorf("config digest = %s, want %s", got.Config, want.Config)
	}
	if !equalHashes(got.Layers, want.Layers) {
		t.Errorf("layer digests = %v, want %v", got.Layers, want.Layers)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatalf("read config blob: %v", err)
	}
	if h := sha256Hex(raw); h != want.Config.Hex {
		t.Errorf("config blob hashes to sha256:%s, want %s", h, want.Config)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if i >= len(want.Layers) {
			break
		}
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		verifyStream(t, fmt.Sprintf("layer %d", i), l.Compressed, want.Layers[i], size)
		verifyStream(t, fmt.Sprintf("layer %d uncompressed", i), l.Uncompressed, want.DiffIDs[i], -1)
	}
}

// verifyStream reads everything open returns and checks its digest and,
// unless size is negative, its length.
func verifyStream(t *testing.T, what string, open func() (io.ReadCloser, error), want v1.Hash, size int64) {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Errorf("%s: open: %v", what, err)
		return
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Errorf("%s: read after %d bytes: %v", what, n, err)
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		t.Errorf("%s: %d bytes hash to sha256:%s, want %s", what, n, got, want)
	}
	if size >= 0 && n != size {
		t.Errorf("%s: read %d bytes, want %d", what, n, size)
	}
}

func equalHashes(a, b []v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ociError is the error body of the distribution spec.
type ociError struct {
	Errors []struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	} `json:"errors"`
}

func (e ociError) codes() []string {
	var c []string
	for _, x := range e.Errors {
		c = append(c, x.Code)
	}
	return c
}

// exchange is a raw HTTP request and its response, kept whole so that a
// failing test can show exactly what went over the wire.
type exchange struct {
	req    *http.Request
	body   []byte
	resp   *http.Response
	result []byte
}

func (x exchange) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "> %s %s\n", x.req.Method, x.req.URL.RequestURI())
	for _, k := range slices.Sorted(maps.Keys(x.req.Header)) {
		v := x.req.Header[k]
		if k == "Authorization" {
			v = []string{"(redacted)"}
		}
		fmt.Fprintf(&b, "> %s: %s\n", k, strings.Join(v, ", "))
	}
	if len(x.body) > 0 {
		fmt.Fprintf(&b, ">\n> %s\n", truncate(x.body, 2048))
	}
	if x.resp != nil {
		fmt.Fprintf(&b, "< %s\n", x.resp.Status)
		for _, k := range slices.Sorted(maps.Keys(x.resp.Header)) {
			fmt.Fprintf(&b, "< %s: %s\n", k, strings.Join(x.resp.Header[k], ", "))
		}
		if len(x.result) > 0 {
			fmt.Fprintf(&b, "<\n< %s\n", truncate(x.result, 2048))
		}
	}
	return b.String()
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "...(truncated)"
	}
	return string(b)
}

// do sends one raw request with client, with the headers given as
// name, value pairs, and reads the whole response.
func do(t *testing.T, client *http.Client, method, url string, body []byte, header ...string) exchange {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	x := exchange{req: req, body: body}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	x.resp = resp
	if x.result, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s %s: read response: %v", method, url, err)
	}
	return x
}
