package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/fsck"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// imageStore is a data directory holding one image, team/app:v1, whose
// layer is returned with the path of its file.
func imageStore(t *testing.T) (dir string, blobs *storage.FS, md *meta.Store, layer []byte, file string) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	blobs, err := storage.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err = meta.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	config := []byte("{}")
	layer = bytes.Repeat([]byte("layer "), 1000)
	for _, b := range [][]byte{config, layer} {
		if _, err := blobs.Put(ctx, digest.FromBytes(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := md.LinkBlob(ctx, "team/app", digest.FromBytes(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	ld := digest.FromBytes(layer)
	content := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromBytes(config).String() + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + ld.String() + `","size":6000}]}`)
	err = md.PutManifest(ctx, meta.PutManifestRequest{Repository: "team/app", Tags: []string{"v1"},
		Manifest: meta.Manifest{Digest: digest.FromBytes(content), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(content)), Content: content},
		Requires: []digest.Digest{digest.FromBytes(config), ld}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, blobs, md, layer, filepath.Join(dir, "blobs", "sha256", ld.Encoded()[:2], ld.Encoded())
}

// TestCLIFsckOffline checks a data directory in which one layer was
// truncated: reported (exit status 1), quarantined with --repair, and
// healthy again after the layer is pushed anew.
func TestCLIFsckOffline(t *testing.T) {
	ctx := context.Background()
	dir, blobs, _, layer, file := imageStore(t)
	ld := digest.FromBytes(layer)
	c := newCLI(t, nil)
	if out := c.ok("fsck", "--data", dir); !strings.Contains(out, "No problems found") {
		t.Fatalf("healthy store: %s", out)
	}
	if err := os.Truncate(file, 1000); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.run("", "fsck", "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "2 problem(s) found") {
		t.Fatalf("fsck of a damaged store: %v\n%s", err, out)
	}
	for _, want := range []string{"1 damaged blob(s)", ld.String(), "team/app:v1", "1000", "6000", "--repair"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("fsck without --repair moved the file: %v", err)
	}

	cfgFile := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(cfgFile, []byte("data: "+dir+"\n"), 0o600)
	out, _, _ = c.run("", "fsck", "--config", cfgFile, "--repair", "-o", "json")
	var rep fsck.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out)
	}
	if len(rep.DamagedBlobs) != 1 || !rep.DamagedBlobs[0].Quarantined || rep.DamagedBlobs[0].Size != 1000 || rep.DamagedBlobs[0].ExpectedSize != 6000 {
		t.Fatalf("repair report: %+v", rep.DamagedBlobs)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("--repair left the damaged file in place: %v", err)
	}
	out, _, err = c.run("", "fsck", "--data", dir)
	if err == nil || !strings.Contains(out, "1 missing blob(s)") || !strings.Contains(out, "missing") {
		t.Fatalf("after repair, before the push: %v\n%s", err, out)
	}

	if _, err := blobs.PutSized(ctx, ld, int64(len(layer)), bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	c.ok("fsck", "--data", dir)
	c.fails("not a berth data directory", "fsck", "--data", t.TempDir())
}

// TestCLIFsckOnline runs the check on the server through the API.
func TestCLIFsckOnline(t *testing.T) {
	dir, _, _, _, file := imageStore(t)
	srv := startServerOn(t, dir)
	c := newCLI(t, map[string]string{"BERTH_SERVER": srv.url, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": ownerPassword})

	if out := c.ok("fsck"); !strings.Contains(out, "No problems found") {
		t.Fatalf("healthy store: %s", out)
	}
	os.Truncate(file, 1000)
	out, _, err := c.run("", "fsck", "--repair")
	if err == nil || !strings.Contains(out, "quarantined: push them again") {
		t.Fatalf("fsck --repair through the API: %v\n%s", err, out)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the damaged file is still in place: %v", err)
	}
}
