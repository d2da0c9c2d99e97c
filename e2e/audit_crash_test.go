package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/testutil"
)

// TestCrashKeepsAcknowledgedAuditRecords kills the server with SIGKILL
// right after it acknowledged a token creation (201 from the API) and a
// push (201 for the manifest), restarts it on the same data, and finds the
// record of each in the audit log: a change is never acknowledged before
// its record is committed.
func TestCrashKeepsAcknowledgedAuditRecords(t *testing.T) {
	srv := startRegistry(t)
	if srv.Kind != testutil.KindBerth {
		t.Skip("the audit log is berth's")
	}
	plain := &http.Client{}
	owner := "Basic " + base64.StdEncoding.EncodeToString([]byte(srv.Username+":"+srv.Password))
	events := func(kind string) []audit.Event {
		t.Helper()
		x := do(t, plain, http.MethodGet, srv.URL+"/api/v1/audit?"+url.Values{"kind": {kind}, "limit": {"1000"}}.Encode(), nil, "Authorization", owner)
		if x.resp.StatusCode != http.StatusOK {
			t.Fatalf("list audit: %s", x)
		}
		var list struct{ Value []audit.Event }
		if err := json.Unmarshal(x.result, &list); err != nil {
			t.Fatal(err)
		}
		return list.Value
	}

	body := `{"properties": {"scopeMapActions": ["repositories/e2e/audit/content/read"], "credentials": {"passwords": [{"name": "password1"}]}}}`
	x := do(t, plain, http.MethodPut, srv.URL+"/api/v1/tokens/crash-audit-token", []byte(body), "Authorization", owner, "Content-Type", "application/json")
	if x.resp.StatusCode != http.StatusCreated {
		t.Fatalf("create token: %s", x)
	}
	srv.Kill()
	srv.Restart()
	found := false
	for _, e := range events(audit.KindPermission) {
		if e.Target == "token crash-audit-token" && strings.HasPrefix(e.Reason, "created") {
			found = true
		}
	}
	if !found {
		t.Error("the token creation acknowledged before the crash has no audit record")
	}

	img := testutil.RandomImage(t, 1, 1024)
	if err := remote.Write(srv.Ref(t, "e2e/audit/crash:v1"), img, srv.RemoteOptions(t.Context())...); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Restart()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, e := range events(audit.KindPush) {
		if e.Repository == "e2e/audit/crash" && e.Tag == "v1" && e.Digest == d.String() {
			found = true
		}
	}
	if !found {
		t.Error("the push acknowledged before the crash has no audit record")
	}
	srv.Stop()
}
