package server

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/federation"
)

// federationVerifier is the one verifier of federated logins' JWTs, so
// that every login with an issuer shares its cached keys.
func federationVerifier(cfg config.Config, log *slog.Logger) (*federation.Verifier, error) {
	o := federation.Options{AllowHTTPLoopback: cfg.FederationAllowHTTPLoopback, MaxLifetime: cfg.FederationMaxTokenLifetime, Logger: log}
	if cfg.FederationCAFile != "" {
		pem, err := os.ReadFile(cfg.FederationCAFile)
		if err != nil {
			return nil, fmt.Errorf("federation CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("federation CA file %s: no PEM certificate in it", cfg.FederationCAFile)
		}
		o.RootCAs = pool
	}
	if cfg.FederationAllowHTTPLoopback {
		log.Warn("federated credentials may trust OIDC issuers on plain http at loopback addresses (--federation-allow-http-loopback): for tests only")
	}
	return federation.NewVerifier(o), nil
}
