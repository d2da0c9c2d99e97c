package trust

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// Media types and annotations of the signature formats, as cosign and
// Notation write them.
const (
	// CosignSimpleSigning is the layer media type of a cosign signature:
	// the layer is the signed payload, its annotation the signature.
	CosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// CosignArtifactType is the artifact type of a cosign signature stored
	// as an OCI 1.1 referrer (--registry-referrers-mode=oci-1-1).
	CosignArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// NotationArtifactType is the artifact type of a Notation signature.
	NotationArtifactType = "application/vnd.cncf.notary.signature"
	// SigstoreBundleType is the artifact type (and layer media type) of a
	// sigstore bundle, which cosign 3 writes by default as an OCI 1.1
	// referrer: a DSSE envelope over an in-toto statement naming the
	// image.
	SigstoreBundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// cosignSignPredicate is the predicate type of the statement cosign
	// signs for an image in a sigstore bundle (cosign attest uses others).
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

	cosignSignatureAnnotation   = "dev.cosignproject.cosign/signature"
	cosignCertificateAnnotation = "dev.sigstore.cosign/certificate"
	cosignChainAnnotation       = "dev.sigstore.cosign/chain"

	notationJWS  = "application/jose+json"
	notationCOSE = "application/cose"
)

// Bounds of the work one verification does.
const (
	// maxSignatureManifests is how many signature manifests of one
	// artifact are looked at, as notation's MaxSignatureAttempts.
	maxSignatureManifests = 50
	// maxSignatureBlob bounds a payload or envelope read into memory.
	maxSignatureBlob = 4 << 20
	// maxLayers bounds the signatures of one cosign signature manifest.
	maxLayers = 100
)

// compiled is a policy with its keys, certificates and Notation verifier
// parsed, ready to check signatures.
type compiled struct {
	Policy
	pattern auth.Pattern
	// cosign are the verifiers of the policy's keys.
	cosign []signature.Verifier
	// roots are the policy's certificates, for cosign signatures that
	// carry a certificate.
	roots *x509.CertPool
	// notation is nil when the policy has no certificates.
	notation notation.Verifier
}

func compile(p Policy) (*compiled, error) {
	c := &compiled{Policy: p}
	var err error
	if c.pattern, err = auth.ParsePattern(p.Repository); err != nil {
		return nil, err
	}
	for i, k := range p.Keys {
		pub, err := parseKey(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		c.cosign = append(c.cosign, v)
	}
	var certs []*x509.Certificate
	for i, s := range p.Certificates {
		cs, err := parseCertificates(s)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		certs = append(certs, cs...)
	}
	if len(certs) > 0 {
		c.roots = x509.NewCertPool()
		for _, cert := range certs {
			c.roots.AddCert(cert)
		}
		c.notation, err = verifier.New(notationDocument(p.Name, p.TrustedIdentities), memoryTrustStore(certs), nil)
		if err != nil {
			return nil, fmt.Errorf("notation trust policy: %w", err)
		}
	}
	return c, nil
}

func (c *compiled) accepts(format Require) bool {
	return c.Require == RequireAny || c.Require == format
}

// memoryTrustStore is a Notation trust store of one named store of type
// "ca" holding a policy's certificates.
type memoryTrustStore []*x509.Certificate

func (m memoryTrustStore) GetCertificates(_ context.Context, typ truststore.Type, name string) ([]*x509.Certificate, error) {
	if typ != truststore.TypeCA || name != trustStoreName {
		return nil, fmt.Errorf("trust store %s:%s is not configured", typ, name)
	}
	return slices.Clone(m), nil
}

// Content is what verification reads: manifests, referrers and blobs of
// the repository being pulled from.
type Content interface {
	Manifest(ctx context.Context, repo, ref string) (meta.Manifest, error)
	Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]meta.Referrer, error)
	TagManifests(ctx context.Context, repo, last string, n int) ([]meta.TaggedManifest, error)
}

// Blobs opens blob content by digest.
type Blobs interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error)
}

// signatures are the signature manifests found for one artifact.
type signatures struct {
	cosign   []meta.Manifest
	bundles  []meta.Manifest // sigstore bundles (cosign 3)
	notation []meta.Manifest
	// key names every signature manifest found (digests in order), so that
	// a verdict cached under it is stale as soon as a signature is pushed
	// or deleted.
	key string
}

// CosignTag is the tag under which cosign stores the signatures of d:
// "sha256-<hex>.sig".
func CosignTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

// find looks up the signatures of d in repo: cosign's tag, and referrers of
// cosign's and Notation's artifact types.
func find(ctx context.Context, md Content, repo string, d digest.Digest) (signatures, error) {
	var s signatures
	var key strings.Builder
	m, err := md.Manifest(ctx, repo, CosignTag(d))
	switch {
	case err == nil:
		s.cosign = append(s.cosign, m)
		key.WriteString("t" + m.Digest.String())
	case !errors.Is(err, meta.ErrManifestNotFound):
		return s, fmt.Errorf("read %s: %w", CosignTag(d), err)
	}
	refs, err := md.Referrers(ctx, repo, d, "")
	if err != nil {
		return s, fmt.Errorf("read referrers of %s: %w", d, err)
	}
	n := 0
	for _, r := range refs {
		if r.ArtifactType != CosignArtifactType && r.ArtifactType != NotationArtifactType && r.ArtifactType != SigstoreBundleType {
			continue
		}
		if n++; n > maxSignatureManifests {
			break
		}
		m, err := md.Manifest(ctx, repo, r.Digest.String())
		if errors.Is(err, meta.ErrManifestNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return s, fmt.Errorf("read signature %s: %w", r.Digest, err)
		}
		switch r.ArtifactType {
		case CosignArtifactType:
			s.cosign = append(s.cosign, m)
		case SigstoreBundleType:
			s.bundles = append(s.bundles, m)
		default:
			s.notation = append(s.notation, m)
		}
		key.WriteString(" r" + r.Digest.String())
	}
	s.key = key.String()
	return s, nil
}

// verifier checks the signatures of one artifact against compiled policies.
type checker struct {
	blobs Blobs
}

// verify reports whether one of sigs is a valid signature of target by c,
// or why none is.
func (v *checker) verify(ctx context.Context, c *compiled, repo string, target ocispec.Descriptor, sigs signatures) (bool, string) {
	var why []string
	if c.accepts(RequireCosign) && (len(c.cosign) > 0 || c.roots != nil) {
		for _, m := range sigs.cosign {
			ok, reason := v.verifyCosign(ctx, c, target.Digest, m)
			if ok {
				return true, ""
			}
			why = append(why, reason)
		}
		for _, m := range sigs.bundles {
			ok, reason := v.verifyBundle(ctx, c, target.Digest, m)
			if ok {
				return true, ""
			}
			why = append(why, reason)
		}
	}
	if c.accepts(RequireNotation) && c.notation != nil {
		for _, m := range sigs.notation {
			ok, reason := v.verifyNotation(ctx, c, repo, target, m)
			if ok {
				return true, ""
			}
			why = append(why, reason)
		}
	}
	if len(why) == 0 {
		switch c.Require {
		case RequireCosign:
			return false, "no cosign signature"
		case RequireNotation:
			return false, "no Notation signature"
		}
		return false, "no signature"
	}
	return false, "no signature by the policy's keys or certificates (" + strings.Join(dedupe(why), "; ") + ")"
}

func dedupe(l []string) []string {
	slices.Sort(l)
	l = slices.Compact(l)
	if len(l) > 3 {
		l = append(l[:3], "…")
	}
	return l
}

// parseLayers reads the layer descriptors of a signature manifest.
func parseLayers(m meta.Manifest) ([]ocispec.Descriptor, error) {
	var doc struct {
		Layers []ocispec.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(m.Content, &doc); err != nil {
		return nil, err
	}
	if len(doc.Layers) > maxLayers {
		doc.Layers = doc.Layers[:maxLayers]
	}
	return doc.Layers, nil
}

// readBlob reads a small blob and checks it against its descriptor.
func (v *checker) readBlob(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size < 0 || d.Size > maxSignatureBlob {
		return nil, fmt.Errorf("blob %s is %d bytes, more than a signature may be", d.Digest, d.Size)
	}
	if err := d.Digest.Validate(); err != nil {
		return nil, err
	}
	rc, err := v.blobs.Open(ctx, d.Digest)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSignatureBlob+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d.Digest, err)
	}
	if int64(len(b)) != d.Size || d.Digest.Algorithm().FromBytes(b) != d.Digest {
		return nil, fmt.Errorf("blob %s does not match its descriptor", d.Digest)
	}
	return b, nil
}

// verifyCosign checks the signatures of one cosign signature manifest
// (the .sig tag's, which holds one layer per signature, or a referrer's):
// each layer is a simple signing payload, signed as its annotation says,
// and the payload must name target.
func (v *checker) verifyCosign(ctx context.Context, c *compiled, target digest.Digest, m meta.Manifest) (bool, string) {
	layers, err := parseLayers(m)
	if err != nil {
		return false, "unreadable cosign signature manifest"
	}
	reason := "cosign signature by another key"
	for _, l := range layers {
		if l.MediaType != CosignSimpleSigning {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSignatureAnnotation])
		if err != nil || len(sig) == 0 {
			reason = "cosign layer without a signature"
			continue
		}
		body, err := v.readBlob(ctx, l)
		if err != nil {
			reason = "cosign payload unreadable"
			continue
		}
		verifiers := c.cosign
		if pem := l.Annotations[cosignCertificateAnnotation]; pem != "" && c.roots != nil {
			if cv, err := certificateVerifier(pem, l.Annotations[cosignChainAnnotation], c.roots); err == nil {
				verifiers = append(slices.Clip(verifiers), cv)
			}
		}
		signed := false
		for _, sv := range verifiers {
			if sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
				signed = true
				break
			}
		}
		if !signed {
			continue
		}
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(body, &p); err != nil || p.Critical.Type != payload.CosignSignatureType {
			reason = "cosign payload is not a container image signature"
			continue
		}
		if p.Critical.Image.DockerManifestDigest != target.String() {
			// A valid signature of another manifest, copied beside this one.
			reason = "cosign signature of another manifest"
			continue
		}
		return true, ""
	}
	return false, reason
}

// sigstoreBundle is the part of a sigstore bundle (protobuf-specs
// Bundle, in its JSON form) that a key or certificate verifies.
type sigstoreBundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		Certificate *struct {
			RawBytes []byte `json:"rawBytes"`
		} `json:"certificate"`
		X509CertificateChain *struct {
			Certificates []struct {
				RawBytes []byte `json:"rawBytes"`
			} `json:"certificates"`
		} `json:"x509CertificateChain"`
	} `json:"verificationMaterial"`
	DSSEEnvelope *struct {
		Payload     []byte `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig []byte `json:"sig"`
		} `json:"signatures"`
	} `json:"dsseEnvelope"`
}

// verifyBundle checks a sigstore bundle that cosign 3 attached as a
// referrer: the DSSE envelope's signature over its pre-authentication
// encoding (dsse.PAE) with one of the policy's keys, or with the bundle's
// certificate once it chains to one of the policy's certificates; and the
// signed in-toto statement must be cosign's image signature of target.
// Transparency-log entries and timestamps in the bundle are not checked
// (offline key verification, as for the other cosign formats).
func (v *checker) verifyBundle(ctx context.Context, c *compiled, target digest.Digest, m meta.Manifest) (bool, string) {
	layers, err := parseLayers(m)
	if err != nil || len(layers) != 1 || layers[0].MediaType != SigstoreBundleType {
		return false, "malformed sigstore bundle manifest"
	}
	body, err := v.readBlob(ctx, layers[0])
	if err != nil {
		return false, "sigstore bundle unreadable"
	}
	var b sigstoreBundle
	if err := json.Unmarshal(body, &b); err != nil || b.DSSEEnvelope == nil || len(b.DSSEEnvelope.Signatures) == 0 {
		return false, "sigstore bundle without a DSSE signature"
	}
	env := b.DSSEEnvelope
	verifiers := c.cosign
	var der []byte
	if vm := b.VerificationMaterial; vm.Certificate != nil {
		der = vm.Certificate.RawBytes
	} else if vm.X509CertificateChain != nil && len(vm.X509CertificateChain.Certificates) > 0 {
		der = vm.X509CertificateChain.Certificates[0].RawBytes
	}
	if der != nil && c.roots != nil {
		if cert, err := x509.ParseCertificate(der); err == nil {
			pemText := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
			if cv, err := certificateVerifier(pemText, "", c.roots); err == nil {
				verifiers = append(slices.Clip(verifiers), cv)
			}
		}
	}
	pae := dsse.PAE(env.PayloadType, env.Payload)
	signed := false
	for _, sig := range env.Signatures {
		for _, sv := range verifiers {
			if sv.VerifySignature(bytes.NewReader(sig.Sig), bytes.NewReader(pae)) == nil {
				signed = true
			}
		}
	}
	if !signed {
		return false, "sigstore bundle signed by another key"
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if env.PayloadType != "application/vnd.in-toto+json" || json.Unmarshal(env.Payload, &st) != nil || st.PredicateType != cosignSignPredicate {
		return false, "sigstore bundle is not a cosign image signature"
	}
	for _, sub := range st.Subject {
		if sub.Digest[target.Algorithm().String()] == target.Encoded() {
			return true, ""
		}
	}
	return false, "cosign signature of another manifest"
}

// certificateVerifier verifies with the key of a cosign signature's
// certificate, once the certificate chains to one of roots (through the
// chain annotation's intermediates) for code signing.
func certificateVerifier(certPEM, chainPEM string, roots *x509.CertPool) (signature.Verifier, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	if chainPEM != "" {
		if chain, err := parseCertificates(chainPEM); err == nil {
			for _, c := range chain {
				inter.AddCert(c)
			}
		}
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		return nil, err
	}
	return signature.LoadVerifier(leaf.PublicKey, crypto.SHA256)
}

// verifyNotation checks one Notation signature manifest with notation-go's
// verifier under the policy's trust policy and trust store; the verifier
// also checks that the signed payload names target (media type, digest and
// size).
func (v *checker) verifyNotation(ctx context.Context, c *compiled, repo string, target ocispec.Descriptor, m meta.Manifest) (bool, string) {
	layers, err := parseLayers(m)
	if err != nil || len(layers) != 1 {
		return false, "malformed Notation signature manifest"
	}
	l := layers[0]
	if l.MediaType != notationJWS && l.MediaType != notationCOSE {
		return false, "Notation signature of unknown envelope type"
	}
	env, err := v.readBlob(ctx, l)
	if err != nil {
		return false, "Notation envelope unreadable"
	}
	_, err = c.notation.Verify(ctx, target, env, notation.VerifierVerifyOptions{
		ArtifactReference:  "berth.invalid/" + repo + "@" + target.Digest.String(),
		SignatureMediaType: l.MediaType,
	})
	if err != nil {
		return false, "Notation signature not trusted: " + firstLine(err.Error())
	}
	return true, ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
