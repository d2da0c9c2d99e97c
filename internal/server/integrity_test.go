package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/fsck"
)

// Damage found when serving and by the fsck API is counted in /metrics,
// a repair through the API needs a management role and is audited, and a
// push repairs what was found.
func TestDamagedBlobsMetricsAndFsckAPI(t *testing.T) {
	e := newEnv(t)
	owner := basic("owner", ownerPassword)
	content := strings.Repeat("x", 200000)
	d := digest.FromString(content)
	push := func() {
		if st, body, _ := e.do("POST", "/v2/app/blobs/uploads/?digest="+d.String(), owner, strings.NewReader(content)); st != 201 {
			t.Fatalf("push: %d %s", st, body)
		}
	}
	push()
	file := filepath.Join(e.srv.DataDir(), "blobs", "sha256", d.Encoded()[:2], d.Encoded())
	os.Truncate(file, 1000)
	if st, _, _ := e.do("HEAD", "/v2/app/blobs/"+d.String(), owner, nil); st != 404 {
		t.Fatalf("HEAD of a truncated blob: %d", st)
	}
	push()
	if st, body, _ := e.do("GET", "/v2/app/blobs/"+d.String(), owner, nil); st != 200 || body != content {
		t.Fatalf("GET after the re-push: %d, %d bytes", st, len(body))
	}

	b, _ := os.ReadFile(file)
	b[0] = 'y'
	os.WriteFile(file, b, 0o640)
	pw, _ := e.newToken("puller", actions("app", "content/read")...)
	if st, _, _ := e.do("POST", "/api/v1/fsck", basic("puller", pw), strings.NewReader(`{"repair":true}`)); st != 401 && st != 403 {
		t.Fatalf("a token ran fsck: %d", st)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("a refused fsck moved the file: %v", err)
	}
	st, body, _ := e.do("POST", "/api/v1/fsck", owner, strings.NewReader(`{"repair":true}`))
	var rep fsck.Report
	if err := json.Unmarshal([]byte(body), &rep); st != 200 || err != nil {
		t.Fatalf("fsck: %d %s", st, body)
	}
	if len(rep.DamagedBlobs) != 1 || rep.DamagedBlobs[0].Digest != d || !rep.DamagedBlobs[0].Quarantined {
		t.Fatalf("fsck report: %s", body)
	}
	if st, _, _ := e.do("GET", "/v2/app/blobs/"+d.String(), owner, nil); st != 404 {
		t.Fatalf("GET of a quarantined blob: %d", st)
	}
	push()
	if st, body, _ := e.do("GET", "/v2/app/blobs/"+d.String(), owner, nil); st != 200 || body != content {
		t.Fatalf("GET after the re-push: %d, %d bytes", st, len(body))
	}

	// A push over a truncated file nobody noticed yet replaces it.
	os.Truncate(file, 1000)
	push()
	if fi, err := os.Stat(file); err != nil || fi.Size() != 200000 {
		t.Fatalf("the push did not replace the truncated file: %v", err)
	}

	e.srv.Audit().Flush()
	events, err := e.srv.Audit().List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var audited bool
	for _, ev := range events {
		audited = audited || (ev.Target == "content check" && strings.Contains(ev.Reason, d.String()) && ev.Identity == "owner")
	}
	if !audited {
		t.Errorf("the repair is not audited: %+v", events)
	}
	_, metrics, _ := e.do("GET", "/metrics", "", nil)
	for _, want := range []string{
		`berth_blobs_damaged_total{found_by="serve"} 1`,
		`berth_blobs_damaged_total{found_by="fsck"} 1`,
		`berth_blobs_repaired_total 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
