package trust

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// fakeContent is one registry's manifests, tags, referrers and blobs.
type fakeContent struct {
	mu        sync.Mutex
	manifests map[string]map[string]meta.Manifest // repo → digest or tag
	tags      map[string]map[string]digest.Digest
	blobs     map[digest.Digest][]byte
}

func newContent() *fakeContent {
	return &fakeContent{manifests: map[string]map[string]meta.Manifest{}, tags: map[string]map[string]digest.Digest{}, blobs: map[digest.Digest][]byte{}}
}

func (f *fakeContent) blob(b []byte) ocispec.Descriptor {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

// put stores a manifest document under its digest and the given tags.
func (f *fakeContent) put(repo string, doc any, tags ...string) meta.Manifest {
	b, _ := json.Marshal(doc)
	var parsed struct {
		MediaType    string              `json:"mediaType"`
		ArtifactType string              `json:"artifactType"`
		Config       *ocispec.Descriptor `json:"config"`
		Subject      *ocispec.Descriptor `json:"subject"`
	}
	json.Unmarshal(b, &parsed)
	m := meta.Manifest{Digest: digest.FromBytes(b), MediaType: parsed.MediaType, ArtifactType: parsed.ArtifactType, Content: b, Size: int64(len(b))}
	if m.ArtifactType == "" && parsed.Config != nil {
		m.ArtifactType = parsed.Config.MediaType
	}
	if parsed.Subject != nil {
		m.Subject = parsed.Subject.Digest
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.manifests[repo] == nil {
		f.manifests[repo], f.tags[repo] = map[string]meta.Manifest{}, map[string]digest.Digest{}
	}
	f.manifests[repo][m.Digest.String()] = m
	for _, t := range tags {
		f.tags[repo][t] = m.Digest
	}
	return m
}

func (f *fakeContent) remove(repo string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.manifests[repo], d.String())
	for t, td := range f.tags[repo] {
		if td == d {
			delete(f.tags[repo], t)
		}
	}
}

func (f *fakeContent) Manifest(_ context.Context, repo, ref string) (meta.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.tags[repo][ref]; ok {
		ref = d.String()
	}
	m, ok := f.manifests[repo][ref]
	if !ok {
		return meta.Manifest{}, meta.ErrManifestNotFound
	}
	return m, nil
}

func (f *fakeContent) Referrers(_ context.Context, repo string, d digest.Digest, _ string) ([]meta.Referrer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []meta.Referrer
	for _, m := range f.manifests[repo] {
		if m.Subject == d {
			out = append(out, meta.Referrer{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size, ArtifactType: m.ArtifactType})
		}
	}
	return out, nil
}

func (f *fakeContent) TagManifests(_ context.Context, repo, _ string, _ int) ([]meta.TaggedManifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []meta.TaggedManifest
	for t, d := range f.tags[repo] {
		out = append(out, meta.TaggedManifest{Tag: t, Manifest: f.manifests[repo][d.String()]})
	}
	return out, nil
}

func (f *fakeContent) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[d]
	if !ok {
		return nil, errors.New("blob unknown")
	}
	return nopCloser{bytes.NewReader(b)}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// image pushes a small image manifest with a unique config.
func (f *fakeContent) image(repo, name string, tags ...string) meta.Manifest {
	cfg := f.blob([]byte(`{"name":"` + name + `"}`))
	cfg.MediaType = ocispec.MediaTypeImageConfig
	layer := f.blob([]byte("layer of " + name))
	layer.MediaType = ocispec.MediaTypeImageLayerGzip
	return f.put(repo, ocispec.Manifest{Versioned: versioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}}, tags...)
}

var versioned = struct {
	SchemaVersion int `json:"schemaVersion"`
}{2}

func desc(m meta.Manifest) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Content))}
}

// cosignKey is a cosign key pair.
type cosignKey struct {
	signer signature.Signer
	pub    string
}

func newCosignKey(t *testing.T) cosignKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return cosignKey{signer: s, pub: string(pub)}
}

// cosignLayer signs a simple signing payload that names target, as cosign
// sign does.
func (f *fakeContent) cosignLayer(t *testing.T, k cosignKey, target digest.Digest) ocispec.Descriptor {
	t.Helper()
	body, err := json.Marshal(payload.SimpleContainerImage{Critical: payload.Critical{
		Identity: payload.Identity{DockerReference: "registry.test/prod/app"},
		Image:    payload.Image{DockerManifestDigest: target.String()},
		Type:     payload.CosignSignatureType,
	}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	d := f.blob(body)
	d.MediaType = CosignSimpleSigning
	d.Annotations = map[string]string{cosignSignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}
	return d
}

// signCosignTag stores cosign signatures of target under its .sig tag.
func (f *fakeContent) signCosignTag(t *testing.T, repo string, target meta.Manifest, layers ...ocispec.Descriptor) meta.Manifest {
	cfg := f.blob([]byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	cfg.MediaType = ocispec.MediaTypeImageConfig
	return f.put(repo, ocispec.Manifest{Versioned: versioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers}, CosignTag(target.Digest))
}

// signCosignReferrer stores a cosign signature as an OCI 1.1 referrer.
func (f *fakeContent) signCosignReferrer(t *testing.T, repo string, target meta.Manifest, layer ocispec.Descriptor) meta.Manifest {
	cfg := f.blob([]byte(`{}`))
	cfg.MediaType = CosignArtifactType
	s := desc(target)
	return f.put(repo, struct {
		ocispec.Manifest
		ArtifactType string `json:"artifactType"`
	}{ocispec.Manifest{Versioned: versioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}, Subject: &s}, CosignArtifactType})
}

// signBundle stores a sigstore bundle as cosign 3 writes it by default: a
// referrer whose one layer is the bundle, a DSSE envelope over an in-toto
// statement with the given predicate type that names target.
func (f *fakeContent) signBundle(t *testing.T, repo string, target meta.Manifest, k cosignKey, predicate string) meta.Manifest {
	t.Helper()
	statement, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": target.Digest.Encoded()}}},
		"predicateType": predicate,
		"predicate":     map[string]any{},
	})
	const payloadType = "application/vnd.in-toto+json"
	sig, err := k.signer.SignMessage(bytes.NewReader(dsse.PAE(payloadType, statement)))
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := json.Marshal(map[string]any{
		"mediaType":            SigstoreBundleType,
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "k"}},
		"dsseEnvelope": map[string]any{"payload": statement, "payloadType": payloadType,
			"signatures": []any{map[string]any{"sig": sig, "keyid": ""}}},
	})
	layer := f.blob(bundle)
	layer.MediaType = SigstoreBundleType
	cfg := f.blob([]byte(`{}`))
	cfg.MediaType = ocispec.MediaTypeEmptyJSON
	sub := desc(target)
	return f.put(repo, struct {
		ocispec.Manifest
		ArtifactType string `json:"artifactType"`
	}{ocispec.Manifest{Versioned: versioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}, Subject: &sub}, SigstoreBundleType})
}

// notaryCA is a test CA and a code-signing leaf it issued.
type notaryCA struct {
	caPEM string
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate
}

func newNotaryCA(t *testing.T, cn string) notaryCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn + " CA", Organization: []string{"berth test"}, Country: []string{"US"}, Province: []string{"WA"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"berth test"}, Country: []string{"US"}, Province: []string{"WA"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return notaryCA{caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), key: leafKey, chain: []*x509.Certificate{leaf, ca}}
}

// signNotation stores a Notation signature of target as notation sign
// does: a referrer whose one layer is the JWS envelope.
func (f *fakeContent) signNotation(t *testing.T, repo string, target meta.Manifest, ca notaryCA) meta.Manifest {
	t.Helper()
	s, err := signer.NewGenericSigner(ca.key, ca.chain)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := s.Sign(context.Background(), desc(target), notation.SignerSignOptions{SignatureMediaType: notationJWS})
	if err != nil {
		t.Fatal(err)
	}
	layer := f.blob(env)
	layer.MediaType = notationJWS
	cfg := f.blob([]byte(`{}`))
	cfg.MediaType = ocispec.MediaTypeEmptyJSON
	sub := desc(target)
	return f.put(repo, struct {
		ocispec.Manifest
		ArtifactType string `json:"artifactType"`
	}{ocispec.Manifest{Versioned: versioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}, Subject: &sub}, NotationArtifactType})
}

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

func openDB(t *testing.T, setting string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), setting, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func newService(t *testing.T, db *sqldb.DB, c *fakeContent) *Service {
	t.Helper()
	s, err := New(Options{DB: db, Content: c, Blobs: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckPull(t *testing.T) {
	ctx := context.Background()
	keyA, keyB := newCosignKey(t), newCosignKey(t)
	caA, caB := newNotaryCA(t, "signer a"), newNotaryCA(t, "signer b")
	cases := []struct {
		name     string
		policy   *Policy // nil: none
		repo     string
		prepare  func(t *testing.T, c *fakeContent, repo string) meta.Manifest
		refused  bool
		findings int
	}{
		{name: "no policy", repo: "prod/app", prepare: unsigned, refused: false},
		{name: "policy of another repository", policy: &Policy{Repository: "staging/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", prepare: unsigned},
		{name: "unsigned", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", prepare: unsigned, refused: true},
		{name: "cosign tag by the key", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signCosignTag(t, repo, m, c.cosignLayer(t, keyB, m.Digest), c.cosignLayer(t, keyA, m.Digest))
				return m
			}},
		{name: "cosign tag by another key", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signCosignTag(t, repo, m, c.cosignLayer(t, keyB, m.Digest))
				return m
			}},
		{name: "cosign signature of another manifest copied", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				other := c.image(repo, "other", "v0")
				m := c.image(repo, "x", "v1")
				c.signCosignTag(t, repo, m, c.cosignLayer(t, keyA, other.Digest))
				return m
			}},
		{name: "cosign referrer by the key", policy: &Policy{Repository: "prod/app", Require: RequireAny, Keys: []string{keyA.pub}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signCosignReferrer(t, repo, m, c.cosignLayer(t, keyA, m.Digest))
				return m
			}},
		{name: "cosign 3 bundle by the key", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signBundle(t, repo, m, keyB, cosignSignPredicate)
				c.signBundle(t, repo, m, keyA, cosignSignPredicate)
				return m
			}},
		{name: "cosign 3 bundle by another key", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signBundle(t, repo, m, keyB, cosignSignPredicate)
				return m
			}},
		{name: "cosign 3 attestation is no signature", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signBundle(t, repo, m, keyA, "https://slsa.dev/provenance/v1")
				return m
			}},
		{name: "cosign 3 bundle of another manifest", policy: &Policy{Repository: "prod/*", Require: RequireCosign, Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				other := c.image(repo, "other", "v0")
				m := c.image(repo, "x", "v1")
				sig := c.signBundle(t, repo, other, keyA, cosignSignPredicate)
				// Re-attach the other manifest's bundle to m.
				var doc map[string]any
				json.Unmarshal(sig.Content, &doc)
				doc["subject"] = desc(m)
				c.put(repo, doc)
				return m
			}},
		{name: "cosign signature where notation is required", policy: &Policy{Repository: "*", Require: RequireNotation, Keys: []string{keyA.pub}, Certificates: []string{caA.caPEM}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signCosignTag(t, repo, m, c.cosignLayer(t, keyA, m.Digest))
				return m
			}},
		{name: "notation by the trusted CA", policy: &Policy{Repository: "prod/*", Require: RequireNotation, Certificates: []string{caA.caPEM}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signNotation(t, repo, m, caB)
				c.signNotation(t, repo, m, caA)
				return m
			}},
		{name: "notation by another CA", policy: &Policy{Repository: "prod/*", Require: RequireNotation, Certificates: []string{caA.caPEM}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signNotation(t, repo, m, caB)
				return m
			}},
		{name: "notation identity not trusted", policy: &Policy{Repository: "prod/*", Require: RequireNotation, Certificates: []string{caA.caPEM}, TrustedIdentities: []string{"x509.subject: C=US, ST=WA, O=berth test, CN=someone else"}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signNotation(t, repo, m, caA)
				return m
			}},
		{name: "notation identity trusted", policy: &Policy{Repository: "prod/*", Require: RequireNotation, Certificates: []string{caA.caPEM}, TrustedIdentities: []string{"x509.subject: C=US, ST=WA, O=berth test, CN=signer a"}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signNotation(t, repo, m, caA)
				return m
			}},
		{name: "notation where any is required", policy: &Policy{Repository: "prod/*", Keys: []string{keyA.pub}, Certificates: []string{caA.caPEM}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				c.signNotation(t, repo, m, caA)
				return m
			}},
		{name: "audit mode serves unsigned and reports", policy: &Policy{Repository: "prod/*", Mode: ModeAudit, Keys: []string{keyA.pub}}, repo: "prod/app", prepare: unsigned, findings: 1},
		{name: "signature artifact itself", policy: &Policy{Repository: "prod/*", Keys: []string{keyA.pub}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				m := c.image(repo, "x", "v1")
				return c.signCosignTag(t, repo, m, c.cosignLayer(t, keyB, m.Digest))
			}},
		{name: "notation signature artifact itself", policy: &Policy{Repository: "prod/*", Certificates: []string{caA.caPEM}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				return c.signNotation(t, repo, c.image(repo, "x", "v1"), caB)
			}},
		{name: "child of a signed index", policy: &Policy{Repository: "prod/*", Keys: []string{keyA.pub}}, repo: "prod/app",
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				child := c.image(repo, "amd64")
				idx := c.put(repo, ocispec.Index{Versioned: versioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc(child)}}, "multi")
				c.signCosignTag(t, repo, idx, c.cosignLayer(t, keyA, idx.Digest))
				return child
			}},
		{name: "child of an unsigned index", policy: &Policy{Repository: "prod/*", Keys: []string{keyA.pub}}, repo: "prod/app", refused: true,
			prepare: func(t *testing.T, c *fakeContent, repo string) meta.Manifest {
				child := c.image(repo, "amd64")
				c.put(repo, ocispec.Index{Versioned: versioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc(child)}}, "multi")
				return child
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newContent()
			s := newService(t, openDB(t, ""), c)
			if tc.policy != nil {
				p := *tc.policy
				p.Name = "prod"
				if _, err := s.Create(ctx, owner, p); err != nil {
					t.Fatal(err)
				}
			}
			m := tc.prepare(t, c, tc.repo)
			d, err := s.CheckPull(ctx, tc.repo, m)
			if err != nil {
				t.Fatal(err)
			}
			if (d.Refusal != "") != tc.refused {
				t.Errorf("refusal %q, want refused=%v", d.Refusal, tc.refused)
			}
			if tc.refused && !strings.Contains(d.Refusal, `"prod"`) {
				t.Errorf("refusal %q does not name the policy", d.Refusal)
			}
			if len(d.Findings) != tc.findings {
				t.Errorf("findings %q, want %d", d.Findings, tc.findings)
			}
		})
	}
}

func unsigned(_ *testing.T, c *fakeContent, repo string) meta.Manifest {
	return c.image(repo, "x", "v1")
}

// TestVerdictsFollowChanges checks that a cached verdict never outlives a
// signature deleted or pushed, or a policy changed on another node (a
// second Service on the same database).
func TestVerdictsFollowChanges(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			setting := ""
			if engine == "postgres" {
				setting = testutil.StartPostgres(t).NewDatabase()
			}
			testVerdictsFollowChanges(t, setting)
		})
	}
}

func testVerdictsFollowChanges(t *testing.T, setting string) {
	ctx := context.Background()
	keyA, keyB := newCosignKey(t), newCosignKey(t)
	c := newContent()
	db := openDB(t, setting)
	node1, node2 := newService(t, db, c), newService(t, db, c)
	const repo = "prod/app"
	m := c.image(repo, "x", "v1")
	refused := func(s *Service) bool {
		t.Helper()
		d, err := s.CheckPull(ctx, repo, m)
		if err != nil {
			t.Fatal(err)
		}
		return d.Refusal != ""
	}
	if refused(node2) {
		t.Fatal("refused without a policy")
	}
	if _, err := node1.Create(ctx, owner, Policy{Name: "prod", Repository: "prod/*", Keys: []string{keyA.pub}}); err != nil {
		t.Fatal(err)
	}
	if !refused(node2) {
		t.Fatal("a policy created on node 1 does not apply to node 2's next pull")
	}
	sig := c.signCosignTag(t, repo, m, c.cosignLayer(t, keyA, m.Digest))
	if refused(node2) || refused(node1) {
		t.Fatal("refused once signed")
	}
	c.remove(repo, sig.Digest)
	if !refused(node2) {
		t.Fatal("served from the cache after the signature was deleted")
	}
	c.signCosignTag(t, repo, m, c.cosignLayer(t, keyA, m.Digest))
	if refused(node2) {
		t.Fatal("refused after the signature was pushed again")
	}
	if _, err := node1.Update(ctx, owner, Policy{Name: "prod", Repository: "prod/*", Keys: []string{keyB.pub}}); err != nil {
		t.Fatal(err)
	}
	if !refused(node2) {
		t.Fatal("served from the cache after the policy changed its key")
	}
	if _, err := node1.Update(ctx, owner, Policy{Name: "prod", Repository: "prod/*", Keys: []string{keyB.pub}, Mode: ModeAudit}); err != nil {
		t.Fatal(err)
	}
	if refused(node2) {
		t.Fatal("refused in audit mode")
	}
	if err := node1.Delete(ctx, owner, "prod"); err != nil {
		t.Fatal(err)
	}
	if refused(node2) {
		t.Fatal("refused after the policy was deleted")
	}
	if n := node2.cache.len(); n == 0 {
		t.Error("no verdict was cached")
	}
}

func TestPolicyManagement(t *testing.T) {
	ctx := context.Background()
	key := newCosignKey(t)
	s := newService(t, openDB(t, ""), newContent())
	reader := auth.Identity{Kind: auth.KindUser, Name: "r", Role: auth.RoleReader}
	token := auth.Identity{Kind: auth.KindToken, Name: "ci"}
	valid := Policy{Name: "prod", Repository: "prod/*", Require: RequireCosign, Keys: []string{key.pub}}
	if _, err := s.Create(ctx, reader, valid); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader creates: %v, want ErrForbidden", err)
	}
	if _, err := s.List(ctx, token); !errors.Is(err, ErrForbidden) {
		t.Errorf("token lists: %v, want ErrForbidden", err)
	}
	invalid := []Policy{
		{Name: "", Repository: "prod/*", Keys: []string{key.pub}},
		{Name: "p", Repository: "prod/a*", Keys: []string{key.pub}},
		{Name: "p", Repository: "prod/*", Require: "gpg", Keys: []string{key.pub}},
		{Name: "p", Repository: "prod/*", Mode: "warn", Keys: []string{key.pub}},
		{Name: "p", Repository: "prod/*"},
		{Name: "p", Repository: "prod/*", Keys: []string{"not a key"}},
		{Name: "p", Repository: "prod/*", Certificates: []string{key.pub}},
		{Name: "p", Repository: "prod/*", Require: RequireNotation, Keys: []string{key.pub}},
		{Name: "p", Repository: "prod/*", Certificates: []string{newNotaryCA(t, "x").caPEM}, TrustedIdentities: []string{"x509.subject: nonsense"}},
	}
	for _, p := range invalid {
		if _, err := s.Create(ctx, owner, p); !errors.Is(err, ErrInvalid) {
			t.Errorf("create %+v: %v, want ErrInvalid", p, err)
		}
	}
	created, err := s.Create(ctx, owner, valid)
	if err != nil {
		t.Fatal(err)
	}
	if created.Mode != ModeEnforce || created.Version == 0 {
		t.Errorf("created %+v: want mode enforce and a version", created)
	}
	if _, err := s.Create(ctx, owner, valid); !errors.Is(err, ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}
	got, err := s.Get(ctx, reader, "prod")
	if err != nil || got.Repository != "prod/*" || len(got.Keys) != 1 || got.Version != created.Version {
		t.Errorf("get: %+v, %v", got, err)
	}
	if err := s.Delete(ctx, owner, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete unknown: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, owner, "prod"); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.List(ctx, owner); err != nil || len(ps) != 0 {
		t.Errorf("after delete: %v, %v", ps, err)
	}
}

// TestVerdictCache checks that a verdict is computed once and then reused,
// and computed again once it is older than verdictTTL (a certificate may
// have expired or been revoked meanwhile).
func TestVerdictCache(t *testing.T) {
	ctx := context.Background()
	key := newCosignKey(t)
	c := newContent()
	s := newService(t, openDB(t, ""), c)
	now := time.Now()
	s.store.now = func() time.Time { return now }
	if _, err := s.Create(ctx, owner, Policy{Name: "prod", Repository: "prod/*", Keys: []string{key.pub}}); err != nil {
		t.Fatal(err)
	}
	m := c.image("prod/app", "x", "v1")
	c.signCosignTag(t, "prod/app", m, c.cosignLayer(t, key, m.Digest))
	pull := func() {
		t.Helper()
		d, err := s.CheckPull(ctx, "prod/app", m)
		if err != nil || d.Refusal != "" {
			t.Fatalf("refused: %q, %v", d.Refusal, err)
		}
	}
	for range 3 {
		pull()
	}
	if n := s.verifications.Load(); n != 1 {
		t.Errorf("%d verifications for three pulls, want 1", n)
	}
	now = now.Add(verdictTTL)
	pull()
	if n := s.verifications.Load(); n != 2 {
		t.Errorf("%d verifications after the TTL, want 2", n)
	}
}
