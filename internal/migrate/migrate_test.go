package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

const (
	ownerPassword = "owner-password-0123"
	alicePassword = "alice-password-0123"
)

// filled is a registry filled through a real server, with what a client
// must find in any copy of it.
type filled struct {
	dataDir string
	// refs are every tag and digest reference pushed, by repository.
	refs          []string
	tokenName     string
	tokenPassword string
	// accessToken is a bearer token the source issued to the token, for
	// app/web.
	accessToken string
}

// fillRegistry runs berth serve on the defaults and pushes images (one
// with several platforms, one referrer), creates a scope map, a token with
// a password and a user, deletes a repository (leaving orphaned blobs),
// and stops the server.
func fillRegistry(t *testing.T, serverOpts ...testutil.Option) filled {
	t.Helper()
	srv := testutil.StartServer(t, append([]testutil.Option{testutil.WithPassword(ownerPassword)}, serverOpts...)...)
	ctx := t.Context()
	opts := srv.RemoteOptions(ctx)
	f := filled{dataDir: srv.DataDir}
	push := func(ref string, img v1.Image) v1.Hash {
		t.Helper()
		if err := remote.Write(srv.Ref(t, ref), img, opts...); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		repo, _, _ := strings.Cut(ref, ":")
		f.refs = append(f.refs, ref, repo+"@"+d.String())
		return d
	}
	web := testutil.RandomImage(t, 2, 64<<10)
	webDigest := push("app/web:v1", web)
	push("app/web:v1-copy", web)
	push("team/db:latest", testutil.RandomImage(t, 3, 32<<10))

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: testutil.RandomPlatformImage(t, 1, 16<<10, p), Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(srv.Ref(t, "app/multi:latest"), idx, opts...); err != nil {
		t.Fatalf("push index: %v", err)
	}
	idxDigest, _ := idx.Digest()
	f.refs = append(f.refs, "app/multi:latest", "app/multi@"+idxDigest.String())

	webManifest, _ := web.RawManifest()
	sig := mutate.Subject(testutil.RandomImage(t, 1, 1024), v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: webDigest, Size: int64(len(webManifest))}).(v1.Image)
	push("app/web:sig", sig)

	push("junk/gone:v1", testutil.RandomImage(t, 1, 4096))
	cli := newCLI(t, srv)
	cli.must("repository", "delete", "-n", "junk/gone", "--yes")
	f.refs = slices.DeleteFunc(f.refs, func(r string) bool { return strings.HasPrefix(r, "junk/") })

	cli.must("scope-map", "create", "-n", "app-readers", "--repository", "app/*", "content/read")
	var tok struct {
		Credentials struct {
			Passwords []struct{ Name, Value string }
		}
	}
	if err := json.Unmarshal([]byte(cli.must("token", "create", "-n", "ci-reader", "--scope-map", "app-readers", "-o", "json")), &tok); err != nil || len(tok.Credentials.Passwords) == 0 {
		t.Fatalf("token create: %v", err)
	}
	f.tokenName, f.tokenPassword = "ci-reader", tok.Credentials.Passwords[0].Value
	cli.must("user", "create", "-n", "alice", "--role", "reader", "-p", alicePassword)
	// A role assignment, in a table of its own, which must move too.
	cli.must("role", "assignment", "create", "--assignee", "alice", "--role", "token-admin", "--repository", "team/*")
	// Network rules, which must move too: a rule that lets in no test
	// client (the default action stays Allow) and the token's addresses.
	cli.must("network-rule", "add", "--ip-address", "10.9.0.0/16")
	cli.must("token", "update", "-n", "ci-reader", "--allowed-ip", "127.0.0.0/8")
	// Limits, which must move too (generous enough for the checks' pulls).
	cli.must("token", "update", "-n", "ci-reader", "--rate-limit", "1000/s", "--pull-bytes-per-day", "100GiB")
	// A federated credential, in a table of its own.
	cli.must("token", "federated-credential", "create", "-n", "ci-reader", "--credential-name", "github-main",
		"--issuer", "https://token.actions.githubusercontent.com", "--subject", "repo:acme/app:*", "--claim", "repository_owner=acme")

	f.accessToken = issueAccessToken(t, srv, f.tokenName, f.tokenPassword, "repository:app/web:pull")

	// An upload session left open, which is not copied.
	resp, err := srv.Client(t, ctx, "repository:app/web:pull,push").Post(srv.URL+"/v2/app/web/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("start an upload: %s", resp.Status)
	}
	srv.Stop()
	return f
}

var challengeService = regexp.MustCompile(`service="([^"]*)"`)

// issueAccessToken asks srv's token endpoint for an access token for scope.
func issueAccessToken(t *testing.T, srv *testutil.Server, user, password, scope string) string {
	t.Helper()
	resp, err := http.Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	m := challengeService.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
	if m == nil {
		t.Fatalf("no service in the challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/oauth2/token?"+url.Values{"service": {m[1]}, "scope": {scope}}.Encode(), nil)
	req.SetBasicAuth(user, password)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.Token == "" {
		t.Fatalf("token endpoint: %s, %v", resp.Status, err)
	}
	return tr.Token
}

// cli runs berth's management commands against a server as its owner.
type cli struct {
	t   *testing.T
	env []string
}

func newCLI(t *testing.T, srv *testutil.Server) *cli {
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"BERTH_SERVER=" + srv.URL, "BERTH_USERNAME=" + srv.Username, "BERTH_PASSWORD=" + srv.Password}
	return &cli{t: t, env: env}
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := runBerth(c.t, c.env, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// runBerth runs the berth binary and returns its stdout.
func runBerth(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.BerthBinary(t), args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("berth %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// checkServed pulls every reference of f from srv as the owner, as the
// token and as the user, and checks that a wrong password is refused.
func checkServed(t *testing.T, srv *testutil.Server, f filled, withIdentities bool) {
	t.Helper()
	ctx := t.Context()
	type login struct {
		auth authn.Authenticator
		only string // the repositories it may pull, by prefix
	}
	logins := []login{{&authn.Basic{Username: testutil.OwnerUsername, Password: ownerPassword}, ""}}
	if withIdentities {
		logins = append(logins, login{&authn.Basic{Username: "alice", Password: alicePassword}, ""},
			login{&authn.Basic{Username: f.tokenName, Password: f.tokenPassword}, "app/"}) // its scope map covers app/*
	}
	for _, l := range logins {
		a := l.auth
		for _, ref := range f.refs {
			if !strings.HasPrefix(ref, l.only) {
				continue
			}
			r := srv.Ref(t, ref)
			desc, err := remote.Get(r, remote.WithAuth(a), remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("pull %s as %s: %v", ref, must(a.Authorization()).Username, err)
			}
			if desc.MediaType.IsIndex() {
				idx, err := desc.ImageIndex()
				if err != nil {
					t.Fatal(err)
				}
				im, _ := idx.IndexManifest()
				for _, m := range im.Manifests {
					img, err := idx.Image(m.Digest)
					if err != nil {
						t.Fatalf("pull %s child %s: %v", ref, m.Digest, err)
					}
					readLayers(t, ref, img)
				}
				continue
			}
			img, err := desc.Image()
			if err != nil {
				t.Fatal(err)
			}
			readLayers(t, ref, img)
		}
	}
	if withIdentities {
		// An access token the source issued still verifies: the signing
		// keys moved too.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/app/web/manifests/v1", nil)
		req.Header.Set("Authorization", "Bearer "+f.accessToken)
		req.Header.Set("Accept", string(types.OCIManifestSchema1)+", "+string(types.DockerManifestSchema2))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET a manifest with an access token the source issued: %s", resp.Status)
		}
		cli := newCLI(t, srv)
		if out := cli.must("network-rule", "list"); !strings.Contains(out, "10.9.0.0/16") {
			t.Errorf("the network rules did not move:\n%s", out)
		}
		if out := cli.must("token", "show", "-n", f.tokenName); !strings.Contains(out, "Allowed addresses: 127.0.0.0/8") {
			t.Errorf("the token's allowed addresses did not move:\n%s", out)
		}
		if out := cli.must("token", "show", "-n", f.tokenName); !strings.Contains(out, "requests:  1000 requests/s, burst 1000") || !strings.Contains(out, "of 100.0 GiB per day") {
			t.Errorf("the token's limits did not move:\n%s", out)
		}
		if out := cli.must("token", "federated-credential", "list", "-n", f.tokenName); !regexp.MustCompile(`github-main\s+https://token.actions.githubusercontent.com\s+repo:acme/app:\*\s+\S+\s+repository_owner=acme`).MatchString(out) {
			t.Errorf("the federated credentials did not move:\n%s", out)
		}
		if out := cli.must("role", "assignment", "list", "--assignee", "alice"); !regexp.MustCompile(`alice\s+token-admin\s+team/\*`).MatchString(out) {
			t.Errorf("the role assignments did not move:\n%s", out)
		}
		bad := &authn.Basic{Username: "alice", Password: alicePassword + "x"}
		if _, err := remote.Get(srv.Ref(t, f.refs[0]), remote.WithAuth(bad), remote.WithContext(ctx)); err == nil {
			t.Fatal("a wrong password for alice was accepted")
		}
	}
}

// readLayers reads every layer of img, which go-containerregistry checks
// against its digest.
func readLayers(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: read layer: %v", ref, err)
		}
	}
}

// inventory is what a registry holds, walked from its metadata store, each
// blob read back from its content store and hashed.
// loginNames checks that the target's users and tokens hold their login
// names (principal_names is not copied; the target's triggers fill it),
// want of them, one for each user and token.
func loginNames(t *testing.T, db *sqldb.DB, want int) {
	t.Helper()
	var n, missing int
	if err := db.W().QueryRowContext(t.Context(), `SELECT COUNT(*),
		(SELECT COUNT(*) FROM users WHERE lower(name) NOT IN (SELECT name_lower FROM principal_names WHERE kind = 'user')) +
		(SELECT COUNT(*) FROM tokens WHERE lower(name) NOT IN (SELECT name_lower FROM principal_names WHERE kind = 'token'))
		FROM principal_names`).Scan(&n, &missing); err != nil {
		t.Fatal(err)
	}
	if n != want || missing != 0 {
		t.Fatalf("the target has %d login names, %d users and tokens without one; want %d and 0", n, missing, want)
	}
}

func inventory(t *testing.T, db *sqldb.DB, blobs blobSource) []string {
	t.Helper()
	ctx := t.Context()
	md, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = md.WalkManifests(ctx, func(repo string, m meta.Manifest) error {
		out = append(out, fmt.Sprintf("manifest %s %s %s %d %s", repo, m.Digest, digest.FromBytes(m.Content), m.Size, m.Subject))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := md.WalkTags(ctx, func(repo, tag string, d digest.Digest) error {
		out = append(out, fmt.Sprintf("tag %s:%s %s", repo, tag, d))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := md.WalkBlobLinks(ctx, func(b meta.BlobLink) error {
		rc, err := blobs.Open(ctx, b.Digest)
		if err != nil {
			return fmt.Errorf("open blob %s: %w", b.Digest, err)
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("blob %s %s %d content sha256:%s %d", b.Repository, b.Digest, b.Size, hex.EncodeToString(h.Sum(nil)), n))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func sqliteInventory(t *testing.T, dir string, blobs blobSource) []string {
	t.Helper()
	db, err := sqldb.OpenSQLite(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if blobs == nil {
		fs, err := storage.OpenFS(dir)
		if err != nil {
			t.Fatal(err)
		}
		blobs = fs
	}
	return inventory(t, db, blobs)
}

func s3Store(t *testing.T, url string) *s3store.Store {
	t.Helper()
	cfg, err := s3store.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func setS3Env(t *testing.T, s3 *testutil.S3Server) {
	for _, kv := range s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func sameInventory(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the source inventory is empty", what)
	}
	if !slices.Equal(want, got) {
		t.Fatalf("%s: the copy differs from the source\nsource:\n%s\ncopy:\n%s", what, strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

// TestMigrateToS3AndBack fills a registry through berth serve on the
// defaults, migrates it to a new data directory with blobs on S3 (the run
// interrupted after two blobs, then run again), checks that every
// manifest, tag and blob is identical, serves the copy and pulls
// everything as the owner, a user and a token, then migrates it back to
// the defaults with the CLI and serves that.
func TestMigrateToS3AndBack(t *testing.T) {
	f := fillRegistry(t)
	s3 := testutil.StartS3(t)
	setS3Env(t, s3)
	bucket := s3.NewBucket()
	url := s3.URL(bucket, "reg")
	want := sqliteInventory(t, f.dataDir, nil)
	target := filepath.Join(t.TempDir(), "target")

	// Interrupted after two blobs.
	ctx, cancel := context.WithCancel(t.Context())
	var written atomic.Int32
	o := Options{FromData: f.dataDir, ToData: target, ToStorage: url, Parallel: 2, afterBlob: func(digest.Digest) {
		if written.Add(1) == 2 {
			cancel()
		}
	}}
	rep, err := Run(ctx, o)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("interrupted run: err %v, want one saying to run again", err)
	}
	if rep.BlobsCopied < 2 {
		t.Fatalf("interrupted run copied %d blobs, want at least 2", rep.BlobsCopied)
	}
	interrupted := rep.BlobsCopied

	// A dry run now sees the blobs already copied.
	dry := o
	dry.afterBlob, dry.DryRun = nil, true
	rep, err = Run(t.Context(), dry)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsSkipped < interrupted || rep.BlobsCopied == 0 {
		t.Fatalf("dry run after the interruption: %d already there, %d to copy", rep.BlobsSkipped, rep.BlobsCopied)
	}

	o.afterBlob = nil
	rep, err = Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	// A blob whose write was under way at the interruption may have
	// landed too.
	if rep.BlobsSkipped < interrupted || rep.BlobsCopied == 0 {
		t.Fatalf("second run: %d skipped, %d copied; want the %d of the first run skipped and the rest copied", rep.BlobsSkipped, rep.BlobsCopied, interrupted)
	}
	if rep.Orphans == 0 {
		t.Fatal("the deleted repository's blobs were not reported as orphans")
	}
	if rep.Uploads != 1 {
		t.Fatalf("%d upload sessions reported as not copied, want the 1 left open", rep.Uploads)
	}
	if rep.Rows["users"] != 2 || rep.Rows["tokens"] != 1 || rep.Rows["scope_maps"] != 1 || rep.Rows["repositories"] == 0 {
		t.Fatalf("rows copied: %v", rep.Rows)
	}
	got := sqliteInventory(t, target, s3Store(t, url))
	sameInventory(t, "SQLite+filesystem to SQLite+S3", want, got)
	tdb, err := sqldb.OpenSQLite(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	loginNames(t, tdb, 3)
	tdb.Close()

	rep, err = Run(t.Context(), o)
	if err != nil || !rep.AlreadyDone {
		t.Fatalf("third run: err %v, already done %v; want nothing to do", err, rep.AlreadyDone)
	}

	srv := testutil.StartServer(t, testutil.WithDataDir(target), testutil.WithPassword(ownerPassword),
		testutil.WithArgs("--storage", url), testutil.WithEnv(s3.Env()...))
	checkServed(t, srv, f, true)
	srv.Stop()

	back := filepath.Join(t.TempDir(), "back")
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, s3.Env()...)
	out, err := runBerth(t, env, "migrate", "--from-data", target, "--from-storage", url, "--to-data", back)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "blobs copied: ") || !strings.Contains(out, "users 2") {
		t.Fatalf("berth migrate said:\n%s", out)
	}
	sameInventory(t, "SQLite+S3 back to SQLite+filesystem", want, sqliteInventory(t, back, nil))
	srv = testutil.StartServer(t, testutil.WithDataDir(back), testutil.WithPassword(ownerPassword))
	checkServed(t, srv, f, true)
}

// TestMigratePostgres moves a registry filled by berth serve on the
// defaults to PostgreSQL and S3, checks every manifest, tag and blob, and
// moves it back from there into a new data directory served by a default
// berth serve.
func TestMigratePostgres(t *testing.T) {
	f := fillRegistry(t)
	pg := testutil.StartPostgres(t)
	s3 := testutil.StartS3(t)
	setS3Env(t, s3)
	url := s3.URL(s3.NewBucket(), "")
	dbURL := pg.NewDatabase()
	want := sqliteInventory(t, f.dataDir, nil)

	// A dry run changes nothing in the database, not even a table.
	if _, err := Run(t.Context(), Options{FromData: f.dataDir, ToDatabase: dbURL, ToStorage: url, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	var tables int
	if err := execPostgres(t, dbURL, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()`, &tables); err != nil || tables != 0 {
		t.Fatalf("after a dry run the database has %d tables (%v)", tables, err)
	}

	rep, err := Run(t.Context(), Options{FromData: f.dataDir, ToDatabase: dbURL, ToStorage: url})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows["users"] != 2 || rep.Rows["tokens"] != 1 || rep.Rows["passwords"] == 0 || rep.Rows["settings"] == 0 || rep.Rows["audit"] == 0 {
		t.Fatalf("rows copied: %v", rep.Rows)
	}
	db, err := sqldb.OpenPostgres(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	sameInventory(t, "SQLite+filesystem to PostgreSQL+S3", want, inventory(t, db, s3Store(t, url)))
	loginNames(t, db, 3)
	// The ids go on past the copied ones.
	var next int64
	if err := db.W().QueryRowContext(t.Context(), `SELECT nextval(pg_get_serial_sequence('"repositories"', 'id'))`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	var top int64
	if err := db.W().QueryRowContext(t.Context(), `SELECT MAX(id) FROM repositories`).Scan(&top); err != nil {
		t.Fatal(err)
	}
	if next <= top {
		t.Fatalf("the repositories sequence hands out %d, at or below the copied ids (up to %d)", next, top)
	}
	db.Close()

	srv := testutil.StartServer(t, testutil.WithPassword(ownerPassword),
		testutil.WithArgs("--database", dbURL, "--storage", url), testutil.WithEnv(s3.Env()...))
	checkServed(t, srv, f, true)
	srv.Stop()

	back := filepath.Join(t.TempDir(), "back")
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, s3.Env()...)
	out, err := runBerth(t, env, "migrate", "--from-database", dbURL, "--from-storage", url, "--to-data", back, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		BlobsCopied int64            `json:"blobsCopied"`
		Rows        map[string]int64 `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || report.BlobsCopied != rep.BlobsCopied || report.Rows["manifests"] != rep.Rows["manifests"] {
		t.Fatalf("berth migrate -o json: %v: %+v, want the %d blobs and %d manifests copied there\n%s", err, report, rep.BlobsCopied, rep.Rows["manifests"], out)
	}
	sameInventory(t, "PostgreSQL+S3 back to SQLite+filesystem", want, sqliteInventory(t, back, nil))
	srv = testutil.StartServer(t, testutil.WithDataDir(back), testutil.WithPassword(ownerPassword))
	checkServed(t, srv, f, true)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// execPostgres reads one value from the database at url, on a connection
// of its own that it closes.
func execPostgres(t *testing.T, url, query string, v any) error {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(t.Context(), query).Scan(v)
}

// copyDir copies a stopped registry's data directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

func execSQLite(t *testing.T, dir, query string) {
	t.Helper()
	db, err := sqldb.OpenSQLite(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W().ExecContext(t.Context(), query); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateRefuses checks each case berth migrate refuses, and that a
// refusal leaves no metadata in the target.
func TestMigrateRefuses(t *testing.T) {
	f := fillRegistry(t)
	other := testutil.StartServer(t) // another registry, running
	cases := []struct {
		name string
		opts func(t *testing.T) Options
		want string
		// fresh: the target was new, and must still hold no metadata.
		fresh bool
	}{
		{"source in use by a running server", func(t *testing.T) Options {
			return Options{FromData: other.DataDir, ToData: t.TempDir()}
		}, "is open in another process", true},
		{"same database", func(t *testing.T) Options {
			return Options{FromData: f.dataDir, ToData: f.dataDir + "/."}
		}, "the same SQLite database", false},
		{"target already holds a registry", func(t *testing.T) Options {
			target := t.TempDir()
			srv := testutil.StartServer(t, testutil.WithDataDir(target))
			srv.Stop()
			return Options{FromData: f.dataDir, ToData: target}
		}, "already holds a registry", false},
		{"source at an older schema version", func(t *testing.T) Options {
			src := copyDir(t, f.dataDir)
			execSQLite(t, src, `DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)`)
			return Options{FromData: src, ToData: t.TempDir()}
		}, "start the registry once with this version of berth", true},
		{"source written by a newer berth", func(t *testing.T) Options {
			src := copyDir(t, f.dataDir)
			execSQLite(t, src, `CREATE TABLE schema_migrations_future (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL); INSERT INTO schema_migrations_future VALUES (1, 0)`)
			return Options{FromData: src, ToData: t.TempDir()}
		}, "which this version of berth does not know", true},
		{"target holds a migration from another registry", func(t *testing.T) Options {
			target := t.TempDir()
			src := copyDir(t, f.dataDir)
			// Another registry: the same content, created at another time.
			execSQLite(t, src, `UPDATE schema_migrations SET applied_at = applied_at - 1000 WHERE version = 1`)
			if _, err := Run(t.Context(), Options{FromData: src, ToData: target}); err != nil {
				t.Fatal(err)
			}
			return Options{FromData: f.dataDir, ToData: target}
		}, "from another registry", false},
		{"source blob damaged", func(t *testing.T) Options {
			src := copyDir(t, f.dataDir)
			fs, err := storage.OpenFS(src)
			if err != nil {
				t.Fatal(err)
			}
			// Every file, so that blobs the metadata refers to are among them.
			err = fs.Walk(t.Context(), func(b storage.BlobInfo) error {
				hx := b.Digest.Encoded()
				return os.WriteFile(filepath.Join(src, "blobs", string(b.Digest.Algorithm()), hx[:2], hx), []byte("not the content"), 0o644)
			})
			if err != nil {
				t.Fatal(err)
			}
			return Options{FromData: src, ToData: t.TempDir()}
		}, "run berth fsck on the source", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts(t)
			_, err := Run(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if tc.name == "source in use by a running server" && !errors.Is(err, ErrSourceInUse) {
				t.Fatalf("err %v is not ErrSourceInUse", err)
			}
			if _, statErr := os.Stat(filepath.Join(o.ToData, sqldb.SQLiteFile)); statErr != nil || !tc.fresh {
				return
			}
			db, err := sqldb.OpenSQLite(t.Context(), o.ToData)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var repos int
			if err := db.R().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM repositories`).Scan(&repos); err != nil {
				t.Fatal(err)
			}
			if repos != 0 {
				t.Fatalf("a refused migration left %d repositories in the target", repos)
			}
		})
	}
}

// TestMigrateRefusesPostgresInUse: a PostgreSQL source with another
// session connected (a running node) is refused.
func TestMigrateRefusesPostgresInUse(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase()
	db, err := sqldb.OpenPostgres(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Open(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Run(t.Context(), Options{FromDatabase: url, FromData: t.TempDir(), ToData: t.TempDir()})
	if !errors.Is(err, ErrSourceInUse) {
		t.Fatalf("err %v, want ErrSourceInUse", err)
	}
}

// TestMigrateDryRunWritesNothing: a dry run reports the blobs and rows it
// would copy and leaves the target directory without a database or blobs.
func TestMigrateDryRunWritesNothing(t *testing.T) {
	f := fillRegistry(t)
	target := filepath.Join(t.TempDir(), "target")
	rep, err := Run(t.Context(), Options{FromData: f.dataDir, ToData: target, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsCopied == 0 || rep.BytesCopied == 0 || rep.Rows["manifests"] == 0 || rep.Orphans == 0 {
		t.Fatalf("dry run report: %+v", rep)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a dry run created the target directory (%v)", err)
	}
}

func TestConvert(t *testing.T) {
	cases := []struct {
		in   any
		k    kind
		want any
	}{
		{int64(1), kindBool, true},
		{int64(0), kindBool, false},
		{true, kindInt, int64(1)},
		{false, kindInt, int64(0)},
		{[]byte("x"), kindText, "x"},
		{"x", kindBlob, []byte("x")},
		{nil, kindBool, nil},
		{int64(7), kindAny, int64(7)},
	}
	for _, tc := range cases {
		got, err := convert(tc.in, tc.k)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) || fmt.Sprintf("%T", got) != fmt.Sprintf("%T", tc.want) {
			t.Errorf("convert(%#v, %s) = %#v, %v; want %#v", tc.in, tc.k, got, err, tc.want)
		}
	}
	if _, err := convert("yes", kindBool); err == nil {
		t.Error("convert of a string to a boolean succeeded")
	}
}

func TestOptionsCheck(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string // "" for accepted
	}{
		{"defaults to PostgreSQL and S3", Options{FromData: "a", ToDatabase: "postgres://x/db", ToStorage: "s3://b"}, ""},
		{"back into a data directory", Options{FromDatabase: "postgres://x/db", FromStorage: "s3://b", ToData: "a"}, ""},
		{"blobs stay, metadata moves", Options{FromData: "a", ToData: "a", ToDatabase: "postgres://x/db"}, ""},
		{"no source", Options{ToData: "b"}, "--from-data"},
		{"source storage missing", Options{FromDatabase: "postgres://x/db", ToData: "b"}, "--from-data"},
		{"no target", Options{FromData: "a"}, "--to-data"},
		{"same SQLite file", Options{FromData: "a", ToData: "./a"}, "same SQLite database"},
		{"same PostgreSQL database", Options{FromDatabase: "postgres://x/db", FromStorage: "s3://b", ToDatabase: "postgres://x/db", ToStorage: "s3://c"}, "same database"},
	}
	for _, tc := range cases {
		err := tc.o.check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

// concurrency wraps a content store and records the most Puts in flight.
type concurrency struct {
	blobTarget
	in, most atomic.Int32
}

func (c *concurrency) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	n := c.in.Add(1)
	defer c.in.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	time.Sleep(20 * time.Millisecond) // let the others overlap
	return c.blobTarget.Put(ctx, d, r)
}

// TestBlobCopyBound: blobs are copied several at once, never more than
// --parallel, and each is verified: content that does not match its digest
// is refused by the target store and reported.
func TestBlobCopyBound(t *testing.T) {
	srcDir := t.TempDir()
	src, err := storage.NewFS(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	var refs []blobRef
	for i := range 12 {
		b := bytes.Repeat([]byte{byte(i)}, 1000+i)
		d := digest.FromBytes(b)
		if _, err := src.Put(t.Context(), d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, blobRef{d, int64(len(b))})
	}
	dstFS, err := storage.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dst := &concurrency{blobTarget: dstFS}
	bc := &blobCopy{src: src, dst: dst, parallel: 3}
	if err := bc.run(t.Context(), refs); err != nil {
		t.Fatal(err)
	}
	if m := dst.most.Load(); m > 3 || m < 2 {
		t.Fatalf("%d blobs copied at once, want 2 or 3 with --parallel 3", m)
	}
	if bc.copied != 12 {
		t.Fatalf("%d copied, want 12", bc.copied)
	}
	// A source blob whose content is not its digest's.
	bad := digest.FromString("something else")
	refs = append(refs, blobRef{bad, 1000})
	hx, bx := refs[0].digest.Encoded(), bad.Encoded()
	badPath := filepath.Join(srcDir, "blobs", "sha256", bx[:2], bx)
	if err := os.MkdirAll(filepath.Dir(badPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(srcDir, "blobs", "sha256", hx[:2], hx), badPath); err != nil {
		t.Fatal(err)
	}
	bc = &blobCopy{src: src, dst: dst, parallel: 3}
	err = bc.run(t.Context(), refs)
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("err %v, want the damaged blob reported", err)
	}
	if _, err := dstFS.Stat(t.Context(), bad); !errors.Is(err, storage.ErrBlobNotFound) {
		t.Fatalf("the damaged blob was stored in the target (%v)", err)
	}
}

// TestMigrateKilled kills berth migrate while it copies blobs (large
// enough to go up to S3 in several parts) and runs it again: the second
// run completes and the copy is identical.
func TestMigrateKilled(t *testing.T) {
	srv := testutil.StartServer(t, testutil.WithPassword(ownerPassword))
	for i, size := range []int64{6 << 20, 6 << 20, 64 << 10} {
		if err := remote.Write(srv.Ref(t, fmt.Sprintf("big/img:v%d", i)), testutil.RandomImage(t, 1, size), srv.RemoteOptions(t.Context())...); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop()
	s3 := testutil.StartS3(t)
	setS3Env(t, s3)
	url := s3.URL(s3.NewBucket(), "") + "&part-size=5MiB"
	target := filepath.Join(t.TempDir(), "target")
	args := []string{"migrate", "--from-data", srv.DataDir, "--to-data", target, "--to-storage", url, "--parallel", "1"}

	cmd := exec.CommandContext(t.Context(), testutil.BerthBinary(t), args...)
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Killed once the first blob is in the bucket, or at the end if it
	// finishes first.
	client := s3.Client()
	bucket := strings.TrimPrefix(strings.SplitN(url, "?", 2)[0], "s3://")
wait:
	for {
		select {
		case <-exited:
			t.Log("the first run finished before a blob could be seen in the bucket")
			break wait
		case <-time.After(10 * time.Millisecond):
		}
		out, err := client.ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("blobs/")})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Contents) > 0 {
			cmd.Process.Kill()
			<-exited
			// Killed among the blobs: no metadata, unless the run had
			// completed (metadata and all) just before.
			db, err := sqldb.OpenSQLite(t.Context(), target)
			if err != nil {
				t.Fatal(err)
			}
			var repos int
			var completed int64
			err = db.R().QueryRowContext(t.Context(), `SELECT (SELECT COUNT(*) FROM repositories), (SELECT MAX(completed_at) FROM migrate_runs)`).Scan(&repos, &completed)
			db.Close()
			if err != nil || (completed == 0 && repos != 0) {
				t.Fatalf("after the kill the unfinished target holds %d repositories (%v), want none", repos, err)
			}
			break
		}
	}

	out, err := runBerth(t, os.Environ(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the run after the kill:\n%s", out)
	sameInventory(t, "after a killed run", sqliteInventory(t, srv.DataDir, nil), sqliteInventory(t, target, s3Store(t, url)))
}
