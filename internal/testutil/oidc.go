package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// OIDCIssuer is an OIDC issuer on loopback for tests of federated logins:
// it serves a discovery document and a JWKS, and signs tokens shaped like
// those of GitHub Actions and of Kubernetes service accounts.
type OIDCIssuer struct {
	// URL is the issuer ("iss"): http://127.0.0.1:port, or https with
	// StartOIDCIssuerTLS.
	URL string
	// CA, for an https issuer, is the pool its certificate chains to.
	CA *x509.CertPool

	srv *httptest.Server

	mu   sync.Mutex
	keys []*OIDCKey // published; the first signs

	// JWKSFetches and DiscoveryFetches count the requests for each.
	JWKSFetches      atomic.Int64
	DiscoveryFetches atomic.Int64
}

// OIDCKey is a signing key of an issuer.
type OIDCKey struct {
	Kid string
	Alg string // the algorithm the JWKS publishes for it
	Key crypto.Signer
}

// NewOIDCKey makes an RSA (RS256) key, or with alg "ES256" an ECDSA P-256 key.
func NewOIDCKey(t testing.TB, alg string) *OIDCKey {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		alg = "RS256"
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &OIDCKey{Kid: RandomString(12), Alg: alg, Key: k}
}

// StartOIDCIssuer starts an http issuer on 127.0.0.1 with one RS256 key.
// berth must be told to allow http issuers on loopback.
func StartOIDCIssuer(t testing.TB) *OIDCIssuer {
	return startOIDCIssuer(t, false)
}

// StartOIDCIssuerTLS starts an https issuer on 127.0.0.1 whose certificate
// chains to iss.CA.
func StartOIDCIssuerTLS(t testing.TB) *OIDCIssuer {
	return startOIDCIssuer(t, true)
}

func startOIDCIssuer(t testing.TB, useTLS bool) *OIDCIssuer {
	t.Helper()
	iss := &OIDCIssuer{keys: []*OIDCKey{NewOIDCKey(t, "RS256")}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss.DiscoveryFetches.Add(1)
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/.well-known/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": iss.algs(),
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.JWKSFetches.Add(1)
		w.Write(iss.JWKS())
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	if useTLS {
		iss.srv.StartTLS()
		iss.CA = x509.NewCertPool()
		iss.CA.AddCert(iss.srv.Certificate())
	} else {
		iss.srv.Start()
	}
	iss.URL = iss.srv.URL
	t.Cleanup(iss.srv.Close)
	return iss
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (iss *OIDCIssuer) algs() []string {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, k := range iss.keys {
		if !seen[k.Alg] {
			seen[k.Alg] = true
			out = append(out, k.Alg)
		}
	}
	return out
}

// JWKS is the issuer's published key set (what an offline issuer's JWKS
// file holds).
func (iss *OIDCIssuer) JWKS() []byte {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for _, k := range iss.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key.Public(), KeyID: k.Kid, Algorithm: k.Alg, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// Key returns the key that signs now.
func (iss *OIDCIssuer) Key() *OIDCKey {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.keys[0]
}

// Rotate publishes a new key of alg and signs with it from now on; with
// retire, the old keys are no longer published.
func (iss *OIDCIssuer) Rotate(t testing.TB, alg string, retire bool) *OIDCKey {
	k := NewOIDCKey(t, alg)
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if retire {
		iss.keys = []*OIDCKey{k}
	} else {
		iss.keys = append([]*OIDCKey{k}, iss.keys...)
	}
	return k
}

// SignOptions change how Sign signs, to make the tokens a verifier must
// refuse.
type SignOptions struct {
	// Key signs instead of the issuer's current key (with its Kid, unless
	// Kid is set).
	Key *OIDCKey
	// Kid is put in the header instead of the key's ("-" for none).
	Kid string
	// Alg is the header's algorithm instead of the key's (RS384, PS256
	// with an RSA key; HS256 signs with the public key's DER as an HMAC
	// secret, the classic confusion attack).
	Alg string
}

// Sign signs claims as the issuer ("iss" is set to its URL unless claims
// has one).
func (iss *OIDCIssuer) Sign(t testing.TB, claims map[string]any, o SignOptions) string {
	t.Helper()
	k := o.Key
	if k == nil {
		k = iss.Key()
	}
	if _, ok := claims["iss"]; !ok {
		claims["iss"] = iss.URL
	}
	alg := k.Alg
	if o.Alg != "" {
		alg = o.Alg
	}
	kid := k.Kid
	if o.Kid != "" {
		kid = o.Kid
	}
	var key any = k.Key
	if alg == "HS256" {
		der, err := x509.MarshalPKIXPublicKey(k.Key.Public())
		if err != nil {
			t.Fatal(err)
		}
		key = der
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "-" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// GitHubClaims are claims shaped like a GitHub Actions OIDC token's for
// a workflow run of repo ("owner/name") on ref, for audience aud, valid
// for five minutes from now.
func GitHubClaims(repo, ref, aud string) map[string]any {
	now := time.Now()
	owner, _, _ := strings.Cut(repo, "/")
	return map[string]any{
		"jti":              RandomString(16),
		"sub":              fmt.Sprintf("repo:%s:ref:%s", repo, ref),
		"aud":              aud,
		"ref":              ref,
		"ref_type":         "branch",
		"repository":       repo,
		"repository_owner": owner,
		"run_id":           "1234567890",
		"workflow":         "build",
		"event_name":       "push",
		"actor":            "octocat",
		"environment":      "prod",
		"nbf":              now.Add(-5 * time.Second).Unix(),
		"iat":              now.Add(-5 * time.Second).Unix(),
		"exp":              now.Add(5 * time.Minute).Unix(),
	}
}

// KubernetesClaims are claims shaped like a projected Kubernetes
// service-account token's for the account sa in namespace ns, for
// audience aud, valid for an hour from now.
func KubernetesClaims(ns, sa, aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"aud": []string{aud},
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": RandomString(16),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": sa, "uid": "5b0c3c5e-0000-4000-8000-" + RandomString(12)},
			"pod":            map[string]any{"name": "app-7d4b9c", "uid": "1f2e3d4c-0000-4000-8000-" + RandomString(12)},
		},
	}
}
