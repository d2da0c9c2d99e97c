package server_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/server"
)

// TestUploadSessionCapsSurviveRestart opens upload sessions up to the
// configured cap, restarts the server on the same data, and finds the cap
// still reached: sessions on disk count from the start.
func TestUploadSessionCapsSurviveRestart(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.MaxUploadsPerIdentity = 3
	start := func() *env {
		srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
		if err != nil {
			t.Fatal(err)
		}
		return &env{t: t, srv: srv, http: httptest.NewServer(srv.Handler()), id: srv.Identity()}
	}
	stop := func(e *env) {
		e.http.Close()
		e.srv.Close()
	}
	e := start()
	passwords := map[string]string{}
	for _, name := range []string{"ci-runner", "other-token"} {
		passwords[name], _ = e.newToken(name, actions("app", "content/read", "content/write")...)
	}
	post := func(e *env, who string) (int, string, string) {
		t.Helper()
		tok := e.accessToken(who, passwords[who], "repository:app:pull,push")
		st, body, h := e.do("POST", "/v2/app/blobs/uploads/", bearer(tok), nil)
		return st, body, h.Get("Retry-After")
	}
	for range 3 {
		if st, body, _ := post(e, "ci-runner"); st != 202 {
			t.Fatalf("session within the cap: %d %s", st, body)
		}
	}
	refused := func(e *env) {
		t.Helper()
		st, body, retry := post(e, "ci-runner")
		if st != 429 || !strings.Contains(body, "TOOMANYREQUESTS") || retry == "" {
			t.Fatalf("session beyond the cap: %d %s, Retry-After %q", st, body, retry)
		}
	}
	refused(e)
	stop(e)

	e = start()
	defer stop(e)
	refused(e)
	if st, body, _ := post(e, "other-token"); st != 202 {
		t.Fatalf("another identity's session: %d %s", st, body)
	}
}
