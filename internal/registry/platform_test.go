package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// TestPushRecordsImagePlatform: pushing an image reads its config and keeps
// the platform in the manifest's summary, which the lists show; a config
// that is no image config, too large or not JSON gives none, and the push
// still succeeds.
func TestPushRecordsImagePlatform(t *testing.T) {
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	srv := httptest.NewServer(New(Options{Blobs: blobs, Meta: md, Authorizer: openAuthz{}}))
	t.Cleanup(srv.Close)

	const dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	big := `{"os":"linux","architecture":"amd64","pad":"` + strings.Repeat("x", maxConfigRead) + `"}`
	for _, c := range []struct {
		name, manifestType, configType, config string
		want                                   []string
	}{
		{"oci", ociManifest, "application/vnd.oci.image.config.v1+json", `{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{}}`, []string{"linux/arm64/v8"}},
		{"docker", dockerManifest, "application/vnd.docker.container.image.v1+json", `{"architecture":"amd64","os":"windows"}`, []string{"windows/amd64"}},
		{"artifact", ociManifest, "application/vnd.cncf.helm.config.v1+json", `{"os":"linux","architecture":"amd64"}`, nil},
		{"no platform", ociManifest, "application/vnd.oci.image.config.v1+json", `{}`, nil},
		{"not json", ociManifest, "application/vnd.oci.image.config.v1+json", `not json`, nil},
		{"too large", ociManifest, "application/vnd.oci.image.config.v1+json", big, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo := "p/" + strings.ReplaceAll(c.name, " ", "-")
			cd, ld := sha(c.config), sha("layer")
			do(t, srv.URL, call{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + cd.String(), body: c.config, wantStatus: 201})
			do(t, srv.URL, call{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + ld.String(), body: "layer", wantStatus: 201})
			man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":5}]}`,
				c.manifestType, c.configType, cd, len(c.config), ld)
			do(t, srv.URL, call{method: "PUT", path: "/v2/" + repo + "/manifests/v1", header: map[string]string{"Content-Type": c.manifestType}, body: man, wantStatus: 201})
			m, err := md.Manifest(context.Background(), repo, "v1")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Summary.Platforms, c.want) || m.Summary.PlatformCount != len(c.want) {
				t.Errorf("summary platforms = %q (count %d), want %q", m.Summary.Platforms, m.Summary.PlatformCount, c.want)
			}
		})
	}
}

// failingBlobs is a blob store that cannot be read now.
type failingBlobs struct{ Blobs }

func (failingBlobs) Open(context.Context, digest.Digest) (io.ReadSeekCloser, error) {
	return nil, errors.New("storage unavailable")
}

// TestFillPlatforms: the images stored before pushes recorded platforms get
// theirs from their configs; one whose config cannot be read now stays on
// the list for the next try, and one without an image config gets none.
func TestFillPlatforms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	put := func(tag, configType, config string) meta.Manifest {
		t.Helper()
		cd := sha(config)
		if _, err := blobs.PutSized(ctx, cd, int64(len(config)), strings.NewReader(config)); err != nil {
			t.Fatal(err)
		}
		if err := md.LinkBlob(ctx, "app", cd, int64(len(config))); err != nil {
			t.Fatal(err)
		}
		content := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":"%s","size":%d},"layers":[]}`, ociManifest, configType, cd, len(config))
		m := meta.Manifest{Digest: sha(content), MediaType: ociManifest, Size: int64(len(content)), Content: []byte(content)}
		// Stored as before: no platform, and on the list to fill.
		if err := md.PutManifest(ctx, meta.PutManifestRequest{Repository: "app", Manifest: m, Tags: []string{tag}, Requires: []digest.Digest{cd}}); err != nil {
			t.Fatal(err)
		}
		if _, err := md.DB().ExecContext(ctx, `INSERT INTO platform_fill(repository_id, digest) SELECT repository_id, digest FROM manifests WHERE digest = ?`, m.Digest.String()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	arm := put("arm", "application/vnd.oci.image.config.v1+json", `{"os":"linux","architecture":"arm64"}`)
	put("chart", "application/vnd.cncf.helm.config.v1+json", `{"os":"linux","architecture":"amd64"}`)

	if err := FillPlatforms(ctx, failingBlobs{blobs}, md); err == nil {
		t.Fatal("FillPlatforms with unreadable storage succeeded")
	}
	fills, err := md.PlatformFills(ctx, 10)
	if err != nil || !slices.ContainsFunc(fills, func(f meta.PlatformFill) bool { return f.Manifest.Digest == arm.Digest }) {
		t.Fatalf("after a failed read the image is not left to fill: %+v, %v", fills, err)
	}
	if err := FillPlatforms(ctx, blobs, md); err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string][]string{"arm": {"linux/arm64"}, "chart": nil} {
		m, err := md.Manifest(ctx, "app", tag)
		if err != nil || !slices.Equal(m.Summary.Platforms, want) {
			t.Errorf("%s: platforms %q, %v; want %q", tag, m.Summary.Platforms, err, want)
		}
	}
	if fills, err := md.PlatformFills(ctx, 10); err != nil || len(fills) != 0 {
		t.Errorf("left to fill: %+v, %v", fills, err)
	}
}
