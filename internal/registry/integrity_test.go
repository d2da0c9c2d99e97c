package registry

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func blobFile(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

// damage changes a stored blob file the way a failing disk or a bad
// restore would.
var damages = []struct {
	name string
	do   func(t *testing.T, path string)
	// sameSize damage keeps the file's size.
	sameSize bool
}{
	{"changed byte", func(t *testing.T, p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}, true},
	{"truncated", func(t *testing.T, p string) {
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatal(err)
		}
	}, false},
	{"grown", func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("trailing garbage")
		f.Close()
	}, false},
}

// uploadBlob uploads content to repository r, in one request or as a chunked
// session.
func uploadBlob(t *testing.T, base, content string, chunked bool) {
	t.Helper()
	d := sha(content)
	if !chunked {
		do(t, base, call{method: "POST", path: "/v2/r/blobs/uploads/?digest=" + d.String(), body: content, wantStatus: 201})
		return
	}
	loc := do(t, base, call{method: "POST", path: "/v2/r/blobs/uploads/", wantStatus: 202}).Header.Get("Location")
	loc = strings.TrimPrefix(loc, base)
	do(t, base, call{method: "PATCH", path: loc, body: content[:len(content)/2], wantStatus: 202})
	do(t, base, call{method: "PUT", path: loc + "?digest=" + d.String(), body: content[len(content)/2:], wantStatus: 201})
}

// A damaged blob file is never served: GET and HEAD answer BLOB_UNKNOWN,
// so that a client pushes it again, the file is moved into quarantine, and
// the push restores the blob. A size that is not the one recorded at push
// is found for every blob, a changed byte for blobs up to 1 MiB.
func TestDamagedBlobIsRefusedAndRepushRestoresIt(t *testing.T) {
	content := strings.Repeat("0123456789", 20000) // 200,000 bytes
	d := sha(content)
	for _, dmg := range damages {
		for _, chunked := range []bool{false, true} {
			name := dmg.name + "/monolithic"
			if chunked {
				name = dmg.name + "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				srv, dir := newTestRegistry(t, nil)
				uploadBlob(t, srv.URL, content, false)
				dmg.do(t, blobFile(dir, d))

				for _, method := range []string{"GET", "HEAD"} {
					resp := do(t, srv.URL, call{method: method, path: "/v2/r/blobs/" + d.String(), wantStatus: 404})
					if method == "GET" {
						b, _ := io.ReadAll(resp.Body)
						if !strings.Contains(string(b), "BLOB_UNKNOWN") || !strings.Contains(string(b), "damaged") {
							t.Fatalf("GET of a damaged blob: %s", b)
						}
					}
				}
				if _, err := os.Stat(blobFile(dir, d)); !os.IsNotExist(err) {
					t.Fatalf("damaged file still in place: %v", err)
				}
				q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "sha256-"+d.Encoded()+"-*"))
				if len(q) != 2 { // the file and its note
					t.Fatalf("quarantine holds %v", q)
				}

				uploadBlob(t, srv.URL, content, chunked)
				got := do(t, srv.URL, call{method: "GET", path: "/v2/r/blobs/" + d.String(), wantStatus: 200})
				if b, _ := io.ReadAll(got.Body); string(b) != content {
					t.Fatalf("after the re-push GET serves %d bytes", len(b))
				}
			})
		}
	}
}

// A push of content whose stored file has the wrong size replaces the file
// even if nothing has noticed the damage yet; a chunked push replaces it
// whatever the damage.
func TestRepushReplacesDamagedFile(t *testing.T) {
	content := strings.Repeat("abcdefghij", 20000)
	d := sha(content)
	for _, dmg := range damages {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", dmg.name, chunked), func(t *testing.T) {
				srv, dir := newTestRegistry(t, nil)
				uploadBlob(t, srv.URL, content, false)
				dmg.do(t, blobFile(dir, d))
				uploadBlob(t, srv.URL, content, chunked)
				got := do(t, srv.URL, call{method: "GET", path: "/v2/r/blobs/" + d.String(), wantStatus: 200})
				if b, _ := io.ReadAll(got.Body); string(b) != content {
					t.Fatalf("after the re-push GET serves %d bytes", len(b))
				}
			})
		}
	}
}
