package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
)

// send sends a registry request with a content type and returns the status
// and body.
func (e *env) send(method, path, authz, contentType string, body []byte) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", authz)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A push, an untag and a delete are in the audit log, committed, when the
// registry answers them; one whose record cannot be written is not
// acknowledged.
func TestRegistryChangesAreRecordedBeforeTheAnswer(t *testing.T) {
	e := newEnv(t)
	pw, _ := e.newToken("ci-push", actions("app", "content/read", "content/write", "content/delete")...)
	authz := bearer(e.accessToken("ci-push", pw, "repository:app:pull,push,delete"))
	db := e.srv.Metadata().ReadDB() // another connection than the writer's
	records := func(kind string) int {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM audit WHERE kind = ? AND identity = 'ci-push'`, kind).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	config := []byte("{}")
	cd := digest.FromBytes(config)
	if st, body := e.send("POST", "/v2/app/blobs/uploads/?digest="+cd.String(), authz, "application/octet-stream", config); st != http.StatusCreated {
		t.Fatalf("push config: %d %s", st, body)
	}
	manifest := func(i int) []byte {
		return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"n":"%d"}}`, cd, i)
	}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	if st, body := e.send("PUT", "/v2/app/manifests/v1", authz, mt, manifest(1)); st != http.StatusCreated {
		t.Fatalf("push: %d %s", st, body)
	}
	if n := records("push"); n != 1 {
		t.Errorf("%d push records committed when the push was acknowledged, want 1", n)
	}
	if st, body := e.send("DELETE", "/v2/app/manifests/v1", authz, "", nil); st != http.StatusAccepted {
		t.Fatalf("untag: %d %s", st, body)
	}
	if n := records("untag"); n != 1 {
		t.Errorf("%d untag records committed when the untag was acknowledged, want 1", n)
	}
	d := digest.FromBytes(manifest(1))
	if st, body := e.send("DELETE", "/v2/app/manifests/"+d.String(), authz, "", nil); st != http.StatusAccepted {
		t.Fatalf("delete: %d %s", st, body)
	}
	if n := records("delete"); n != 1 {
		t.Errorf("%d delete records committed when the delete was acknowledged, want 1", n)
	}

	w := e.srv.Metadata().DB()
	if _, err := w.Exec(`ALTER TABLE audit RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	st, body := e.send("PUT", "/v2/app/manifests/v2", authz, mt, manifest(2))
	if _, err := w.Exec(`ALTER TABLE audit_away RENAME TO audit`); err != nil {
		t.Fatal(err)
	}
	if st < 500 {
		t.Errorf("push whose audit record cannot be written: %d %s, want a server error", st, body)
	}
}
