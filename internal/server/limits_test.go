package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

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
			!strings.Contains(body, `"code":"TOOMANYREQUESTS"`) || !strings.Contains(body, `token \"ci-limited\" is over its rate limit of 0.001 requests/s (burst 1); retry after 17 min`) {
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
