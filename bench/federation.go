package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// benchIssuer is an OIDC issuer on loopback (discovery and JWKS) whose
// tokens the federated-login workload presents as the scoped token's
// password.
type benchIssuer struct {
	url string
	key *rsa.PrivateKey
	kid string
	srv *http.Server
}

func startBenchIssuer() (*benchIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	iss := &benchIssuer{url: "http://" + l.Addr().String(), key: key, kid: randomHex(8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": iss.url, "jwks_uri": iss.url + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go iss.srv.Serve(l)
	return iss, nil
}

func (iss *benchIssuer) close() { iss.srv.Close() }

// sign returns a token shaped like GitHub Actions', valid for an hour.
func (iss *benchIssuer) sign(subject, audience string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: iss.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", iss.kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	payload, err := json.Marshal(map[string]any{"iss": iss.url, "sub": subject, "aud": audience, "repository_owner": "bench",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": randomHex(8)})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// federatedLogins is the federated half of workload 4: the scoped token
// gets a federated credential trusting a loopback issuer, and the clients
// log in with a JWT of that issuer as the token's password, as `docker
// login --password-stdin <<<"$OIDC_TOKEN"` does. After the first login,
// which fetches the issuer's keys, every login verifies the JWT's RS256
// signature with the cached keys.
func (b *bench) federatedLogins(ctx context.Context, s *subject) (loadResult, error) {
	c := s.token
	if c.scheme != "bearer" {
		return loadResult{}, fmt.Errorf("%s has no token endpoint", s.f.label)
	}
	iss, err := startBenchIssuer()
	if err != nil {
		return loadResult{}, err
	}
	defer iss.close()
	const subject = "repo:bench/app:ref:refs/heads/main"
	cred := "bench-" + randomHex(4)
	credURL := s.auth.url + "/api/v1/tokens/" + url.PathEscape(c.user) + "/federatedCredentials/" + cred
	body, _ := json.Marshal(map[string]any{"issuer": iss.url, "subject": subject, "audience": c.service,
		"claims": map[string]string{"repository_owner": "bench"}})
	if err := b.adminRequest(ctx, s, http.MethodPut, credURL, string(body), http.StatusCreated); err != nil {
		return loadResult{}, fmt.Errorf("create the federated credential: %w", err)
	}
	defer b.adminRequest(context.WithoutCancel(ctx), s, http.MethodDelete, credURL, "", http.StatusNoContent)
	jwt, err := iss.sign(subject, c.service)
	if err != nil {
		return loadResult{}, err
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+jwt))
	u := c.tokenURL(pullScope(smallRepo))
	spec := loadSpec{
		concurrency: b.cfg.concurrency, duration: b.cfg.duration, maxRequests: b.cfg.maxRequests,
		newRequest: func(ctx context.Context) (*http.Request, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err == nil {
				r.Header.Set("Authorization", basic)
			}
			return r, err
		},
		check: expectStatus(http.StatusOK, -1),
		pid:   s.auth.pid(),
	}
	if err := warmUp(ctx, b.small, spec); err != nil {
		return loadResult{}, err
	}
	return runLoad(ctx, b.small, spec)
}

// adminRequest sends a management API request as the auth instance's
// owner and checks the status.
func (b *bench) adminRequest(ctx context.Context, s *subject, method, u, body string, status int) error {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(s.auth.user, s.auth.pass)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.small.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		return expect(resp, status, method+" "+u)
	}
	return nil
}
