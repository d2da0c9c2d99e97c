package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// pushRights is a caller that may pull everything, and push when push is
// set.
type pushRights struct{ push *bool }

func (a pushRights) Authorize(*http.Request, []Access) (Caller, error)  { return a, nil }
func (a pushRights) Name() string                                       { return "test" }
func (a pushRights) Can(_ string, op auth.Operation) bool               { return op != auth.OpPush || *a.push }
func (a pushRights) CanSee(string) bool                                 { return true }
func (a pushRights) TagCheck(string, auth.Operation) func(string) error { return nil }
func (a pushRights) CatalogTagFilter(string) func(string) bool          { return nil }

// TestSignaturePolicyHook checks where the registry asks the signature
// policies: on manifest GET and HEAD, by tag and digest, for every caller
// except a signing tool that may push; with a 403 DENIED carrying the
// refusal and an event per finding.
func TestSignaturePolicyHook(t *testing.T) {
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	var push bool
	var mu sync.Mutex
	var asked int
	var events []Event
	refusal, findings := "", []string(nil)
	check := func(_ context.Context, repo string, m meta.Manifest) (string, []string, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return refusal, findings, nil
	}
	srv := httptest.NewServer(New(Options{Blobs: blobs, Meta: md, Authorizer: pushRights{&push}, CheckPull: check, OnEvent: func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
		return nil
	}}))
	t.Cleanup(srv.Close)

	cfg, layer := pushBlob(t, srv.URL, "prod/app", "config"), pushBlob(t, srv.URL, "prod/app", "layer")
	body := manifestFor(cfg, layer, len("config"), len("layer"), "x")
	r := hsendString(t, srv.URL, "PUT", "/v2/prod/app/manifests/v1", body, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.status != http.StatusCreated {
		t.Fatalf("push: %s", r)
	}
	dg := r.header.Get("Docker-Content-Digest")
	mu.Lock()
	if asked != 0 {
		t.Fatalf("a push asked the signature policies %d times", asked)
	}

	refusal = `signature policy "prod" requires a valid cosign signature`
	cases := []struct {
		name, method, ref, agent string
		push, served             bool
	}{
		{"GET by tag", "GET", "v1", "docker/29.0", false, false},
		{"HEAD by tag", "HEAD", "v1", "docker/29.0", false, false},
		{"GET by digest", "GET", dg, "skopeo/1.18", false, false},
		{"a pusher's docker", "GET", "v1", "docker/29.0", true, false},
		{"cosign without push rights", "GET", dg, "cosign/v2.6.5 (linux; amd64)", false, false},
		{"cosign with push rights", "GET", dg, "cosign/v2.6.5 (linux; amd64)", true, true},
		{"notation with push rights", "HEAD", "v1", "notation/v1.3.2", true, true},
	}
	mu.Unlock()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			push = tc.push
			mu.Lock()
			asked, events = 0, nil
			mu.Unlock()
			r := hsendString(t, srv.URL, tc.method, "/v2/prod/app/manifests/"+tc.ref, "", "User-Agent", tc.agent)
			if tc.served {
				expect(t, r, http.StatusOK, "")
				mu.Lock()
				defer mu.Unlock()
				if asked != 0 {
					t.Errorf("the signing tool's read asked the policies")
				}
				return
			}
			expect(t, r, http.StatusForbidden, "DENIED")
			if tc.method == "GET" && !strings.Contains(string(r.body), `signature policy \"prod\"`) {
				t.Errorf("refusal does not name the policy: %s", r.body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(events) != 1 || events[0].Kind != EventTrust || !events[0].Refused || events[0].Reason != refusal || events[0].Digest.String() != dg {
				t.Errorf("events %+v, want one refused trust event", events)
			}
		})
	}

	// Audit findings are served and recorded, each as an event.
	refusal, findings = "", []string{"audit finding a", "audit finding b"}
	push = false
	mu.Lock()
	events = nil
	mu.Unlock()
	expect(t, hsendString(t, srv.URL, "GET", "/v2/prod/app/manifests/v1", ""), http.StatusOK, "")
	mu.Lock()
	defer mu.Unlock()
	var reasons []string
	for _, e := range events {
		if e.Kind == EventTrust && !e.Refused {
			reasons = append(reasons, e.Reason)
		}
	}
	if strings.Join(reasons, ",") != "audit finding a,audit finding b" {
		t.Errorf("audit findings recorded %q", reasons)
	}
}
