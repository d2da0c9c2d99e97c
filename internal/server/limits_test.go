package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/ratelimit"
)

// TestTokenLimits runs the limits through the whole server: a token over
// its rate limit gets 429 TOOMANYREQUESTS with Retry-After on /v2/, the
// refusal is counted in the metrics and recorded (folded) in the audit log,
// and a pull over the day's bytes is refused before the blob is sent.
func TestTokenLimits(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	pw, _ := e.newToken("ci-limited", actions("team/*", "content/read")...)
	if err := e.pull("team/app", "ci-limited", pw); err != nil {
		t.Fatalf("pull without limits: %v", err)
	}
	rate := 0.001
	if _, err := e.srv.Limits().SetToken(ctx, owner, "ci-limited", ratelimit.Update{RatePerSecond: &rate}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.do("GET", "/v2/", basic("ci-limited", pw), nil); st != 200 {
		t.Fatalf("first request: %d", st)
	}
	for range 3 {
		st, body, h := e.do("GET", "/v2/team/app/manifests/v1", basic("ci-limited", pw), nil)
		if st != http.StatusTooManyRequests || h.Get("Retry-After") != "1000" ||
			!strings.Contains(body, `"code":"TOOMANYREQUESTS"`) || !strings.Contains(body, `token \"ci-limited\" is over its rate limit of 3.6 requests/h (burst 1); retry after 17 min`) {
			t.Fatalf("over the rate: %d %q %s", st, h.Get("Retry-After"), body)
		}
	}
	// Other identities are not limited.
	if st, _, _ := e.do("GET", "/v2/team/app/tags/list", basic("owner", ownerPassword), nil); st != 200 {
		t.Fatalf("owner: %d", st)
	}
	_, metrics, _ := e.do("GET", "/metrics", "", nil)
	if !strings.Contains(metrics, `berth_token_limited_total{limit="rate"} 3`) {
		t.Errorf("metrics do not count the refusals:\n%s", grep(metrics, "berth_token_limited"))
	}
	e.srv.Audit().Flush()
	evs, err := e.srv.Audit().List(ctx, audit.Filter{Kind: audit.KindLimited})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Count != 3 || evs[0].Identity != "ci-limited" || evs[0].Repository != "team/app" || !strings.Contains(evs[0].Reason, "rate limit") {
		t.Fatalf("audit records of the refusals: %+v, want one folded record of 3", evs)
	}

	// Bytes: the manifest fits, the layers do not.
	none := float64(0)
	var pull int64 = 1024
	if _, err := e.srv.Limits().SetToken(ctx, owner, "ci-limited", ratelimit.Update{RatePerSecond: &none, PullBytesPerDay: &pull}); err != nil {
		t.Fatal(err)
	}
	err = e.pullLayers("team/app", "ci-limited", pw)
	if statusOf(err) != http.StatusTooManyRequests || !strings.Contains(err.Error(), "pulled per day") && !strings.Contains(err.Error(), "more today (UTC)") {
		t.Fatalf("pull over the day's bytes: %v", err)
	}
	tl, err := e.srv.Limits().Token(ctx, owner, "ci-limited")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Usage.PulledBytes == 0 || tl.Usage.PulledBytes > pull {
		t.Fatalf("pulled %d bytes, want some and at most the limit of %d", tl.Usage.PulledBytes, pull)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// pullLayers pulls an image's manifest, config and every layer.
func (e *env) pullLayers(repo, user, pass string) error {
	e.t.Helper()
	ref, _ := name.ParseReference(e.host()+"/"+repo+":v1", name.Insecure)
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestTokenLimitsAcrossNodes: two nodes on one PostgreSQL database share
// a token's request bucket and its day's byte count, and a limit set
// through one node applies on the other.
func TestTokenLimitsAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	body := `{"properties":{"scopeMapId":"_repositories_pull","credentials":{"passwords":[{"name":"password1"}]}}}`
	pw := c.createToken(t, 0, "ci-shared", body)
	tok := basic("ci-shared", pw)
	c.mustAPI(t, 0, "PATCH", "/api/v1/tokens/ci-shared/limits", `{"ratePerSecond":0.001,"burst":4}`, http.StatusOK)
	// Node 2 learns of the limit at its next sync; until then it admits.
	waitFor(t, "node 2 to apply the limit", func() bool {
		out := c.mustAPI(t, 1, "GET", "/api/v1/tokens/ci-shared/limits", "", http.StatusOK)
		return strings.Contains(out, `"ratePerSecond":0.001`)
	})
	// Bring the shared bucket to a known state: a new limit starts full.
	c.mustAPI(t, 1, "PATCH", "/api/v1/tokens/ci-shared/limits", `{"ratePerSecond":0.001,"burst":4}`, http.StatusOK)
	admitted := 0
	for i := range 12 {
		st, retry, out := call(t, "GET", c.nodes[i%2].URL+"/v2/", "", tok)
		switch st {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
			if retry == "" || !strings.Contains(out, `token \"ci-shared\" is over its rate limit of 3.6 requests/h (burst 4)`) {
				t.Fatalf("refusal on node %d: Retry-After %q, %s", i%2+1, retry, out)
			}
		default:
			t.Fatalf("node %d: %d %s", i%2+1, st, out)
		}
	}
	if admitted != 4 {
		t.Fatalf("the two nodes admitted %d requests, want the shared burst of 4", admitted)
	}

	// Bytes: GET /v2/ answers 2 bytes; node 1 sends 4, the limit; node 2
	// refuses once it has heard of them.
	c.mustAPI(t, 0, "PATCH", "/api/v1/tokens/ci-shared/limits", `{"ratePerSecond":-1,"pullBytesPerDay":4}`, http.StatusOK)
	waitFor(t, "node 2 to apply the byte limit", func() bool {
		out := c.mustAPI(t, 1, "GET", "/api/v1/tokens/ci-shared/limits", "", http.StatusOK)
		return strings.Contains(out, `"pullBytesPerDay":4`)
	})
	for range 2 {
		if st, _, out := call(t, "GET", c.nodes[0].URL+"/v2/", "", tok); st != http.StatusOK {
			t.Fatalf("node 1 within the byte limit: %d %s", st, out)
		}
	}
	waitFor(t, "node 2 to see node 1's bytes", func() bool {
		out := c.mustAPI(t, 1, "GET", "/api/v1/tokens/ci-shared/limits", "", http.StatusOK)
		return strings.Contains(out, `"pulledBytes":4`)
	})
	if st, _, out := call(t, "GET", c.nodes[1].URL+"/v2/", "", tok); st != http.StatusTooManyRequests || !strings.Contains(out, "over its limit of 4 B pulled per day (UTC)") {
		t.Fatalf("node 2 over the shared byte limit: %d %s", st, out)
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
