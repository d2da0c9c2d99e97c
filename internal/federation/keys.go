package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Bounds on what berth fetches from an issuer.
const (
	// maxDocument bounds a discovery document or JWKS: real ones are a few
	// KiB.
	maxDocument = 1 << 20
	// fetchTimeout bounds one discovery + JWKS fetch.
	fetchTimeout = 10 * time.Second
	// refreshBurst and refreshEvery bound the fetches that tokens naming
	// unknown keys can cause per issuer: a burst of refreshBurst, then one
	// per refreshEvery. Random kids cannot make berth hammer the issuer.
	refreshBurst = 5
	refreshEvery = 10 * time.Second
	// defaultCacheTTL is how long fetched keys are used before they are
	// fetched again (sooner when a token names a key not among them).
	defaultCacheTTL = time.Hour
	// staleFor is how long keys are still used when fetching them again
	// fails: an issuer that is down briefly does not stop logins.
	staleFor = 24 * time.Hour
)

// allowedAlgs are the signature algorithms berth accepts at all: the
// asymmetric ones. HMAC would make the issuer's public key a shared secret,
// and "none" is no signature.
var allowedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// keySet is an issuer's signing keys, with the algorithms its discovery
// document says it signs with (empty for a JWKS given inline).
type keySet struct {
	keys []jose.JSONWebKey
	algs []string
}

func (k *keySet) byKid(kid string) []jose.JSONWebKey {
	if kid == "" {
		// A token without a kid can only mean the one key there is.
		if len(k.keys) == 1 {
			return k.keys
		}
		return nil
	}
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if key.KeyID == kid {
			out = append(out, key)
		}
	}
	return out
}

// issuerAlg is the algorithm a key of the issuer signs with: the key's own
// "alg" when it has one, else those the discovery document lists, else the
// one its type implies (RS256 for RSA, as OIDC defaults to).
func (k *keySet) accepts(key jose.JSONWebKey, alg string) (bool, string) {
	if key.Algorithm != "" {
		return key.Algorithm == alg, key.Algorithm
	}
	if len(k.algs) > 0 {
		for _, a := range k.algs {
			if a == alg {
				return true, ""
			}
		}
		return false, strings.Join(k.algs, ", ")
	}
	want := impliedAlg(key)
	return want == alg, want
}

func impliedAlg(key jose.JSONWebKey) string {
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256"
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}

// parseJWKS parses a JWK set, keeping the public signing keys. It refuses
// a set with private or symmetric keys, which have no business here, and
// one without any usable key.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("invalid JWKS: %v", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue // a key type berth does not know: not one it can verify with
		}
		if !k.IsPublic() {
			return nil, errors.New("invalid JWKS: it holds a private or symmetric key; give the issuer's public keys only")
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && !allowedAlgs[k.Algorithm] {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("invalid JWKS: it holds no public signing key berth can use (RSA, ECDSA or Ed25519)")
	}
	return keys, nil
}

// issuerKeys is the cache of one issuer's fetched keys.
type issuerKeys struct {
	mu      sync.Mutex
	set     *keySet
	fetched time.Time // when set was fetched
	err     error     // the last fetch's error, if it failed
	// tokens and filled are the refresh bucket (see refreshBurst).
	tokens float64
	filled time.Time
	// inflight is closed when the fetch in progress ends.
	inflight chan struct{}
}

// take takes a refresh from the bucket, if there is one.
func (ik *issuerKeys) take(now time.Time) bool {
	if ik.filled.IsZero() {
		ik.tokens, ik.filled = refreshBurst, now
	}
	ik.tokens += float64(now.Sub(ik.filled)) / float64(refreshEvery)
	ik.tokens = min(ik.tokens, refreshBurst)
	ik.filled = now
	if ik.tokens < 1 {
		return false
	}
	ik.tokens--
	return true
}

// keysFor returns the keys of issuer that may verify a token with kid,
// fetching them when there are none yet, when they are older than the
// cache lifetime, or when none has kid — the last at a bounded rate.
func (v *Verifier) keysFor(ctx context.Context, issuer, kid string) (*keySet, error) {
	v.mu.Lock()
	ik := v.issuers[issuer]
	if ik == nil {
		ik = &issuerKeys{}
		v.issuers[issuer] = ik
	}
	v.mu.Unlock()

	ik.mu.Lock()
	defer ik.mu.Unlock()
	for {
		now := v.now()
		fresh := ik.set != nil && now.Sub(ik.fetched) < v.cacheTTL
		if fresh && len(ik.set.byKid(kid)) > 0 {
			return ik.set, nil
		}
		if ik.inflight != nil {
			// Another request is fetching: wait for its answer.
			ch := ik.inflight
			ik.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				ik.mu.Lock()
				return nil, ctx.Err()
			}
			ik.mu.Lock()
			if ik.set != nil && len(ik.set.byKid(kid)) > 0 {
				return ik.set, nil
			}
			if ik.set != nil && now.Sub(ik.fetched) < v.cacheTTL {
				return ik.set, nil // fetched just now, and the kid is not there
			}
			if ik.set == nil && ik.err != nil {
				return nil, ik.err
			}
			continue
		}
		// Stale keys are fetched again once per cache lifetime whatever
		// the bucket says; an unknown kid or a failed fetch takes from it.
		stale := ik.set != nil && !fresh
		if !stale && !ik.take(now) {
			if ik.set != nil {
				return ik.set, nil
			}
			if ik.err != nil {
				return nil, fmt.Errorf("%w (not fetched again yet)", ik.err)
			}
			return nil, errors.New("the issuer's keys are not fetched yet")
		}
		ch := make(chan struct{})
		ik.inflight = ch
		ik.mu.Unlock()
		set, err := v.fetch(ctx, issuer)
		ik.mu.Lock()
		ik.inflight = nil
		close(ch)
		if err != nil {
			ik.err = err
			v.log.Warn("fetch federated issuer keys", "issuer", issuer, "err", err)
			if ik.set != nil && v.now().Sub(ik.fetched) < staleFor {
				// Keep using what there is; try again at the bucket's rate.
				ik.fetched = v.now().Add(-v.cacheTTL + refreshEvery)
				return ik.set, nil
			}
			ik.set = nil
			return nil, err
		}
		ik.set, ik.fetched, ik.err = set, v.now(), nil
		return set, nil
	}
}

// fetch reads issuer's discovery document and then its JWKS.
func (v *Verifier) fetch(ctx context.Context, issuer string) (*keySet, error) {
	if err := CheckIssuerURL(issuer, v.allowHTTP); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := v.getJSON(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuer {
		// OIDC discovery 4.3: the document must name the issuer it was
		// fetched for, or its keys are another issuer's.
		return nil, fmt.Errorf("discovery: the document names issuer %q, not %q", doc.Issuer, issuer)
	}
	if err := CheckIssuerURL(doc.JWKSURI, v.allowHTTP); err != nil {
		return nil, fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	var raw json.RawMessage
	if err := v.getJSON(ctx, doc.JWKSURI, &raw); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	keys, err := parseJWKS(raw)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var algs []string
	for _, a := range doc.Algs {
		if allowedAlgs[a] {
			algs = append(algs, a)
		}
	}
	return &keySet{keys: keys, algs: algs}, nil
}

func (v *Verifier) getJSON(ctx context.Context, u string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxDocument {
		return fmt.Errorf("GET %s: the answer is larger than %d KiB", u, maxDocument>>10)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("GET %s: not JSON: %v", u, err)
	}
	return nil
}

// inlineKeys returns the parsed keys of a JWKS a credential holds, cached
// by its content.
func (v *Verifier) inlineKeys(jwks []byte) (*keySet, error) {
	sum := sha256.Sum256(jwks)
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.inline[sum]; ok {
		return k, nil
	}
	keys, err := parseJWKS(jwks)
	if err != nil {
		return nil, err
	}
	if len(v.inline) > 1000 {
		clear(v.inline) // bounded; parsing again is cheap
	}
	k := &keySet{keys: keys}
	v.inline[sum] = k
	return k, nil
}
