package server_test

import (
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	pw, _ := e.newToken("metered", actions("app", "content/read")...)
	e.do("GET", "/v2/app/tags/list", basic("metered", pw), nil)
	e.do("GET", "/v2/app/tags/list", basic("metered", "wrong"), nil)
	st, body, _ := e.do("GET", "/metrics", "", nil)
	if st != 200 {
		t.Fatalf("/metrics: %d", st)
	}
	for _, want := range []string{
		`berth_http_requests_total{code="403",method="GET",route="v2.tags"} 1`,
		`berth_http_requests_total{code="401",method="GET",route="v2.tags"} 1`,
		`berth_auth_results_total{kind="basic",result="success"} 1`,
		`berth_auth_results_total{kind="basic",result="failure"} 1`,
		`berth_uploads_in_progress 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, pw) {
		t.Fatal("a password appears in the metrics")
	}
}
