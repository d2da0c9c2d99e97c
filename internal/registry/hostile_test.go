package registry

// Hostile input against the OCI data plane, at handler level: malformed
// requests of every kind must each get the right OCI error code and status,
// never a 5xx and never a hang; concurrent writers must leave consistent
// data; and a fuzz test (FuzzRegistryRequest) checks the same invariants on
// random requests.
//
// Every test here is deterministic: concurrency tests order their steps by
// observing the server (an upload's size as its status reports it), never by
// sleeping, and time appears only as generous upper bounds that catch hangs.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// hangLimit bounds every request of these tests: a registry that has not
// answered by then is hung. No test asserts anything shorter.
const hangLimit = 60 * time.Second

var hostileClient = &http.Client{Timeout: hangLimit}

// ociCodes are the error codes berth may answer with (errors.go).
var ociCodes = map[string]bool{
	"BLOB_UNKNOWN": true, "BLOB_UPLOAD_INVALID": true, "BLOB_UPLOAD_UNKNOWN": true, "DIGEST_INVALID": true,
	"MANIFEST_BLOB_UNKNOWN": true, "MANIFEST_INVALID": true, "MANIFEST_UNKNOWN": true, "NAME_INVALID": true,
	"NAME_UNKNOWN": true, "SIZE_INVALID": true, "UNAUTHORIZED": true, "DENIED": true, "UNSUPPORTED": true,
	"TOOMANYREQUESTS": true, "UNAVAILABLE": true, "UNKNOWN": true,
}

// hresp is a whole response.
type hresp struct {
	method string
	path   string
	status int
	header http.Header
	body   []byte
}

func (r hresp) String() string {
	return fmt.Sprintf("%s %s -> %d %s", r.method, truncate(r.path, 160), r.status, truncate(string(r.body), 300))
}

// code returns the first OCI error code of the body, or "".
func (r hresp) code() string {
	var eb errorBody
	if json.Unmarshal(r.body, &eb) != nil || len(eb.Errors) == 0 {
		return ""
	}
	return eb.Errors[0].Code
}

// ociErrorProblem says what is wrong with an error response as an OCI error
// body, or "" when it is a well-formed one. HEAD responses carry no body.
func ociErrorProblem(method string, status int, h http.Header, body []byte) string {
	if status < 400 || method == http.MethodHead {
		return ""
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Sprintf("error response has Content-Type %q, want application/json", ct)
	}
	var eb struct {
		Errors []struct {
			Code    *string         `json:"code"`
			Message *string         `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&eb); err != nil {
		return fmt.Sprintf("error body is not JSON: %v", err)
	}
	if dec.More() {
		return "error body has data after the JSON document"
	}
	if len(eb.Errors) == 0 {
		return "error body has no errors"
	}
	for _, e := range eb.Errors {
		if e.Code == nil || !ociCodes[*e.Code] {
			return fmt.Sprintf("error body has an unknown or missing code: %s", body)
		}
		if e.Message == nil {
			return "error body has an error without a message"
		}
	}
	if cl := h.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
		return fmt.Sprintf("Content-Length %s but the body has %d bytes", cl, len(body))
	}
	return ""
}

// hsend sends one request and reads the whole answer. header holds name,
// value pairs.
func hsend(t testing.TB, base, method, path string, body io.Reader, header ...string) hresp {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hostileClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (a hang or a dropped connection)", method, truncate(path, 160), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	return hresp{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}
}

func hsendString(t testing.TB, base, method, path, body string, header ...string) hresp {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return hsend(t, base, method, path, r, header...)
}

// expect checks status and, for errors, the OCI code and body shape. An
// empty code skips the code check.
func expect(t testing.TB, r hresp, status int, code string) {
	t.Helper()
	if r.status >= 500 {
		t.Errorf("server error: %s", r)
		return
	}
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r)
		return
	}
	if p := ociErrorProblem(r.method, r.status, r.header, r.body); p != "" {
		t.Errorf("%s: %s", p, r)
		return
	}
	if code != "" && r.method != http.MethodHead && r.code() != code {
		t.Errorf("code %q, want %q: %s", r.code(), code, r)
	}
}

// pushBlob stores content in repo with a monolithic upload.
func pushBlob(t testing.TB, base, repo, content string) digest.Digest {
	t.Helper()
	d := digest.FromString(content)
	r := hsendString(t, base, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content)
	if r.status != http.StatusCreated {
		t.Fatalf("push blob: %s", r)
	}
	return d
}

// startSession opens an upload session and returns its path.
func startSession(t testing.TB, base, repo string) string {
	t.Helper()
	r := hsendString(t, base, "POST", "/v2/"+repo+"/blobs/uploads/", "")
	if r.status != http.StatusAccepted {
		t.Fatalf("start upload: %s", r)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/"+repo+"/blobs/uploads/") {
		t.Fatalf("start upload: Location %q", loc)
	}
	return loc
}

// sessionSize reads an upload's size from its status.
func sessionSize(t testing.TB, base, loc string) int64 {
	t.Helper()
	r := hsendString(t, base, "GET", loc, "")
	if r.status != http.StatusNoContent {
		t.Fatalf("upload status: %s", r)
	}
	return rangeSize(t, r.header.Get("Range"))
}

// rangeSize turns an upload's Range header into its size; "0-0" is 0 (or 1,
// which the tests avoid by never holding exactly one byte).
func rangeSize(t testing.TB, rg string) int64 {
	t.Helper()
	a, b, ok := strings.Cut(rg, "-")
	end, err := strconv.ParseInt(b, 10, 64)
	if !ok || a != "0" || err != nil {
		t.Fatalf("bad Range %q", rg)
	}
	if end == 0 {
		return 0
	}
	return end + 1
}

func manifestFor(cfg, layer digest.Digest, cfgSize, layerSize int, annotation string) string {
	return fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}],"annotations":{"n":%q}}`,
		cfg, cfgSize, layer, layerSize, annotation)
}

// badDigests are malformed digests of every shape, each with a name.
func badDigests() [][2]string {
	hex64 := strings.Repeat("ab", 32)
	return [][2]string{
		{"uppercase hex", "sha256:" + strings.ToUpper(hex64)},
		{"mixed case hex", "sha256:" + strings.ToUpper(hex64[:10]) + hex64[10:]},
		{"63 hex", "sha256:" + hex64[:63]},
		{"65 hex", "sha256:" + hex64 + "a"},
		{"empty hex", "sha256:"},
		{"no hex no colon", "sha256"},
		{"non-hex", "sha256:" + strings.Repeat("g", 64)},
		{"unknown algorithm", "md5:" + hex64[:32]},
		{"unknown algorithm sha256 length", "sha1024:" + hex64},
		{"sha512 with sha256 length", "sha512:" + hex64},
		{"sha256 with sha512 length", "sha256:" + hex64 + hex64},
		{"uppercase algorithm", "SHA256:" + hex64},
		{"empty algorithm", ":" + hex64},
		{"double algorithm", "sha256:sha256:" + hex64},
		{"encoding suffix", "sha256+b64u:" + hex64},
		{"trailing space", "sha256:" + hex64 + " "},
		{"trailing NUL", "sha256:" + hex64 + "\x00"},
		{"trailing newline", "sha256:" + hex64 + "\n"},
		{"huge", "sha256:" + strings.Repeat("a", 100000)},
		{"only colon", ":"},
	}
}

// TestHostileDigests sends every malformed digest to every place a digest
// goes: blob and manifest paths, referrers, ?digest= of monolithic and
// chunked uploads. Each is 400 DIGEST_INVALID and stores nothing.
func TestHostileDigests(t *testing.T) {
	srv, dir := newTestRegistry(t, nil)
	base := srv.URL
	pushBlob(t, base, "r", "seed")
	for _, bd := range badDigests() {
		name, d := bd[0], bd[1]
		esc := url.PathEscape(d)
		q := url.QueryEscape(d)
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				method, path, body string
			}{
				{"GET", "/v2/r/blobs/" + esc, ""},
				{"HEAD", "/v2/r/blobs/" + esc, ""},
				{"DELETE", "/v2/r/blobs/" + esc, ""},
				{"GET", "/v2/r/referrers/" + esc, ""},
				{"POST", "/v2/r/blobs/uploads/?digest=" + q, "content"},
			} {
				expect(t, hsendString(t, base, c.method, c.path, c.body), http.StatusBadRequest, "DIGEST_INVALID")
			}
			// A manifest reference with a colon is a digest; without one it
			// is a tag ("sha256" is a fine tag), so only colon forms apply.
			if strings.Contains(d, ":") {
				for _, m := range []string{"GET", "HEAD", "DELETE", "PUT"} {
					r := hsendString(t, base, m, "/v2/r/manifests/"+esc, `{"schemaVersion":2}`, "Content-Type", ociManifest)
					expect(t, r, http.StatusBadRequest, "DIGEST_INVALID")
				}
			}
			// The final PUT of a chunked upload.
			loc := startSession(t, base, "r")
			expect(t, hsendString(t, base, "PUT", loc+"?digest="+q, "content"), http.StatusBadRequest, "DIGEST_INVALID")
			// A bad digest in ?mount= is not an error: the request falls
			// back to a plain upload session (202), as for any mount that
			// cannot be done.
			r := hsendString(t, base, "POST", "/v2/r/blobs/uploads/?mount="+q+"&from=r", "")
			expect(t, r, http.StatusAccepted, "")
		})
	}
	if n := countFiles(t, dir+"/blobs"); n != 1 {
		t.Errorf("blob store holds %d files after malformed uploads, want only the seed", n)
	}
}

// TestUnsupportedDigestAlgorithmRefused: docs/wire.md promises "Digests:
// sha256 and sha512", and errors.go tells clients "use sha256 or sha512".
// go-digest also knows sha384; berth must not store content under it (the
// OCI image spec registers only sha256 and sha512, and berth's own tooling,
// testutil.CheckBlobStore, treats a sha384 file as corruption).
func TestUnsupportedDigestAlgorithmRefused(t *testing.T) {
	srv, dir := newTestRegistry(t, nil)
	s := sha512.Sum384([]byte("x"))
	d := "sha384:" + hex.EncodeToString(s[:])
	r := hsendString(t, srv.URL, "POST", "/v2/r/blobs/uploads/?digest="+d, "x")
	expect(t, r, http.StatusBadRequest, "DIGEST_INVALID")

	loc := startSession(t, srv.URL, "r")
	expect(t, hsendString(t, srv.URL, "PUT", loc+"?digest="+d, "x"), http.StatusBadRequest, "DIGEST_INVALID")

	body := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	m := sha512.Sum384([]byte(body))
	md := "sha384:" + hex.EncodeToString(m[:])
	expect(t, hsendString(t, srv.URL, "PUT", "/v2/r/manifests/"+md, body, "Content-Type", "application/vnd.oci.image.index.v1+json"),
		http.StatusBadRequest, "DIGEST_INVALID")
	if n := countFiles(t, dir+"/blobs"); n != 0 {
		t.Errorf("blob store holds %d files stored under an unsupported algorithm", n)
	}
}

func countFiles(t testing.TB, root string) int {
	t.Helper()
	n := 0
	var walk func(string)
	walk = func(p string) {
		entries, err := os.ReadDir(p)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.IsDir() {
				walk(p + "/" + e.Name())
			} else {
				n++
			}
		}
	}
	walk(root)
	return n
}

// TestHostileUploads drives upload sessions with malformed and out-of-order
// requests: bad Content-Range forms, overlapping chunks, PATCH after PUT,
// PUT without digest, PUT with a body that breaks the digest, zero-length
// blobs, and session IDs that are not IDs.
func TestHostileUploads(t *testing.T) {
	srv, dir := newTestRegistry(t, nil)
	base := srv.URL
	data := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	d := digest.FromString(data)

	t.Run("bad Content-Range forms", func(t *testing.T) {
		loc := startSession(t, base, "r")
		r := hsendString(t, base, "PATCH", loc, data[:1000], "Content-Range", "0-999")
		expect(t, r, http.StatusAccepted, "")
		for _, cr := range []string{
			"abc", "5", "-5", "5-", "-", "999-", "4-2", "bytes=1000-", "1000-99999999999999999999",
			"1000-9223372036854775807", "99999999999999999999-1", "1000 - 1009", "1000--1009", "1000-+1009x",
			"bytes 1000-1009/10", "bytes */1000", "1000-1009,1010-1019", "0x3e8-0x3f1", "1e3-1009",
			"1000-1009\t1", "1000-1008", "1000-1010", "0-9", "999-1008", "1001-1010", "2000-2009",
		} {
			r := hsendString(t, base, "PATCH", loc, data[1000:1010], "Content-Range", cr)
			if r.status != http.StatusRequestedRangeNotSatisfiable && r.status != http.StatusBadRequest {
				t.Errorf("Content-Range %q: status %d, want 416 (or 400): %s", cr, r.status, r)
				continue
			}
			expect(t, r, r.status, "BLOB_UPLOAD_INVALID")
			if r.status == http.StatusRequestedRangeNotSatisfiable {
				if got := r.header.Get("Range"); got != "0-999" {
					t.Errorf("Content-Range %q: 416 with Range %q, want 0-999", cr, got)
				}
				if got := r.header.Get("Location"); got != loc {
					t.Errorf("Content-Range %q: 416 with Location %q, want %q", cr, got, loc)
				}
			}
		}
		if got := sessionSize(t, base, loc); got != 1000 {
			t.Fatalf("after refused chunks the upload holds %d bytes, want 1000", got)
		}
		// The session still works, and a final PUT with a bad Content-Range
		// is refused without ending it.
		r = hsendString(t, base, "PUT", loc+"?digest="+d.String(), data[1000:], "Content-Range", "5-10")
		expect(t, r, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID")
		r = hsendString(t, base, "PUT", loc+"?digest="+d.String(), data[1000:], "Content-Range", fmt.Sprintf("1000-%d", len(data)-1))
		expect(t, r, http.StatusCreated, "")
		got := hsendString(t, base, "GET", "/v2/r/blobs/"+d.String(), "")
		if got.status != 200 || string(got.body) != data {
			t.Fatalf("blob after chunked upload: %d, %d bytes", got.status, len(got.body))
		}
	})

	t.Run("overlapping chunk", func(t *testing.T) {
		loc := startSession(t, base, "r")
		expect(t, hsendString(t, base, "PATCH", loc, data[:5000], "Content-Range", "0-4999"), http.StatusAccepted, "")
		for _, cr := range [][2]int{{4000, 5999}, {0, 4999}, {4999, 5998}, {1, 5000}} {
			r := hsendString(t, base, "PATCH", loc, data[cr[0]:cr[1]+1], "Content-Range", fmt.Sprintf("%d-%d", cr[0], cr[1]))
			expect(t, r, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID")
			if r.header.Get("Range") != "0-4999" {
				t.Errorf("overlap %v: Range %q, want 0-4999", cr, r.header.Get("Range"))
			}
		}
		expect(t, hsendString(t, base, "PATCH", loc, data[5000:], "Content-Range", fmt.Sprintf("5000-%d", len(data)-1)), http.StatusAccepted, "")
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), ""), http.StatusCreated, "")
	})

	t.Run("PATCH and PUT after PUT", func(t *testing.T) {
		loc := startSession(t, base, "r")
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), data), http.StatusCreated, "")
		expect(t, hsendString(t, base, "PATCH", loc, "more"), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, hsendString(t, base, "PATCH", loc, "more", "Content-Range", fmt.Sprintf("%d-%d", len(data), len(data)+3)), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), ""), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, hsendString(t, base, "GET", loc, ""), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, hsendString(t, base, "DELETE", loc, ""), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	})

	t.Run("PUT without digest keeps the session", func(t *testing.T) {
		loc := startSession(t, base, "r")
		expect(t, hsendString(t, base, "PATCH", loc, data[:100]), http.StatusAccepted, "")
		for _, q := range []string{"", "?digest=", "?digest", "?Digest=" + d.String(), "?digest=&digest=" + d.String()} {
			expect(t, hsendString(t, base, "PUT", loc+q, data[100:]), http.StatusBadRequest, "DIGEST_INVALID")
		}
		if got := sessionSize(t, base, loc); got != 100 {
			t.Fatalf("after refused PUTs the upload holds %d bytes, want 100", got)
		}
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), data[100:]), http.StatusCreated, "")
	})

	t.Run("PUT with digest and extra body", func(t *testing.T) {
		other := "a blob of its own"
		od := digest.FromString(other)
		loc := startSession(t, base, "x")
		expect(t, hsendString(t, base, "PATCH", loc, other), http.StatusAccepted, "")
		// The digest names the PATCHed content, but the PUT adds a body.
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+od.String(), "extra"), http.StatusBadRequest, "DIGEST_INVALID")
		expect(t, hsendString(t, base, "HEAD", "/v2/x/blobs/"+od.String(), ""), http.StatusNotFound, "")
		// The spec ends the session on a failed PUT.
		expect(t, hsendString(t, base, "GET", loc, ""), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		// Monolithic: the body is longer than the content the digest names.
		expect(t, hsendString(t, base, "POST", "/v2/x/blobs/uploads/?digest="+od.String(), other+"extra"), http.StatusBadRequest, "DIGEST_INVALID")
		expect(t, hsendString(t, base, "HEAD", "/v2/x/blobs/"+od.String(), ""), http.StatusNotFound, "")
	})

	t.Run("zero-length blobs", func(t *testing.T) {
		empty := digest.FromString("")
		expect(t, hsendString(t, base, "POST", "/v2/z/blobs/uploads/?digest="+empty.String(), ""), http.StatusCreated, "")
		r := hsendString(t, base, "HEAD", "/v2/z/blobs/"+empty.String(), "")
		expect(t, r, http.StatusOK, "")
		if r.header.Get("Content-Length") != "0" || r.header.Get("Docker-Content-Digest") != empty.String() {
			t.Errorf("HEAD empty blob: headers %v", r.header)
		}
		r = hsendString(t, base, "GET", "/v2/z/blobs/"+empty.String(), "")
		if r.status != 200 || len(r.body) != 0 {
			t.Errorf("GET empty blob: %s", r)
		}
		// Chunked, with no chunk at all and with an empty chunk.
		loc := startSession(t, base, "z2")
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+empty.String(), ""), http.StatusCreated, "")
		loc = startSession(t, base, "z3")
		expect(t, hsendString(t, base, "PATCH", loc, ""), http.StatusAccepted, "")
		expect(t, hsendString(t, base, "PUT", loc+"?digest="+empty.String(), ""), http.StatusCreated, "")
		expect(t, hsendString(t, base, "HEAD", "/v2/z3/blobs/"+empty.String(), ""), http.StatusOK, "")
		// An empty body with a non-empty digest, and "0-0" claiming one byte
		// with none sent.
		expect(t, hsendString(t, base, "POST", "/v2/z/blobs/uploads/?digest="+d.String(), ""), http.StatusBadRequest, "DIGEST_INVALID")
		loc = startSession(t, base, "z4")
		expect(t, hsendString(t, base, "PATCH", loc, "", "Content-Range", "0-0"), http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID")
		// A range on an empty blob is unsatisfiable, not a crash.
		r = hsendString(t, base, "GET", "/v2/z/blobs/"+empty.String(), "", "Range", "bytes=0-0")
		if r.status >= 500 {
			t.Errorf("range on empty blob: %s", r)
		}
	})

	t.Run("session IDs that are not IDs", func(t *testing.T) {
		loc := startSession(t, base, "r")
		id := loc[strings.LastIndex(loc, "/")+1:]
		for _, bad := range []string{
			strings.ToUpper(id), id[:31], id + "0", id + "%00", "..", "%2e%2e", ".", "%2F", strings.Repeat("0", 32),
			strings.Repeat("a", 5000), "..%2F..%2Fblobs", id + "%2F..",
		} {
			for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
				r := hsendString(t, base, m, "/v2/r/blobs/uploads/"+bad+"?digest="+d.String(), "x")
				if r.status >= 500 || r.status < 400 {
					t.Errorf("%s upload %q: %s", m, truncate(bad, 40), r)
					continue
				}
				expect(t, r, r.status, "")
			}
		}
		// Another repository's session is unknown here, for every method.
		for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
			r := hsendString(t, base, m, strings.Replace(loc, "/v2/r/", "/v2/other/", 1)+"?digest="+d.String(), data)
			expect(t, r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		}
		if got := sessionSize(t, base, loc); got != 0 {
			t.Fatalf("session touched by requests on other paths: %d bytes", got)
		}
		expect(t, hsendString(t, base, "POST", loc, ""), http.StatusMethodNotAllowed, "UNSUPPORTED")
	})

	if n := countFiles(t, dir+"/tmp"); n != 0 {
		t.Errorf("%d temporary files left behind", n)
	}
}

// unsizedReader hides the length of its reader, so the client sends it
// with chunked transfer encoding (no Content-Length).
type unsizedReader struct{ io.Reader }

// TestChunkedPatchMustMatchContentRange: a chunk's Content-Range says which
// bytes it carries. With a Content-Length berth checks the two agree (416
// otherwise); with chunked transfer encoding it does not, and stores a chunk
// of any length under any range.
func TestChunkedPatchMustMatchContentRange(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	for _, n := range []int{100, 5} {
		loc := startSession(t, base, "r")
		r := hsend(t, base, "PATCH", loc, unsizedReader{strings.NewReader(strings.Repeat("x", n))}, "Content-Range", "0-9")
		if r.status == http.StatusAccepted {
			t.Errorf("chunk of %d bytes sent as Content-Range 0-9 (chunked encoding) was stored; Range %q", n, r.header.Get("Range"))
			continue
		}
		if r.status != http.StatusRequestedRangeNotSatisfiable && r.status != http.StatusBadRequest {
			t.Errorf("chunk of %d bytes as 0-9: %s", n, r)
			continue
		}
		expect(t, r, r.status, "BLOB_UPLOAD_INVALID")
	}
}

// TestBlobRangeErrorIsOCIError: the distribution spec answers every failed
// request with an error body of its own shape, including a GET of a blob
// with an unsatisfiable Range, which net/http's ServeContent would answer
// in text/plain.
func TestBlobRangeErrorIsOCIError(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	d := pushBlob(t, srv.URL, "r", "0123456789")
	for _, rg := range []string{"bytes=100-200", "bytes=20-"} {
		r := hsendString(t, srv.URL, "GET", "/v2/r/blobs/"+d.String(), "", "Range", rg)
		expect(t, r, http.StatusRequestedRangeNotSatisfiable, "")
	}
}

// manifestCase is one manifest PUT and what it must get.
type manifestCase struct {
	name        string
	contentType string
	body        string
	status      int
	code        string
}

// TestHostileManifests PUTs manifests that are valid JSON with wrong types,
// null or missing parts, huge arrays, deep nesting, duplicate keys, a BOM,
// non-UTF-8 bytes and mismatched media types.
func TestHostileManifests(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg, layer := "{}", "layer-content"
	cd, ld := pushBlob(t, base, "r", cfg), pushBlob(t, base, "r", layer)
	unknown := digest.FromString("never pushed")
	good := manifestFor(cd, ld, len(cfg), len(layer), "good")
	cfgDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d}`, cd, len(cfg))
	layerDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}`, ld, len(layer))
	unknownDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1}`, unknown)
	img := func(fields string) string {
		return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"` + fields + `}`
	}
	const oci, idx = ociManifest, "application/vnd.oci.image.index.v1+json"
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	deepObj := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)

	cases := []manifestCase{
		{"good", oci, good, 201, ""},
		// valid JSON, wrong types
		{"schemaVersion string", oci, `{"schemaVersion":"2","mediaType":"` + oci + `","config":` + cfgDesc + `,"layers":[]}`, 400, "MANIFEST_INVALID"},
		{"schemaVersion float", oci, `{"schemaVersion":2.5,"mediaType":"` + oci + `","config":` + cfgDesc + `,"layers":[]}`, 400, "MANIFEST_INVALID"},
		{"schemaVersion huge", oci, `{"schemaVersion":99999999999999999999999,"config":` + cfgDesc + `}`, 400, "MANIFEST_INVALID"},
		{"schemaVersion 1", oci, `{"schemaVersion":1,"config":` + cfgDesc + `,"layers":[]}`, 400, "MANIFEST_INVALID"},
		{"mediaType number", oci, `{"schemaVersion":2,"mediaType":7,"config":` + cfgDesc + `}`, 400, "MANIFEST_INVALID"},
		{"config string", oci, img(`,"config":"` + cd.String() + `","layers":[]`), 400, "MANIFEST_INVALID"},
		{"config array", oci, img(`,"config":[` + cfgDesc + `],"layers":[]`), 400, "MANIFEST_INVALID"},
		{"config null", oci, img(`,"config":null,"layers":[` + layerDesc + `]`), 400, "MANIFEST_INVALID"},
		{"config missing", oci, img(`,"layers":[` + layerDesc + `]`), 400, "MANIFEST_INVALID"},
		{"config empty object", oci, img(`,"config":{},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"layers object", oci, img(`,"config":` + cfgDesc + `,"layers":` + layerDesc), 400, "MANIFEST_INVALID"},
		{"layers of strings", oci, img(`,"config":` + cfgDesc + `,"layers":["` + ld.String() + `"]`), 400, "MANIFEST_INVALID"},
		{"layers containing null", oci, img(`,"config":` + cfgDesc + `,"layers":[null]`), 400, "MANIFEST_INVALID"},
		{"size string", oci, img(`,"config":{"mediaType":"a/b","digest":"` + cd.String() + `","size":"2"},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"size float", oci, img(`,"config":{"mediaType":"a/b","digest":"` + cd.String() + `","size":2.5},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"size overflow", oci, img(`,"config":{"mediaType":"a/b","digest":"` + cd.String() + `","size":99999999999999999999},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"size negative", oci, img(`,"config":{"mediaType":"a/b","digest":"` + cd.String() + `","size":-1},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"digest number", oci, img(`,"config":{"mediaType":"a/b","digest":5,"size":2},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"digest invalid", oci, img(`,"config":{"mediaType":"a/b","digest":"sha256:XYZ","size":2},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"digest empty", oci, img(`,"config":{"mediaType":"a/b","digest":"","size":2},"layers":[]`), 400, "MANIFEST_INVALID"},
		{"annotations with number", oci, img(`,"config":` + cfgDesc + `,"layers":[],"annotations":{"a":1}`), 400, "MANIFEST_INVALID"},
		{"annotations array", oci, img(`,"config":` + cfgDesc + `,"layers":[],"annotations":["a"]`), 400, "MANIFEST_INVALID"},
		{"subject string", oci, img(`,"config":` + cfgDesc + `,"layers":[],"subject":"x"`), 400, "MANIFEST_INVALID"},
		{"subject bad digest", oci, img(`,"config":` + cfgDesc + `,"layers":[],"subject":{"mediaType":"` + oci + `","digest":"sha256:00","size":1}`), 400, "MANIFEST_INVALID"},
		{"JSON null", oci, `null`, 400, "MANIFEST_INVALID"},
		{"JSON array", oci, `[]`, 400, "MANIFEST_INVALID"},
		{"JSON string", oci, `"manifest"`, 400, "MANIFEST_INVALID"},
		{"empty body", oci, ``, 400, "MANIFEST_INVALID"},
		{"whitespace body", oci, " \n\t", 400, "MANIFEST_INVALID"},
		{"two documents", oci, good + good, 400, "MANIFEST_INVALID"},
		{"trailing garbage", oci, good + "x", 400, "MANIFEST_INVALID"},
		{"truncated", oci, good[:len(good)-1], 400, "MANIFEST_INVALID"},
		// missing blobs, and big arrays of them
		{"unknown layer", oci, img(`,"config":` + cfgDesc + `,"layers":[` + unknownDesc + `]`), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"10000 unknown layers", oci, img(`,"config":` + cfgDesc + `,"layers":[` + strings.TrimSuffix(strings.Repeat(unknownDesc+",", 10000), ",") + `]`), 400, "MANIFEST_BLOB_UNKNOWN"},
		// nesting
		{"deeply nested array", oci, img(`,"config":` + cfgDesc + `,"layers":[],"x":` + deep), 400, "MANIFEST_INVALID"},
		{"deeply nested object", oci, img(`,"config":` + cfgDesc + `,"layers":[],"x":` + deepObj), 400, "MANIFEST_INVALID"},
		{"deep nesting in annotations", oci, img(`,"config":` + cfgDesc + `,"layers":[],"annotations":` + deep), 400, "MANIFEST_INVALID"},
		// encodings
		{"BOM prefix", oci, "\xef\xbb\xbf" + good, 400, "MANIFEST_INVALID"},
		{"UTF-16", oci, "\xff\xfe{\x00}\x00", 400, "MANIFEST_INVALID"},
		{"NUL byte outside strings", oci, good[:1] + "\x00" + good[1:], 400, "MANIFEST_INVALID"},
		// media types
		{"Content-Type index, body image", idx, good, 400, "MANIFEST_INVALID"},
		{"Content-Type docker, body OCI", "application/vnd.docker.distribution.manifest.v2+json", good, 400, "MANIFEST_INVALID"},
		{"Content-Type unknown", "application/json", good, 400, "MANIFEST_INVALID"},
		{"Content-Type garbage", "garbage/type;;;=", good, 400, "MANIFEST_INVALID"},
		{"no Content-Type, no mediaType", "", `{"schemaVersion":2,"config":` + cfgDesc + `,"layers":[]}`, 400, "MANIFEST_INVALID"},
		{"no Content-Type, body mediaType", "", good, 201, ""},
		{"Content-Type with parameters", oci + "; charset=utf-8", good, 201, ""},
		{"index with config", idx, `{"schemaVersion":2,"mediaType":"` + idx + `","config":` + cfgDesc + `,"manifests":[]}`, 400, "MANIFEST_INVALID"},
		{"index with layers", idx, `{"schemaVersion":2,"mediaType":"` + idx + `","layers":[` + layerDesc + `],"manifests":[]}`, 400, "MANIFEST_INVALID"},
		{"index manifests null entry", idx, `{"schemaVersion":2,"mediaType":"` + idx + `","manifests":[null]}`, 400, "MANIFEST_INVALID"},
		{"image with manifests", oci, img(`,"config":` + cfgDesc + `,"layers":[],"manifests":[` + layerDesc + `]`), 400, "MANIFEST_INVALID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h []string
			if c.contentType != "" {
				h = []string{"Content-Type", c.contentType}
			}
			r := hsendString(t, base, "PUT", "/v2/r/manifests/t", c.body, h...)
			expect(t, r, c.status, c.code)
		})
	}

	t.Run("28000 layers", func(t *testing.T) {
		// Close to the 4 MiB limit, every layer one the repository has.
		body := img(`,"config":` + cfgDesc + `,"layers":[` + strings.TrimSuffix(strings.Repeat(layerDesc+",", 28000), ",") + `]`)
		if len(body) > MaxManifestSize {
			t.Fatalf("test manifest is %d bytes", len(body))
		}
		r := hsendString(t, base, "PUT", "/v2/r/manifests/huge", body, "Content-Type", oci)
		expect(t, r, http.StatusCreated, "")
		checkManifestRoundTrip(t, base, "r", "huge", body)
	})

	// Anything stored must read back byte for byte under its digest; what
	// berth does with duplicate keys or invalid UTF-8 it must do
	// consistently: no 5xx, and no stored manifest that differs from
	// what was pushed.
	for _, c := range []manifestCase{
		{name: "duplicate layers key, last empty", body: img(`,"config":` + cfgDesc + `,"layers":[` + unknownDesc + `],"layers":[]`)},
		{name: "duplicate layers key, last unknown", body: img(`,"config":` + cfgDesc + `,"layers":[],"layers":[` + unknownDesc + `]`)},
		{name: "duplicate mediaType key", body: `{"schemaVersion":2,"mediaType":"` + idx + `","mediaType":"` + oci + `","config":` + cfgDesc + `,"layers":[]}`},
		{name: "case-folded duplicate key", body: img(`,"config":` + cfgDesc + `,"layers":[` + unknownDesc + `],"LAYERS":[]`)},
		{name: "non-UTF-8 annotation", body: img(`,"config":` + cfgDesc + `,"layers":[],"annotations":{"a":"\xff\xfe\xc0"}`)},
		{name: "non-UTF-8 key", body: img(`,"config":` + cfgDesc + `,"layers":[],"annotations":{"\xff":"x"}`)},
		{name: "escaped NUL", body: img(`,"config":` + cfgDesc + `,"layers":[],"annotations":{"a":"\u0000"}`)},
		{name: "lone surrogate", body: img(`,"config":` + cfgDesc + `,"layers":[],"annotations":{"a":"\ud800"}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := hsendString(t, base, "PUT", "/v2/r/manifests/odd", c.body, "Content-Type", oci)
			t.Logf("answered %d %s", r.status, truncate(string(r.body), 200))
			switch r.status {
			case http.StatusCreated:
				checkManifestRoundTrip(t, base, "r", "odd", c.body)
			case http.StatusBadRequest:
				expect(t, r, 400, "")
			default:
				t.Errorf("status %d: %s", r.status, r)
			}
		})
	}
}

// TestManifestKeyCaseDoesNotHideMissingBlobs: docs/wire.md promises that an
// image manifest whose layers are missing from the repository is refused
// with MANIFEST_BLOB_UNKNOWN. JSON keys are case-sensitive, and so is every
// client that is not Go's encoding/json, which matches keys without regard
// to case: a manifest with "layers":[<missing blob>] followed by "LAYERS":[]
// is read by berth as having no layers, stored, and then served to clients
// that see a layer the repository does not have. Likewise "Config" can
// replace the config berth checks.
func TestManifestKeyCaseDoesNotHideMissingBlobs(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg := "{}"
	cd := pushBlob(t, base, "r", cfg)
	missing := digest.FromString("never pushed")
	cfgDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d}`, cd, len(cfg))
	missingDesc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1}`, missing)
	for _, body := range []string{
		`{"schemaVersion":2,"mediaType":"` + ociManifest + `","config":` + cfgDesc + `,"layers":[` + missingDesc + `],"LAYERS":[]}`,
		`{"schemaVersion":2,"mediaType":"` + ociManifest + `","config":` + missingDesc + `,"Config":` + cfgDesc + `,"layers":[]}`,
	} {
		r := hsendString(t, base, "PUT", "/v2/r/manifests/v1", body, "Content-Type", ociManifest)
		if r.status == http.StatusCreated {
			t.Errorf("a manifest whose (case-sensitive) layers/config name a missing blob was stored: %s\n%s", r, body)
			continue
		}
		expect(t, r, http.StatusBadRequest, "")
	}
}

// checkManifestRoundTrip GETs ref and checks that it is body, byte for byte,
// with the digest of body in Docker-Content-Digest.
func checkManifestRoundTrip(t testing.TB, base, repo, ref, body string) {
	t.Helper()
	want := digest.FromString(body)
	for _, ref := range []string{ref, want.String()} {
		r := hsendString(t, base, "GET", "/v2/"+repo+"/manifests/"+ref, "")
		if r.status != 200 {
			t.Errorf("GET %s: %s", ref, r)
			continue
		}
		if !bytes.Equal(r.body, []byte(body)) {
			t.Errorf("GET %s: content differs from what was pushed (%d vs %d bytes)", ref, len(r.body), len(body))
		}
		if got := r.header.Get("Docker-Content-Digest"); got != want.String() {
			t.Errorf("GET %s: Docker-Content-Digest %s, want %s", ref, got, want)
		}
		if got := digest.FromBytes(r.body); got != want {
			t.Errorf("GET %s: content hashes to %s, want %s", ref, got, want)
		}
	}
}

// TestHostileTags: tags at the 128-character limit and one past it, and
// tags of every invalid shape, as a PUT reference and in ?tag=.
func TestHostileTags(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg, layer := "{}", "l"
	cd, ld := pushBlob(t, base, "r", cfg), pushBlob(t, base, "r", layer)
	man := manifestFor(cd, ld, len(cfg), len(layer), "tags")
	md := digest.FromString(man)
	ct := []string{"Content-Type", ociManifest}

	t128 := "T" + strings.Repeat("a", 127)
	t129 := t128 + "a"
	expect(t, hsendString(t, base, "PUT", "/v2/r/manifests/"+t128, man, ct...), http.StatusCreated, "")
	expect(t, hsendString(t, base, "GET", "/v2/r/manifests/"+t128, ""), http.StatusOK, "")
	expect(t, hsendString(t, base, "PUT", "/v2/r/manifests/"+t129, man, ct...), http.StatusBadRequest, "MANIFEST_INVALID")
	expect(t, hsendString(t, base, "GET", "/v2/r/manifests/"+t129, ""), http.StatusNotFound, "MANIFEST_UNKNOWN")
	expect(t, hsendString(t, base, "DELETE", "/v2/r/manifests/"+t129, ""), http.StatusNotFound, "MANIFEST_UNKNOWN")
	expect(t, hsendString(t, base, "PUT", "/v2/r/manifests/"+md.String()+"?tag="+t128+"&tag=_x", man, ct...), http.StatusCreated, "")

	for _, bad := range []string{
		t129, strings.Repeat("a", 10000), ".hidden", "-dash", "a b", "\u00e9t\u00e9", "a\x00", "a\n", "a\r\nb", "a/b", "a*", "a+b",
		"a~b", "a%", ".", "..", "a:", "a@b", "\uff41",
	} {
		for _, m := range []string{"PUT", "GET", "HEAD", "DELETE"} {
			r := hsendString(t, base, m, "/v2/r/manifests/"+url.PathEscape(bad), man, ct...)
			if r.status >= 500 || r.status < 400 || r.status == http.StatusMethodNotAllowed {
				t.Errorf("%s tag %q: %s", m, truncate(bad, 40), r)
				continue
			}
			expect(t, r, r.status, "")
		}
		r := hsendString(t, base, "PUT", "/v2/r/manifests/"+md.String()+"?tag="+url.QueryEscape(bad), man, ct...)
		expect(t, r, http.StatusBadRequest, "MANIFEST_INVALID")
	}
	// Nothing that was refused was tagged.
	r := hsendString(t, base, "GET", "/v2/r/tags/list", "")
	var tl struct{ Tags []string }
	if err := json.Unmarshal(r.body, &tl); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tl.Tags, ",") != t128+",_x" {
		t.Errorf("tags = %v, want only the two valid ones", tl.Tags)
	}
}

// TestHostileRepositoryNames: names at the 255-character limit and one past
// it, and names with every class of invalid character, on every route.
func TestHostileRepositoryNames(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	// 255 characters in components of a legal shape.
	n255 := strings.Repeat("abcdefghi/", 25) + "abcde"
	if len(n255) != 255 || !ValidRepositoryName(n255) {
		t.Fatalf("bad test name of %d characters", len(n255))
	}
	n256 := n255 + "f"
	pushBlob(t, base, n255, "at the limit")
	expect(t, hsendString(t, base, "GET", "/v2/"+n255+"/tags/list", ""), http.StatusOK, "")
	expect(t, hsendString(t, base, "GET", "/v2/"+strings.Repeat("a", 255)+"/tags/list", ""), http.StatusNotFound, "NAME_UNKNOWN")

	bad := []string{
		n256, strings.Repeat("a", 256), strings.Repeat("a/", 200) + "a", strings.Repeat("a", 100000),
		// upper case and non-ASCII
		"Upper", "a/B", "%C3%A9t%C3%A9", "%EF%BD%81" /* fullwidth a */, "a%CC%81", "%E2%80%8Ba", /* zero-width space */
		// separators in the wrong places
		"-a", "a-", "_a", "a_", ".a", "a.", "a..b", "a.-b", "a___b", "a._b", "a/", "/a", "a//b", "a/-b", "a/.b",
		// path tricks
		".", "..", "a/..", "a/../b", "a/./b", "%2e%2e", "a/%2e%2e/b", "%2E", "a%2F..%2Fb",
		// characters outside the grammar
		"a%20b", "a%09b", "a%00b", "a%0Ab", "a%0D%0Ab", "a:b", "a@b", "a*b", "a!b", "a~b", "a+b", "a=b", "a,b", "a;b",
		"a%25b", "a%5Cb", "a%3Fb", "a%23b", "a'b", "a%22b", "a%3Cb%3E", "a$b", "a&b", "a(b)", "a%7Cb", "a%60b", "a%7Fb",
		"a%FFb", "a%C0%AFb",
	}
	routes := []struct{ method, suffix string }{
		{"GET", "/tags/list"}, {"GET", "/manifests/latest"}, {"HEAD", "/manifests/latest"}, {"PUT", "/manifests/latest"},
		{"DELETE", "/manifests/latest"}, {"GET", "/blobs/" + digest.FromString("x").String()},
		{"POST", "/blobs/uploads/"}, {"GET", "/blobs/uploads/00000000000000000000000000000000"},
		{"GET", "/referrers/" + digest.FromString("x").String()},
	}
	for _, name := range bad {
		for _, rt := range routes {
			r := hsendString(t, base, rt.method, "/v2/"+name+rt.suffix, "{}")
			expect(t, r, http.StatusBadRequest, "NAME_INVALID")
		}
	}
	// Nothing was created under any of those names.
	r := hsendString(t, base, "GET", "/v2/_catalog", "")
	var cat struct{ Repositories []string }
	if err := json.Unmarshal(r.body, &cat); err != nil {
		t.Fatal(err)
	}
	if len(cat.Repositories) != 1 || cat.Repositories[0] != n255 {
		t.Errorf("catalog = %v, want only the 255-character repository", cat.Repositories)
	}
	// The mount source name is checked too: an invalid one falls back to a
	// plain upload.
	for _, from := range []string{n256, "..", "A", "a//b"} {
		r := hsendString(t, base, "POST", "/v2/m/blobs/uploads/?mount="+digest.FromString("at the limit").String()+"&from="+url.QueryEscape(from), "")
		expect(t, r, http.StatusAccepted, "")
	}
}

// TestHostileQueryStrings: n and last of every odd shape on the tag list and
// the catalog. A bad n is the client's fault (4xx, never 5xx); odd "last"
// values are just strings to compare against.
func TestHostileQueryStrings(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg, layer := "{}", "l"
	cd, ld := pushBlob(t, base, "r", cfg), pushBlob(t, base, "r", layer)
	man := manifestFor(cd, ld, len(cfg), len(layer), "q")
	for _, tag := range []string{"a", "b", "c"} {
		expect(t, hsendString(t, base, "PUT", "/v2/r/manifests/"+tag, man, "Content-Type", ociManifest), http.StatusCreated, "")
	}
	for _, path := range []string{"/v2/r/tags/list", "/v2/_catalog"} {
		for _, q := range []string{
			"n=-1", "n=-9223372036854775808", "n=99999999999999999999", "n=abc", "n=1.5", "n=1e3", "n=%00", "n=0x10", "n=%201", "n=+2",
		} {
			r := hsendString(t, base, "GET", path+"?"+q, "")
			if r.status < 400 || r.status >= 500 {
				t.Errorf("%s?%s: status %d, want a 4xx: %s", path, q, r.status, r)
				continue
			}
			expect(t, r, r.status, "")
			// RFC 9110 §15.5.6: a 405 MUST carry Allow. (And 405 says the
			// method is wrong, where it is the parameter that is.)
			if r.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Errorf("%s?%s: 405 without an Allow header (a bad query parameter is a 400): %s", path, q, r)
			}
		}
		for _, q := range []string{
			"n=0", "n=", "n=%2B2", "n=1&n=-1", "n=10001", "n=2147483648", "last=", "last=%00", "last=%FF%FE", "last=" + strings.Repeat("z", 20000),
			"last=%27%3B%20DROP%20TABLE%20tags%3B--", "last=%25", "last=_", "last=a&last=b", "last=%E2%80%8B", "n=1&last=%0D%0ALink:%20x",
		} {
			r := hsendString(t, base, "GET", path+"?"+q, "")
			expect(t, r, http.StatusOK, "")
			if !json.Valid(r.body) {
				t.Errorf("%s?%s: body is not JSON: %s", path, q, r)
			}
			if l := r.header.Get("Link"); strings.ContainsAny(l, "\r\n") {
				t.Errorf("%s?%s: Link header with a line break: %q", path, q, l)
			}
		}
	}
	// n=1 pages through with a Link that round-trips an awkward "last".
	r := hsendString(t, base, "GET", "/v2/r/tags/list?n=1&last=a", "")
	expect(t, r, 200, "")
	if !strings.Contains(string(r.body), `"b"`) || !strings.Contains(r.header.Get("Link"), "last=b") {
		t.Errorf("paging: %s Link %q", r, r.header.Get("Link"))
	}
}

// TestHostileReferrers: the artifactType filter with quotes, SQL wildcards,
// control characters and huge values is an exact-match string, never an
// error; subjects of every bad shape are 400.
func TestHostileReferrers(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg, layer := "{}", "l"
	cd, ld := pushBlob(t, base, "r", cfg), pushBlob(t, base, "r", layer)
	subject := manifestFor(cd, ld, len(cfg), len(layer), "subject")
	sd := digest.FromString(subject)
	expect(t, hsendString(t, base, "PUT", "/v2/r/manifests/s", subject, "Content-Type", ociManifest), http.StatusCreated, "")
	ref := func(at string) string {
		return fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","artifactType":%q,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"%s","digest":"%s","size":%d}}`,
			ociManifest, at, cd, ociManifest, sd, len(subject))
	}
	weird := []string{"application/vnd.a", "application/vnd.%", "application/vnd._", "a'b\"c", "x\r\ny", "\u00e9\u2028", "a\\b", "*"}
	for i, at := range weird {
		r := hsendString(t, base, "PUT", fmt.Sprintf("/v2/r/manifests/ref%d", i), ref(at), "Content-Type", ociManifest)
		expect(t, r, http.StatusCreated, "")
		if r.header.Get("OCI-Subject") != sd.String() {
			t.Errorf("OCI-Subject %q", r.header.Get("OCI-Subject"))
		}
	}
	list := func(q string) []meta.Referrer {
		t.Helper()
		r := hsendString(t, base, "GET", "/v2/r/referrers/"+sd.String()+q, "")
		expect(t, r, http.StatusOK, "")
		if ct := r.header.Get("Content-Type"); ct != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("referrers%s: Content-Type %q", q, ct)
		}
		var idx struct {
			SchemaVersion int
			Manifests     []meta.Referrer
		}
		if err := json.Unmarshal(r.body, &idx); err != nil || idx.SchemaVersion != 2 || idx.Manifests == nil {
			t.Errorf("referrers%s: body %s", q, r.body)
		}
		if q != "" && r.header.Get("OCI-Filters-Applied") != "artifactType" {
			t.Errorf("referrers%s: OCI-Filters-Applied %q", q, r.header.Get("OCI-Filters-Applied"))
		}
		return idx.Manifests
	}
	if got := list(""); len(got) != len(weird) {
		t.Errorf("unfiltered referrers: %d, want %d", len(got), len(weird))
	}
	for _, at := range weird {
		got := list("?artifactType=" + url.QueryEscape(at))
		if len(got) != 1 || got[0].ArtifactType != at {
			t.Errorf("artifactType=%q matched %v, want exactly its own referrer", at, got)
		}
	}
	for _, q := range []string{
		"application/vnd.%25%25", "%25", "_", "%27%20OR%201%3D1--", "%00", "%FF", strings.Repeat("a", 20000), "application%2Fvnd.a%00",
	} {
		if got := list("?artifactType=" + q); len(got) != 0 {
			t.Errorf("artifactType=%s matched %d referrers, want none", truncate(q, 40), len(got))
		}
	}
	// Referrers of a digest nothing refers to, in a repository that does not
	// exist, is an empty index (the spec's answer), not an error.
	list2 := hsendString(t, base, "GET", "/v2/nothing/referrers/"+digest.FromString("z").String(), "")
	if list2.status >= 500 {
		t.Errorf("referrers of unknown repository: %s", list2)
	}
	expect(t, hsendString(t, base, "POST", "/v2/r/referrers/"+sd.String(), ""), http.StatusMethodNotAllowed, "UNSUPPORTED")
}

// TestHostileMethods: every route with methods it does not serve is 405
// UNSUPPORTED with an Allow header, never a 5xx.
func TestHostileMethods(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	d := pushBlob(t, base, "r", "m")
	loc := startSession(t, base, "r")
	paths := []string{"/v2/", "/v2/_catalog", "/v2/r/tags/list", "/v2/r/manifests/x", "/v2/r/blobs/" + d.String(),
		"/v2/r/blobs/uploads/", loc, "/v2/r/referrers/" + d.String()}
	for _, p := range paths {
		for _, m := range []string{"OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO", "PATCH", "POST", "PUT", "DELETE"} {
			r := hsendString(t, base, m, p, "")
			if r.status >= 500 {
				t.Errorf("server error: %s", r)
				continue
			}
			if r.status == http.StatusMethodNotAllowed {
				expect(t, r, r.status, "UNSUPPORTED")
				if r.header.Get("Allow") == "" {
					t.Errorf("405 without Allow: %s", r)
				}
			}
		}
	}
}

// pipeBody is a request body the test feeds by hand.
type pipeBody struct {
	pr *io.PipeReader
	pw *io.PipeWriter
}

func newPipeBody() *pipeBody { pr, pw := io.Pipe(); return &pipeBody{pr, pw} }

// TestConcurrentPatchSameSession: while one PATCH is streaming into an
// upload, a second PATCH (with or without Content-Range), a final PUT and a
// DELETE of the same session are each refused, and the first PATCH's data is
// what ends up in the blob.
func TestConcurrentPatchSameSession(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	loc := startSession(t, base, "r")
	first := bytes.Repeat([]byte("A"), 600<<10)
	pb := newPipeBody()
	type result struct {
		r   hresp
		err error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", base+loc, pb.pr)
		req.ContentLength = int64(len(first))
		resp, err := hostileClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{r: hresp{method: "PATCH", path: loc, status: resp.StatusCode, header: resp.Header, body: b}}
	}()
	// Feed 300 KiB: the server reads in 256 KiB blocks, so once the
	// session's size is at least that, the first PATCH is inside the
	// upload, holding it, and waiting for more.
	if _, err := pb.pw.Write(first[:300<<10]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangLimit)
	for sessionSize(t, base, loc) < 256<<10 {
		if time.Now().After(deadline) {
			t.Fatal("the first PATCH never reached the upload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	size := sessionSize(t, base, loc)
	second := bytes.Repeat([]byte("B"), 1000)
	for _, h := range [][]string{nil, {"Content-Range", fmt.Sprintf("%d-%d", size, size+999)}, {"Content-Range", fmt.Sprintf("0-%d", 999)}} {
		r := hsend(t, base, "PATCH", loc, bytes.NewReader(second), h...)
		if r.status != http.StatusBadRequest && r.status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("concurrent PATCH %v: %s, want 400 or 416", h, r)
			continue
		}
		expect(t, r, r.status, "BLOB_UPLOAD_INVALID")
	}
	all := append(append([]byte{}, first...), second...)
	r := hsend(t, base, "PUT", loc+"?digest="+digest.FromBytes(all).String(), bytes.NewReader(second))
	expect(t, r, http.StatusBadRequest, "BLOB_UPLOAD_INVALID")
	expect(t, hsendString(t, base, "DELETE", loc, ""), http.StatusBadRequest, "BLOB_UPLOAD_INVALID")

	if _, err := pb.pw.Write(first[300<<10:]); err != nil {
		t.Fatal(err)
	}
	pb.pw.Close()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	expect(t, res.r, http.StatusAccepted, "")
	if got := res.r.header.Get("Range"); got != fmt.Sprintf("0-%d", len(first)-1) {
		t.Errorf("first PATCH: Range %q, want 0-%d", got, len(first)-1)
	}
	d := digest.FromBytes(first)
	expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), ""), http.StatusCreated, "")
	got := hsendString(t, base, "GET", "/v2/r/blobs/"+d.String(), "")
	if got.status != 200 || !bytes.Equal(got.body, first) {
		t.Fatalf("blob: status %d, %d bytes, want the first PATCH's %d", got.status, len(got.body), len(first))
	}
}

// TestConcurrentManifestPutsSameTag: many different manifests PUT to one tag
// at once, with readers in between. Every PUT succeeds, every read returns
// content that matches its own Docker-Content-Digest, and the tag ends up on
// one of the manifests.
func TestConcurrentManifestPutsSameTag(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	cfg, layer := "{}", "l"
	cd, ld := pushBlob(t, base, "r", cfg), pushBlob(t, base, "r", layer)
	const writers, rounds = 12, 3
	for round := range rounds {
		bodies := map[digest.Digest]string{}
		for i := range writers {
			b := manifestFor(cd, ld, len(cfg), len(layer), fmt.Sprintf("round %d writer %d", round, i))
			bodies[digest.FromString(b)] = b
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan string, 4*writers)
		for _, b := range bodies {
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				r := hsendString(t, base, "PUT", "/v2/r/manifests/race", b, "Content-Type", ociManifest)
				if r.status != http.StatusCreated {
					errs <- "PUT: " + r.String()
				}
			}()
			go func() {
				defer wg.Done()
				<-start
				r := hsendString(t, base, "GET", "/v2/r/manifests/race", "")
				if r.status == http.StatusOK {
					if d := digest.FromBytes(r.body); d.String() != r.header.Get("Docker-Content-Digest") {
						errs <- fmt.Sprintf("GET returned content %s under Docker-Content-Digest %s", d, r.header.Get("Docker-Content-Digest"))
					}
				} else if r.status != http.StatusNotFound {
					errs <- "GET: " + r.String()
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		for _, m := range []string{"GET", "HEAD"} {
			r := hsendString(t, base, m, "/v2/r/manifests/race", "")
			dh := digest.Digest(r.header.Get("Docker-Content-Digest"))
			if r.status != 200 {
				t.Fatalf("round %d: %s", round, r)
			}
			if _, ok := bodies[dh]; !ok {
				t.Fatalf("round %d: tag points at %s, none of this round's manifests", round, dh)
			}
			if m == "GET" && string(r.body) != bodies[dh] {
				t.Fatalf("round %d: GET content does not match its digest header %s", round, dh)
			}
		}
		// Every manifest stays reachable by digest.
		for d, b := range bodies {
			r := hsendString(t, base, "GET", "/v2/r/manifests/"+d.String(), "")
			if r.status != 200 || string(r.body) != b {
				t.Errorf("round %d: GET %s: %s", round, d, r)
			}
		}
	}
}

// TestConcurrentUploadAndDeleteBlob: pushes and deletes of the same blob in
// the same repository, at once, over many rounds. Whatever the order, no
// request fails with a 5xx and the end state is coherent: HEAD and GET agree,
// and a blob that is there reads back whole.
func TestConcurrentUploadAndDeleteBlob(t *testing.T) {
	srv, _ := newTestRegistry(t, nil)
	base := srv.URL
	content := strings.Repeat("race me ", 40000) // 320 KiB: more than one read block
	d := digest.FromString(content)
	pushBlob(t, base, "keep", content) // another repository holds it throughout
	for round := range 20 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		var mu sync.Mutex
		var results []hresp
		add := func(r hresp) { mu.Lock(); results = append(results, r); mu.Unlock() }
		wg.Add(4)
		go func() { // monolithic
			defer wg.Done()
			<-start
			add(hsendString(t, base, "POST", "/v2/r/blobs/uploads/?digest="+d.String(), content))
		}()
		go func() { // chunked
			defer wg.Done()
			loc := startSession(t, base, "r")
			<-start
			add(hsendString(t, base, "PATCH", loc, content[:1000]))
			add(hsendString(t, base, "PUT", loc+"?digest="+d.String(), content[1000:]))
		}()
		for range 2 {
			go func() {
				defer wg.Done()
				<-start
				add(hsendString(t, base, "DELETE", "/v2/r/blobs/"+d.String(), ""))
			}()
		}
		close(start)
		wg.Wait()
		for _, r := range results {
			switch {
			case r.status >= 500:
				t.Errorf("round %d: %s", round, r)
			case r.method == "DELETE" && r.status != http.StatusAccepted:
				expect(t, r, http.StatusNotFound, "BLOB_UNKNOWN")
			case r.method == "POST" || r.method == "PUT":
				expect(t, r, http.StatusCreated, "")
			case r.method == "PATCH":
				expect(t, r, http.StatusAccepted, "")
			}
		}
		head := hsendString(t, base, "HEAD", "/v2/r/blobs/"+d.String(), "")
		get := hsendString(t, base, "GET", "/v2/r/blobs/"+d.String(), "")
		if head.status != get.status {
			t.Fatalf("round %d: HEAD %d but GET %d", round, head.status, get.status)
		}
		switch get.status {
		case http.StatusOK:
			if string(get.body) != content {
				t.Fatalf("round %d: blob reads back %d bytes of other content", round, len(get.body))
			}
		case http.StatusNotFound:
		default:
			t.Fatalf("round %d: %s", round, get)
		}
		if r := hsendString(t, base, "GET", "/v2/keep/blobs/"+d.String(), ""); r.status != 200 || string(r.body) != content {
			t.Fatalf("round %d: the other repository's copy: %s", round, r)
		}
	}
}

// TestConcurrentIdenticalPushes: the same new blob pushed to one repository
// by many clients at once (the dedup path) is stored once, whole.
func TestConcurrentIdenticalPushes(t *testing.T) {
	srv, dir := newTestRegistry(t, nil)
	base := srv.URL
	content := strings.Repeat("same bytes ", 50000)
	d := digest.FromString(content)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				expect(t, hsendString(t, base, "POST", "/v2/r/blobs/uploads/?digest="+d.String(), content), http.StatusCreated, "")
				return
			}
			loc := startSession(t, base, "r")
			expect(t, hsendString(t, base, "PUT", loc+"?digest="+d.String(), content), http.StatusCreated, "")
		}()
	}
	close(start)
	wg.Wait()
	r := hsendString(t, base, "GET", "/v2/r/blobs/"+d.String(), "")
	if r.status != 200 || string(r.body) != content {
		t.Fatalf("GET: %s", r)
	}
	if n := countFiles(t, dir+"/blobs"); n != 1 {
		t.Errorf("blob store holds %d files, want 1", n)
	}
	if n := countFiles(t, dir+"/tmp"); n != 0 {
		t.Errorf("%d temporary files left", n)
	}
}

// FuzzRegistryRequest sends random requests (method, repository, route,
// reference, query, one header, body, chunked or not) to the handler and
// checks the invariants of the data plane: no panic, no hang, no 5xx (berth
// documents none for client input: UNKNOWN is an internal failure and
// UNAVAILABLE is not used by the registry), every error a valid OCI error
// body, every JSON success valid JSON, and Content-Length matching the body.
//
// That holds for a blob GET with Range or conditional headers too: berth
// turns net/http ServeContent's plain-text 412 and 416 into OCI errors
// (TestBlobRangeErrorIsOCIError covers the 416).
//
// Run it with: go test -run '^$' -fuzz FuzzRegistryRequest -fuzztime 60s ./internal/registry
func FuzzRegistryRequest(f *testing.F) {
	dir := f.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		f.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { md.Close() })
	rg := New(Options{Blobs: blobs, Meta: md, Authorizer: openAuthz{}})

	serve := func(method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		rg.ServeHTTP(rec, req)
		return rec
	}
	cfg, layer := []byte("{}"), []byte("fuzz layer")
	cd, ld := digest.FromBytes(cfg), digest.FromBytes(layer)
	for _, b := range [][]byte{cfg, layer} {
		if rec := serve("POST", "/v2/r/blobs/uploads/?digest="+digest.FromBytes(b).String(), b); rec.Code != 201 {
			f.Fatalf("seed blob: %d %s", rec.Code, rec.Body)
		}
	}
	man := []byte(manifestFor(cd, ld, len(cfg), len(layer), "fuzz"))
	mdg := digest.FromBytes(man)
	if rec := serve("PUT", "/v2/r/manifests/latest", man, "Content-Type", ociManifest); rec.Code != 201 {
		f.Fatalf("seed manifest: %d %s", rec.Code, rec.Body)
	}

	methods := []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "BREW"}
	f.Add(uint8(0), "r", uint8(2), "latest", "", "", "", []byte(nil), false)
	f.Add(uint8(2), "r", uint8(2), "v1", "tag=a&tag=b", "Content-Type", ociManifest, man, false)
	f.Add(uint8(0), "r", uint8(11), "", "", "Range", "bytes=0-3", []byte(nil), false)
	f.Add(uint8(4), "r", uint8(6), "", "", "Content-Range", "0-3", []byte("abcd"), false)
	f.Add(uint8(2), "r", uint8(6), "", "digest="+ld.String(), "", "", layer, true)
	f.Add(uint8(3), "r", uint8(4), "", "digest="+cd.String(), "", "", cfg, false)
	f.Add(uint8(3), "q", uint8(4), "", "mount="+ld.String()+"&from=r", "", "", []byte(nil), false)
	f.Add(uint8(0), "r", uint8(7), "", "n=1&last=a", "", "", []byte(nil), false)
	f.Add(uint8(0), "r", uint8(8), mdg.String(), "artifactType=a%2Fb", "", "", []byte(nil), false)
	f.Add(uint8(5), "r", uint8(10), "", "", "", "", []byte(nil), false)
	f.Add(uint8(0), "a/../b", uint8(9), "", "", "", "", []byte(nil), false)

	f.Fuzz(func(t *testing.T, mi uint8, repo string, kind uint8, ref, query, hname, hval string, body []byte, chunked bool) {
		method := methods[int(mi)%len(methods)]
		var session string
		suffix := ""
		switch kind % 12 {
		case 0:
			suffix = "" // base, below
		case 1:
			suffix = "_catalog"
		case 2:
			suffix = "/manifests/" + ref
		case 3:
			suffix = "/blobs/" + ref
		case 4:
			suffix = "/blobs/uploads/"
		case 5:
			suffix = "/blobs/uploads/" + ref
		case 6:
			up, err := blobs.StartUpload(context.Background(), repo, "test")
			if err != nil {
				t.Fatal(err)
			}
			session = up.ID
			suffix = "/blobs/uploads/" + up.ID + ref
		case 7:
			suffix = "/tags/list"
		case 8:
			suffix = "/referrers/" + ref
		case 9:
			suffix = "raw"
		case 10:
			suffix = "/manifests/" + mdg.String()
		case 11:
			suffix = "/blobs/" + ld.String()
		}
		var path string
		switch suffix {
		case "":
			path = "/v2/"
		case "_catalog":
			path = "/v2/_catalog"
		case "raw":
			path = "/v2/" + repo + ref
		default:
			path = "/v2/" + repo + suffix
		}
		req := httptest.NewRequest(method, "/", bytes.NewReader(body))
		req.URL = &url.URL{Path: path, RawQuery: query}
		req.RequestURI = req.URL.RequestURI()
		if chunked {
			req.ContentLength = -1
		}
		if hname != "" {
			req.Header.Set(hname, hval)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			rg.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(hangLimit):
			t.Fatalf("%s %q: no answer within %v", method, path, hangLimit)
		}
		if session != "" {
			_ = blobs.Cancel(context.Background(), session)
		}
		status, h, out := rec.Code, rec.Header(), rec.Body.Bytes()
		desc := fmt.Sprintf("%s %q ?%q %s=%q (%d body bytes, chunked=%v)", method, path, query, hname, hval, len(body), chunked)
		if status >= 500 {
			t.Fatalf("%s: %d %s", desc, status, out)
		}
		if p := ociErrorProblem(method, status, h, out); p != "" {
			t.Fatalf("%s: %d: %s\n%s", desc, status, p, out)
		}
		if method != "HEAD" && status < 300 {
			if cl := h.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(out)) && status != http.StatusPartialContent {
				t.Fatalf("%s: Content-Length %s but %d bytes", desc, cl, len(out))
			}
			if strings.Contains(h.Get("Content-Type"), "json") && len(out) > 0 && !json.Valid(out) {
				t.Fatalf("%s: invalid JSON success body %s", desc, out)
			}
		}
	})
}
