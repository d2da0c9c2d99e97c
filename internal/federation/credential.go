// Package federation verifies OIDC tokens (JWTs) that workloads get from
// their platform — a CI system such as GitHub Actions, a Kubernetes
// cluster's service-account issuer — against the federated credentials of
// berth tokens, so that a workload logs in with the token its platform
// already gives it and no stored password.
//
// A federated credential trusts one issuer for one subject (exact or a
// glob), one audience, and optional conditions on other claims. The
// issuer's signing keys come from its OIDC discovery document and JWKS,
// cached and refreshed when a token names an unknown key (at a bounded
// rate), or from a JWKS the credential holds, for issuers berth cannot
// reach. Package identity stores the credentials; package tokenauth asks
// this package whether a JWT satisfies one of them.
package federation

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits of a credential's fields.
const (
	MaxIssuerLength  = 512
	MaxSubjectLength = 512
	MaxClaims        = 16
	MaxClaimLength   = 256
	MaxJWKSSize      = 64 << 10
	// MaxPerToken is how many federated credentials a token may have (as
	// many as an Azure managed identity).
	MaxPerToken = 20
)

// Credential is one federated credential of a token, as the verifier needs
// it.
type Credential struct {
	// Token is the berth token the credential logs in as.
	Token string
	// Name names the credential among the token's.
	Name string
	// Issuer must equal the JWT's "iss".
	Issuer string
	// Subject must equal the JWT's "sub", or match it as a glob ('*' any
	// run of characters, '?' one).
	Subject string
	// Audience must be one of the JWT's "aud".
	Audience string
	// Claims must each equal (or match as a glob) the JWT's claim of that
	// name.
	Claims map[string]string
	// JWKS, when set, holds the issuer's keys: berth fetches nothing for
	// this credential.
	JWKS []byte
	// Serial is the store's serial number of the credential, passed
	// through, so that a credential deleted and made again is another.
	Serial uint64
}

// ValidateName checks a federated credential's name: 3 to 120 letters,
// digits, '-' and '_', starting with a letter or digit.
func ValidateName(name string) error {
	if len(name) < 3 || len(name) > 120 {
		return fmt.Errorf("invalid federated credential name %q: it must be 3 to 120 characters long", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_') {
			return fmt.Errorf("invalid federated credential name %q: only letters, digits, '-' and '_' are allowed, starting with a letter or digit, as in \"github-main\"", name)
		}
	}
	return nil
}

// Validate checks a credential before it is stored. allowHTTPLoopback
// allows an http:// issuer on a loopback address (tests); otherwise an
// issuer whose keys berth fetches must be https.
func (c Credential) Validate(allowHTTPLoopback bool) error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if c.Issuer == "" || len(c.Issuer) > MaxIssuerLength || !utf8.ValidString(c.Issuer) {
		return fmt.Errorf("invalid issuer: give the issuer URL (at most %d characters), as in https://token.actions.githubusercontent.com", MaxIssuerLength)
	}
	if len(c.JWKS) == 0 {
		if err := CheckIssuerURL(c.Issuer, allowHTTPLoopback); err != nil {
			return err
		}
	} else {
		if len(c.JWKS) > MaxJWKSSize {
			return fmt.Errorf("the JWKS is %d bytes, more than the maximum %d", len(c.JWKS), MaxJWKSSize)
		}
		if _, err := parseJWKS(c.JWKS); err != nil {
			return err
		}
	}
	if c.Subject == "" || len(c.Subject) > MaxSubjectLength || !utf8.ValidString(c.Subject) {
		return fmt.Errorf("invalid subject: give the subject the issuer puts in its tokens (at most %d characters), exact or with '*' wildcards, as in repo:acme/app:ref:refs/heads/main", MaxSubjectLength)
	}
	if strings.Trim(c.Subject, "*?") == "" {
		return fmt.Errorf("invalid subject %q: a subject of wildcards only would trust every workload of the issuer", c.Subject)
	}
	if c.Audience == "" || len(c.Audience) > MaxIssuerLength || !utf8.ValidString(c.Audience) {
		return fmt.Errorf("invalid audience: at most %d characters", MaxIssuerLength)
	}
	if len(c.Claims) > MaxClaims {
		return fmt.Errorf("too many claim conditions: at most %d", MaxClaims)
	}
	for k, v := range c.Claims {
		if k == "" || len(k) > MaxClaimLength || len(v) > MaxClaimLength || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("invalid claim condition %q=%q: names and values are 1 to %d characters", k, v, MaxClaimLength)
		}
		switch k {
		case "iss", "sub", "aud", "exp", "nbf", "iat":
			return fmt.Errorf("invalid claim condition %q: that claim is checked by --issuer, --subject, --audience or the token's lifetime", k)
		}
	}
	return nil
}

// CheckIssuerURL checks that berth may fetch an issuer's discovery document
// and keys from u: https, or http on a loopback address when allowed.
func CheckIssuerURL(u string, allowHTTPLoopback bool) error {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.User != nil || p.RawQuery != "" || p.Fragment != "" {
		return fmt.Errorf("invalid issuer URL %q: give an absolute https URL without query or fragment", u)
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		if allowHTTPLoopback && isLoopback(p.Hostname()) {
			return nil
		}
		if isLoopback(p.Hostname()) {
			return fmt.Errorf("issuer URL %q uses http: issuers must use https (start berth with --federation-allow-http-loopback to allow http on loopback, for tests)", u)
		}
	}
	return fmt.Errorf("issuer URL %q must use https", u)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseClaimConditions parses k=v pairs (the CLI's --claim).
func ParseClaimConditions(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid claim condition %q: use name=value, as in repository_owner=acme", p)
		}
		out[k] = v
	}
	return out, nil
}

// FormatClaims shows claim conditions as sorted k=v pairs.
func FormatClaims(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Match reports whether s matches pattern, in which '*' stands for any run
// of characters (':' and '/' included) and '?' for one; every other
// character stands for itself.
func Match(pattern, s string) bool {
	// Iterative wildcard matching with backtracking to the last '*':
	// linear in practice and never exponential.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// claimString is a claim's value as a condition compares it: strings as
// they are, other values in their JSON form (true, 42).
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		return string(b), true
	}
}
