package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// StartDistribution starts CNCF Distribution (Debian's docker-registry
// package, or a `registry` binary on PATH) as a reference registry: plain
// HTTP on a free loopback port, filesystem storage in a temporary directory,
// deletes enabled, no authentication (Username and Password are empty).
// Benchmarks and comparisons use it to measure berth against the registry
// most users come from. WithName, WithPassword and WithArgs do not apply.
func StartDistribution(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := LookTool(t, "docker-registry", "registry")
	cfg := applyOptions(opts)
	s := newServer(t, KindDistribution, cfg)
	s.env = append(s.env, cfg.env...)
	// Distribution has no /healthz on its main listener; /v2/ answers 200
	// once it serves. It has no graceful shutdown unless configured with a
	// drain timeout, so SIGTERM ends it with a signal status.
	s.health, s.ready, s.graceful = "/v2/", "", false
	confPath := filepath.Join(s.workDir, "config.yml")
	s.argv = func() []string {
		// Rewritten on every start because the port can change on a retry.
		conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
`, s.DataDir, s.Host)
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Errorf("write distribution config: %v", err)
		}
		return []string{bin, "serve", confPath}
	}
	s.start()
	return s
}
