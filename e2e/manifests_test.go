package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/testutil"
)

func digestOf(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }

// randomDescriptor describes content of size bytes that was never pushed.
func randomDescriptor(mediaType string, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: mediaType,
		Digest:    digest.FromString(testutil.RandomString(16)),
		Size:      size,
	}
}

// TestManifestReferences checks which missing references a manifest PUT may
// have. An index may name child manifests the registry does not hold (a
// sparse copy of a multi-platform image: `crane copy --platform`, or an
// index pushed before its children); an image manifest may not name blobs
// the repository does not hold, or a pull of it would fail later. A rejected
// manifest must leave nothing behind under its tag.
func TestManifestReferences(t *testing.T) {
	srv := startRegistry(t)
	ctx := t.Context()
	const repo = "e2e/references"
	client := srv.Client(t, ctx, "repository:"+repo+":pull,push")

	// Blobs that exist in the repository, for the cases that need some.
	config := static.NewLayer([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), ocispec.MediaTypeImageConfig)
	layer := testutil.RandomLayer(t, 4<<10)
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(srv.Repo(t, repo), l, srv.RemoteOptions(ctx)...); err != nil {
			t.Fatalf("push blob: %v", err)
		}
	}
	describe := func(l v1.Layer, mediaType string) ocispec.Descriptor {
		d, _ := l.Digest()
		size, _ := l.Size()
		return ocispec.Descriptor{MediaType: mediaType, Digest: digestOf(d), Size: size}
	}
	pushedConfig := describe(config, ocispec.MediaTypeImageConfig)
	pushedLayer := describe(layer, ocispec.MediaTypeImageLayerGzip)

	image := func(config ocispec.Descriptor, layers ...ocispec.Descriptor) any {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: layers}
		m.SchemaVersion = 2
		return m
	}
	tests := []struct {
		name      string
		mediaType string
		manifest  any
		// wantCode is the OCI error code of a rejection; empty means 201.
		wantCode string
	}{
		{
			name:      "index with missing children",
			mediaType: ocispec.MediaTypeImageIndex,
			manifest: func() any {
				amd := randomDescriptor(ocispec.MediaTypeImageManifest, 1234)
				amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
				arm := randomDescriptor(ocispec.MediaTypeImageManifest, 1234)
				arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
				idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm}}
				idx.SchemaVersion = 2
				return idx
			}(),
		},
		{
			name:      "image with all blobs present",
			mediaType: ocispec.MediaTypeImageManifest,
			manifest:  image(pushedConfig, pushedLayer),
		},
		{
			name:      "image with missing layers",
			mediaType: ocispec.MediaTypeImageManifest,
			manifest: image(pushedConfig,
				randomDescriptor(ocispec.MediaTypeImageLayerGzip, 1000),
				randomDescriptor(ocispec.MediaTypeImageLayerGzip, 2000)),
			wantCode: "MANIFEST_BLOB_UNKNOWN",
		},
		{
			name:      "image with one of two layers missing",
			mediaType: ocispec.MediaTypeImageManifest,
			manifest:  image(pushedConfig, pushedLayer, randomDescriptor(ocispec.MediaTypeImageLayerGzip, 1000)),
			wantCode:  "MANIFEST_BLOB_UNKNOWN",
		},
		{
			name:      "image with missing config",
			mediaType: ocispec.MediaTypeImageManifest,
			manifest:  image(randomDescriptor(ocispec.MediaTypeImageConfig, 300), pushedLayer),
			wantCode:  "MANIFEST_BLOB_UNKNOWN",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(tt.manifest)
			if err != nil {
				t.Fatal(err)
			}
			tagURL := srv.URL + "/v2/" + repo + "/manifests/case" + string(rune('a'+i))
			x := do(t, client, http.MethodPut, tagURL, body, "Content-Type", tt.mediaType)
			if tt.wantCode == "" {
				if x.resp.StatusCode != http.StatusCreated {
					t.Fatalf("want 201\n%s", x)
				}
				get := do(t, client, http.MethodGet, tagURL, nil, "Accept", tt.mediaType)
				if get.resp.StatusCode != http.StatusOK || string(get.result) != string(body) {
					t.Errorf("GET after PUT: want 200 and the same bytes\n%s", get)
				}
				return
			}
			var e ociError
			if x.resp.StatusCode != http.StatusBadRequest || json.Unmarshal(x.result, &e) != nil || !slices.Contains(e.codes(), tt.wantCode) {
				t.Fatalf("want 400 with error code %s\n%s", tt.wantCode, x)
			}
			if get := do(t, client, http.MethodGet, tagURL, nil, "Accept", tt.mediaType); get.resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET after rejected PUT: want 404\n%s", get)
			}
		})
	}
}
