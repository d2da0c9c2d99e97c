package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/netrule"
	"github.com/berth-registry/berth/internal/server"
)

// BenchmarkNetworkDenied measures a /v2/ request refused by the registry's
// rules through the whole handler (request log, metrics, the audit record),
// with 10 and 10,000 rules, against rules=0: the same request answered with
// the 401 challenge when the default action is Allow.
func BenchmarkNetworkDenied(b *testing.B) {
	for _, n := range []int{0, 10, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			cfg := config.Default()
			cfg.Data = b.TempDir()
			srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), server.Secrets{OwnerPassword: ownerPassword})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			ctx := context.Background()
			var rules []string
			for i := range n {
				rules = append(rules, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
			}
			want := http.StatusUnauthorized
			if n > 0 {
				want = http.StatusForbidden
				if _, err := srv.Rules().AddRules(ctx, owner, rules); err != nil {
					b.Fatal(err)
				}
				if _, err := srv.Rules().SetDefaultAction(ctx, owner, netrule.Deny); err != nil {
					b.Fatal(err)
				}
			}
			h := srv.Handler()
			req := httptest.NewRequest("GET", "/v2/", nil)
			req.RemoteAddr = "203.0.113.5:40000"
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != want {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
