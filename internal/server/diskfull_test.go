package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-registry/berth/internal/config"
)

// smallFilesystem mounts a tmpfs of size bytes and returns its path; the test
// is skipped where mounting is not allowed (not root, no tmpfs).
func smallFilesystem(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// readOnly makes the content store's directories under data read-only, with
// read-only bind mounts (the filesystem itself cannot be remounted while the
// database is open on it).
func readOnly(t *testing.T, data string) {
	t.Helper()
	for _, d := range []string{"blobs", "uploads", "tmp"} {
		dir := filepath.Join(data, d)
		for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,ro,bind", dir}} {
			if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
				t.Fatalf("mount %v: %v %s", args, err, out)
			}
			if args[0] == "--bind" {
				t.Cleanup(func() { exec.Command("umount", dir).Run() })
			}
		}
	}
}

// fill writes to a file in dir until the filesystem is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	for {
		if _, err := f.Write(b); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return path
		}
	}
}

type readyJSON struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"checks"`
}

func (e *env) readiness() (int, string, readyJSON) {
	e.t.Helper()
	st, text, _ := e.do("GET", "/readyz", "", nil)
	_, body, _ := e.do("GET", "/readyz?format=json", "", nil)
	var r readyJSON
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		e.t.Fatalf("readyz JSON %q: %v", body, err)
	}
	return st, text, r
}

func TestFullOrReadOnlyStorageIsNamedAndPullsGoOn(t *testing.T) {
	data := smallFilesystem(t, "16m")
	e := newEnv(t, func(c *config.Config) { c.Data = data })
	if err := e.push("team/app", "owner", ownerPassword); err != nil {
		t.Fatal(err)
	}
	if st, text, r := e.readiness(); st != 200 || !strings.HasPrefix(text, "ready\n") || r.Status != "ready" || r.Checks["storage"].Status != "ok" || r.Checks["database"].Status != "ok" {
		t.Fatalf("readyz with room to spare: %d %q %+v", st, text, r)
	}

	filler := fill(t, data)
	err := e.push("team/other", "owner", ownerPassword)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != 507 || !strings.Contains(err.Error(), "blob storage is full") {
		t.Errorf("push to a full disk: %v, want 507 saying storage is full", err)
	}
	// The refused upload's partial data is gone at once: clients start a new
	// upload after an error, so keeping it would keep the disk full.
	if left, err := os.ReadDir(filepath.Join(data, "uploads")); err != nil || len(left) != 0 {
		t.Errorf("upload sessions left on the full disk: %d, %v", len(left), err)
	}
	st, text, r := e.readiness()
	if st != 200 || r.Status != "degraded" || r.Checks["storage"].Status != "writes failing" ||
		!strings.Contains(r.Checks["storage"].Error, "storage is full (no space left on device)") ||
		!strings.Contains(text, "storage: writes failing: storage is full") ||
		r.Checks["database"].Status != "writes failing" || !strings.Contains(r.Checks["database"].Error, "the database's storage is full") {
		t.Errorf("readyz on a full disk: %d %q %+v", st, text, r)
	}
	if strings.Contains(text, data) {
		t.Errorf("readyz shows the data directory: %q", text)
	}
	if err := e.pull("team/app", "owner", ownerPassword); err != nil {
		t.Errorf("pull from a full disk: %v", err)
	}
	// The database's journal grows with each change until it can grow no more.
	owner := basic("owner", ownerPassword)
	st, body := 0, ""
	for i := range 100 {
		st, body, _ = e.do("PUT", fmt.Sprintf("/api/v1/scopeMaps/full-%d", i), owner,
			strings.NewReader(`{"properties":{"actions":["repositories/team/*/content/read"]}}`))
		if st != http.StatusCreated {
			break
		}
	}
	if st != http.StatusInsufficientStorage || !strings.Contains(body, "InsufficientStorage") || !strings.Contains(body, "database is full") {
		t.Errorf("management change on a full disk: %d %s", st, body)
	}

	os.Remove(filler)
	readOnly(t, data)
	err = e.push("team/third", "owner", ownerPassword)
	if !errors.As(err, &te) || te.StatusCode != 507 || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("push to a read-only disk: %v, want 507 saying storage is read-only", err)
	}
	// Only the content store's directories are read-only: the database
	// beside them writes, and readyz tells the two apart.
	if _, text, r := e.readiness(); r.Status != "degraded" || !strings.Contains(r.Checks["storage"].Error, "storage is read-only") || r.Checks["database"].Status != "ok" {
		t.Errorf("readyz on a read-only store: %q %+v", text, r)
	}
	if err := e.pull("team/app", "owner", ownerPassword); err != nil {
		t.Errorf("pull from a read-only disk: %v", err)
	}
}

// An upload that runs the disk full is removed at once, with what it had
// written: clients start a new upload after an error rather than resume,
// so its data would only keep the disk full until the session expired.
func TestUploadThatFillsTheDiskIsRemoved(t *testing.T) {
	data := smallFilesystem(t, "16m")
	e := newEnv(t, func(c *config.Config) { c.Data = data })
	filler := fill(t, data)
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	// Leave room for the session and part of its chunk.
	if err := os.Truncate(filler, fi.Size()-3<<20); err != nil {
		t.Fatal(err)
	}
	owner := basic("owner", ownerPassword)
	for _, method := range []string{"PATCH", "PUT"} {
		st, body, h := e.do("POST", "/v2/team/big/blobs/uploads/", owner, nil)
		if st != http.StatusAccepted {
			t.Fatalf("POST: %d %s", st, body)
		}
		loc := h.Get("Location")
		chunk := strings.NewReader(strings.Repeat("x", 8<<20))
		path := loc
		if method == "PUT" {
			path += "&digest=sha256:" + strings.Repeat("0", 64)
			if !strings.Contains(loc, "?") {
				path = loc + "?digest=sha256:" + strings.Repeat("0", 64)
			}
		}
		st, body, _ = e.do(method, path, owner, chunk)
		if st != http.StatusInsufficientStorage {
			t.Fatalf("%s of 8 MiB with 3 MiB free: %d %s, want 507", method, st, body)
		}
		if left, err := os.ReadDir(filepath.Join(data, "uploads")); err != nil || len(left) != 0 {
			t.Errorf("%s: upload sessions left on the full disk: %d, %v", method, len(left), err)
		}
		if st, _, _ := e.do("GET", loc, owner, nil); st != http.StatusNotFound {
			t.Errorf("%s: the refused upload still answers %d, want 404", method, st)
		}
	}
}
