// Package trust holds berth's signature policies: which repositories may be
// pulled only when a manifest carries a valid signature by one of a policy's
// keys (cosign) or certificates (Notation), the verification of those
// signatures with the ecosystem's own libraries (sigstore's signature
// package for cosign's simple signing payloads, notation-go for Notation
// envelopes), and a cache of verdicts keyed so that it never outlives what
// it was computed from.
package trust

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/berth-registry/berth/internal/auth"
)

// Require names the signature formats a policy accepts.
type Require string

// The formats.
const (
	RequireCosign   Require = "cosign"
	RequireNotation Require = "notation"
	RequireAny      Require = "any"
)

// Mode says what a policy does with a manifest that lacks a valid signature.
type Mode string

// The modes.
const (
	// ModeEnforce refuses the pull (403 DENIED naming the policy).
	ModeEnforce Mode = "enforce"
	// ModeAudit serves it and records the finding in the audit log.
	ModeAudit Mode = "audit"
)

// Policy is one signature policy.
type Policy struct {
	Name string `json:"name"`
	// Repository is a repository pattern as in scope maps: "team/app",
	// "team/*" or "*".
	Repository string  `json:"repository"`
	Require    Require `json:"require"`
	Mode       Mode    `json:"mode"`
	// Keys are PEM public keys that cosign signatures must verify with.
	Keys []string `json:"keys,omitempty"`
	// Certificates are PEM certificates: Notation's trust store for the
	// policy (the roots signing chains must end in), and the roots of
	// cosign signatures made with a certificate.
	Certificates []string `json:"certificates,omitempty"`
	// TrustedIdentities are Notation trust policy identities
	// ("x509.subject: CN=..., O=..."); empty means "*", any identity the
	// certificates vouch for.
	TrustedIdentities []string `json:"trustedIdentities,omitempty"`
	// Version changes with every change of the policy; cached verdicts
	// name it.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ErrInvalid wraps a policy that cannot be stored.
var ErrInvalid = errors.New("invalid signature policy")

// ErrNotFound means no policy has the name.
var ErrNotFound = errors.New("signature policy not found")

// ErrConflict means a policy with the name exists.
var ErrConflict = errors.New("signature policy exists")

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,49}$`)

// Bounds of a policy.
const (
	maxKeys       = 32
	maxPEM        = 64 << 10
	maxIdentities = 32
)

// Normalize fills in defaults and checks p, so that every policy stored can
// be compiled: its name, pattern, format, mode, and that each key and
// certificate parses.
func (p *Policy) Normalize() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(p.Name) {
		return invalid("name %q: use 1 to 50 letters, digits, '-' or '_', starting with a letter or digit", p.Name)
	}
	if _, err := auth.ParsePattern(p.Repository); err != nil {
		return invalid("%v", err)
	}
	if p.Require == "" {
		p.Require = RequireAny
	}
	switch p.Require {
	case RequireCosign, RequireNotation, RequireAny:
	default:
		return invalid("require %q: use cosign, notation or any", p.Require)
	}
	if p.Mode == "" {
		p.Mode = ModeEnforce
	}
	if p.Mode != ModeEnforce && p.Mode != ModeAudit {
		return invalid("mode %q: use enforce or audit", p.Mode)
	}
	if len(p.Keys) > maxKeys || len(p.Certificates) > maxKeys {
		return invalid("at most %d keys and %d certificates", maxKeys, maxKeys)
	}
	if len(p.TrustedIdentities) > maxIdentities {
		return invalid("at most %d trusted identities", maxIdentities)
	}
	for i, k := range p.Keys {
		if len(k) > maxPEM {
			return invalid("key %d is larger than %d bytes", i+1, maxPEM)
		}
		if _, err := parseKey(k); err != nil {
			return invalid("key %d: %v", i+1, err)
		}
	}
	for i, c := range p.Certificates {
		if len(c) > maxPEM {
			return invalid("certificate %d is larger than %d bytes", i+1, maxPEM)
		}
		if _, err := parseCertificates(c); err != nil {
			return invalid("certificate %d: %v", i+1, err)
		}
	}
	switch {
	case p.Require == RequireCosign && len(p.Keys) == 0 && len(p.Certificates) == 0:
		return invalid("require cosign needs at least one key (--key) or certificate (--certificate)")
	case p.Require == RequireNotation && len(p.Certificates) == 0:
		return invalid("require notation needs at least one certificate (--certificate): Notation signatures are verified against certificates, not bare keys")
	case len(p.Keys) == 0 && len(p.Certificates) == 0:
		return invalid("a policy needs at least one key (--key) or certificate (--certificate)")
	}
	for _, id := range p.TrustedIdentities {
		if strings.TrimSpace(id) == "" {
			return invalid("an empty trusted identity")
		}
	}
	if ids := p.TrustedIdentities; len(ids) > 0 {
		// notation-go checks the identities as part of its trust policy.
		if err := notationDocument(p.Name, ids).Validate(); err != nil {
			return invalid("trusted identities: %v", err)
		}
	}
	return nil
}

// notationDocument is the Notation trust policy of a berth policy: every
// artifact it is asked about, the policy's certificates as its one trust
// store, the strict verification level (integrity, authenticity, expiry and
// revocation, as `notation verify` with a strict policy).
func notationDocument(name string, identities []string) *trustpolicy.Document {
	if len(identities) == 0 {
		identities = []string{"*"}
	}
	return &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  name,
			RegistryScopes:        []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: trustpolicy.LevelStrict.Name},
			TrustStores:           []string{"ca:" + trustStoreName},
			TrustedIdentities:     slices.Clone(identities),
		}},
	}
}

const trustStoreName = "berth"

// parseKey reads one PEM public key, as `cosign generate-key-pair` writes
// cosign.pub.
func parseKey(s string) (crypto.PublicKey, error) {
	k, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("not a PEM public key: %v", err)
	}
	return k, nil
}

// parseCertificates reads one or more PEM certificates.
func parseCertificates(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q, not CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}
