package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// content is the bulk data pushed and pulled: one buffer of incompressible
// random bytes, from which the big blob (its first blobSize bytes) and the
// image's layers (consecutive layerSize pieces) are cut. The two may share
// bytes; no registry deduplicates anything but whole blobs.
type content struct {
	buf          []byte
	blobSize     int64
	layerSize    int64
	layers       int
	blobDigest   string
	layerDigests []v1.Hash
}

func newContent(blobSize, layerSize int64, layers int) *content {
	c := &content{blobSize: blobSize, layerSize: layerSize, layers: layers,
		buf: make([]byte, max(blobSize, layerSize*int64(layers)))}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	_, _ = mrand.NewChaCha8(seed).Read(c.buf)
	return c
}

func (c *content) blob() []byte       { return c.buf[:c.blobSize] }
func (c *content) layer(i int) []byte { return c.buf[int64(i)*c.layerSize : int64(i+1)*c.layerSize] }

// imageBytes is the total size of the image's layers.
func (c *content) imageBytes() int64 { return c.layerSize * int64(c.layers) }

// refresh makes every blob new, so that each repetition uploads content no
// registry has seen (a registry may skip work for a blob it already has, and
// clients skip pushing blobs that exist): it writes a random nonce at the
// start of the blob and of every layer, and computes their digests again.
func (c *content) refresh() {
	for i := range c.layers {
		_, _ = rand.Read(c.layer(i)[:16])
	}
	_, _ = rand.Read(c.blob()[:16])
	c.layerDigests = make([]v1.Hash, c.layers)
	var wg sync.WaitGroup
	wg.Go(func() { c.blobDigest = sha256Digest(c.blob()) })
	for i := range c.layers {
		wg.Go(func() {
			sum := sha256.Sum256(c.layer(i))
			c.layerDigests[i] = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		})
	}
	wg.Wait()
}

// image returns the layers as an OCI image for go-containerregistry.
func (c *content) image() (v1.Image, error) {
	var layers []v1.Layer
	for i := range c.layers {
		layers = append(layers, &memLayer{b: c.layer(i), digest: c.layerDigests[i]})
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// memLayer is an uncompressed layer held in memory whose digest is already
// known, so that go-containerregistry does not hash it again.
type memLayer struct {
	b      []byte
	digest v1.Hash
}

func (l *memLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *memLayer) Size() (int64, error)                 { return int64(len(l.b)), nil }
func (l *memLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

// tinyImage is the small image of the small-request and metadata
// workloads: a config, one 2 KiB layer and an OCI manifest of about 400
// bytes.
type tinyImage struct {
	config, layer             []byte
	configDigest, layerDigest string
	manifest                  []byte
	manifestDigest            string
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayer    = "application/vnd.oci.image.layer.v1.tar"
)

func newTinyImage() *tinyImage {
	t := &tinyImage{layer: make([]byte, 2048)}
	_, _ = rand.Read(t.layer)
	t.layerDigest = sha256Digest(t.layer)
	t.config, _ = json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{t.layerDigest}},
	})
	t.configDigest = sha256Digest(t.config)
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	t.manifest, _ = json.Marshal(struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, ociManifest, desc{ociConfig, t.configDigest, len(t.config)}, []desc{{ociLayer, t.layerDigest, len(t.layer)}}})
	t.manifestDigest = sha256Digest(t.manifest)
	return t
}
