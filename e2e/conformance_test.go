package e2e

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/encryption"
	"github.com/berth-registry/berth/internal/testutil"
)

// conformanceEnv configures the OCI conformance suite: every API and every
// kind of content it knows is tested, except sparse manifests
// (OCI_DATA_SPARSE): that data set includes an image manifest whose layer was
// never pushed, which berth rejects on purpose (see TestManifestReferences).
// Settings are explicit rather than left to the suite's defaults, so that a
// new version of the suite cannot quietly test less.
var conformanceEnv = []string{
	"OCI_TLS=disabled",
	"OCI_REPO1=conformance/repo1",
	"OCI_REPO2=conformance/repo2",
	"OCI_VERSION=1.1",
	"OCI_LOG=warn",
	"OCI_CACHE_AUTH=true",

	"OCI_API_PING=true",
	"OCI_API_PULL=true",
	"OCI_API_PUSH=true",
	"OCI_API_BLOBS_ATOMIC=true",
	"OCI_API_BLOBS_DELETE=true",
	"OCI_API_BLOBS_DIGEST_HEADER=true",
	"OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
	"OCI_API_BLOBS_UPLOAD_CANCEL=true",
	"OCI_API_MANIFESTS_ATOMIC=true",
	"OCI_API_MANIFESTS_DELETE=true",
	"OCI_API_MANIFESTS_DIGEST_HEADER=true",
	"OCI_API_MANIFESTS_TAG_PARAM=true",
	"OCI_API_TAGS_ATOMIC=true",
	"OCI_API_TAGS_DELETE=true",
	"OCI_API_TAGS_LIST=true",
	"OCI_API_REFERRER=true",

	"OCI_DATA_IMAGE=true",
	"OCI_DATA_INDEX=true",
	"OCI_DATA_INDEX_LIST=true",
	"OCI_DATA_SPARSE=false",
	"OCI_DATA_ARTIFACT=true",
	"OCI_DATA_SUBJECT=true",
	"OCI_DATA_SUBJECT_MISSING=true",
	"OCI_DATA_ARTIFACT_LIST=true",
	"OCI_DATA_SUBJECT_LIST=true",
	"OCI_DATA_DATA_FIELD=true",
	"OCI_DATA_NONDISTRIBUTABLE=true",
	"OCI_DATA_CUSTOM_FIELDS=true",
	"OCI_DATA_NO_LAYERS=true",
	"OCI_DATA_EMPTY_BLOB=true",
	"OCI_DATA_SHA512=true",
}

// junitReport is the part of the suite's junit.xml that holds the counts and
// the failures.
type junitReport struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Disabled int `xml:"disabled,attr"`
	Suites   []struct {
		Cases []struct {
			Name      string `xml:"name,attr"`
			Status    string `xml:"status,attr"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// counts returns passed, failed (failures and errors of the suite itself) and
// skipped (skipped by the suite or disabled by configuration), the way the
// suite's own HTML report adds them up.
func (r junitReport) counts() (passed, failed, skipped int) {
	failed = r.Failures + r.Errors
	skipped = r.Skipped + r.Disabled
	return r.Tests - failed - skipped, failed, skipped
}

// TestConformance runs the OCI distribution-spec conformance suite, built by
// scripts/test from test/conformance, against a fresh server, once with
// blobs on the filesystem, once on S3 (a real S3 gateway), once against
// a cluster of three nodes on PostgreSQL and S3, and on the filesystem and
// on S3 with content encrypted at rest, and fails on
// any failed check. It prints the suite's counts. Set
// BERTH_CONFORMANCE_RESULTS to a directory to keep the suite's reports
// (report.html shows every request and response), one subdirectory per
// storage.
func TestConformance(t *testing.T) {
	bin := os.Getenv("BERTH_CONFORMANCE_BIN")
	if bin == "" {
		t.Skip("set BERTH_CONFORMANCE_BIN to a built OCI conformance suite to run it (scripts/test does)")
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	for _, storage := range []string{"filesystem", "s3", "postgres+s3", "filesystem+encryption", "s3+encryption"} {
		t.Run(storage, func(t *testing.T) {
			if storage == "postgres+s3" {
				// Three nodes behind the load balancer: the suite's
				// requests, the chunks of its uploads among them, each
				// go to the next node.
				runConformance(t, bin, storage, startCluster(t, 3).Front)
				return
			}
			var opts []testutil.Option
			if strings.HasSuffix(storage, "+encryption") {
				// Content sealed at rest (docs/encryption.md) must
				// answer the API exactly as plain content does, Range
				// reads and resumed uploads among it.
				key := filepath.Join(t.TempDir(), "kek")
				if err := encryption.GenerateKeyFile(key); err != nil {
					t.Fatal(err)
				}
				opts = append(opts, testutil.WithArgs("--encryption-key", "file:"+key))
			}
			if strings.HasPrefix(storage, "s3") {
				if r := os.Getenv("BERTH_E2E_REGISTRY"); r != "" && r != testutil.KindBerth {
					t.Skip("berth's S3 storage only")
				}
				gw := testutil.StartS3(t)
				opts = append(opts, testutil.WithArgs("--storage", gw.URL(gw.NewBucket(), "conformance")), testutil.WithEnv(gw.Env()...))
			}
			runConformance(t, bin, storage, newRegistry(t, opts...))
		})
	}
}

func runConformance(t *testing.T, bin, storage string, srv *testutil.Server) {
	results := os.Getenv("BERTH_CONFORMANCE_RESULTS")
	if results == "" {
		results = filepath.Join(t.TempDir(), "results")
	} else if abs, err := filepath.Abs(results); err == nil {
		results = filepath.Join(abs, storage)
	}
	env := []string{"OCI_REGISTRY=" + srv.Host, "OCI_RESULTS_DIR=" + results}
	if srv.Username != "" {
		env = append(env, "OCI_USERNAME="+srv.Username, "OCI_PASSWORD="+srv.Password)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	// An empty working directory, so that no oci-conformance.yaml lying
	// around changes the configuration, and a clean OCI_ environment.
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, conformanceEnv...), env...)
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	// The suite exits 1 when a check fails; the report says which.
	t.Logf("conformance suite ran in %v (exit: %v)", time.Since(start).Round(time.Second), runErr)

	b, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("the suite wrote no report (%v):\n%s", err, tail(out, 8000))
	}
	var r junitReport
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("parse junit.xml: %v", err)
	}
	passed, failed, skipped := r.counts()
	t.Logf("conformance: %d passed, %d failed, %d skipped", passed, failed, skipped)
	if passed == 0 {
		t.Fatalf("no conformance check passed: the suite could not talk to the registry?\n%s", tail(out, 8000))
	}
	if failed == 0 {
		return
	}
	var lines []string
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if c.Status == "failure" || c.Status == "error" {
				lines = append(lines, fmt.Sprintf("  %s: %s", c.Name, oneLine(c.SystemOut, 300)))
			}
		}
	}
	const show = 60
	if len(lines) > show {
		lines = append(lines[:show], fmt.Sprintf("  ... and %d more", len(lines)-show))
	}
	t.Errorf("%d conformance checks failed (keep the full report with BERTH_CONFORMANCE_RESULTS=DIR):\n%s", failed, strings.Join(lines, "\n"))
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return "...\n" + string(b[len(b)-n:])
	}
	return string(b)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
