package testutil

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Auth returns the credentials of s for go-containerregistry: the owner's
// for berth, anonymous for a registry without authentication. They are only
// sent when the registry asks for them.
func (s *Server) Auth() authn.Authenticator {
	if s.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: s.Username, Password: s.Password}
}

// Ref parses ref ("repo:tag" or "repo@sha256:...") as a reference on s.
func (s *Server) Ref(t testing.TB, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s.Host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Repo parses repo as a repository on s.
func (s *Server) Repo(t testing.TB, repo string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Digest returns the reference repo@dig on s.
func (s *Server) Digest(t testing.TB, repo, dig string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s.Host+"/"+repo+"@"+dig, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// RemoteOptions returns go-containerregistry options that talk to s with its
// credentials, bound to ctx, followed by extra.
func (s *Server) RemoteOptions(ctx context.Context, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithAuth(s.Auth()), remote.WithContext(ctx)}, extra...)
}

// Client returns an HTTP client for raw requests to s, authenticated like a
// real client would be: it pings /v2/, then uses Basic credentials or fetches
// a bearer token for scopes (for example
// "repository:team/app:pull,push"), as the registry's challenge says.
func (s *Server) Client(t testing.TB, ctx context.Context, scopes ...string) *http.Client {
	t.Helper()
	reg, err := name.NewRegistry(s.Host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := transport.NewWithContext(ctx, reg, s.Auth(), http.DefaultTransport, scopes)
	if err != nil {
		t.Fatalf("authenticate to %s: %v", s.Host, err)
	}
	return &http.Client{Transport: rt}
}

// blobPath matches the path of a blob below the blob store root, and captures
// the algorithm and the hex digest. berth keeps blobs/<alg>/<aa>/<hex>;
// Distribution keeps docker/registry/v2/blobs/<alg>/<aa>/<hex>/data.
var blobPath = map[string]*regexp.Regexp{
	KindBerth:        regexp.MustCompile(`^(sha256|sha512)/([0-9a-f]{2})/([0-9a-f]+)$`),
	KindDistribution: regexp.MustCompile(`^(sha256|sha512)/([0-9a-f]{2})/([0-9a-f]+)/data$`),
}

var blobRoot = map[string]string{
	KindBerth:        "blobs",
	KindDistribution: filepath.Join("docker", "registry", "v2", "blobs"),
}

// CheckBlobStore reads every file of the server's blob store and fails the
// test for any file that is not a complete blob: a file whose content does
// not hash to the digest in its name, or a file the layout does not allow
// (a temporary file left in the store by a crash). It returns the number of
// blobs checked. Run it while the server is stopped, or at least idle.
func (s *Server) CheckBlobStore(t testing.TB) int {
	t.Helper()
	root := filepath.Join(s.DataDir, blobRoot[s.Kind])
	re := blobPath[s.Kind]
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == root {
				return fs.SkipDir // no blob pushed yet
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		m := re.FindStringSubmatch(filepath.ToSlash(rel))
		if m == nil || !d.Type().IsRegular() {
			t.Errorf("blob store holds %s, which is not a blob", rel)
			return nil
		}
		alg, prefix, want := m[1], m[2], m[3]
		if want[:2] != prefix {
			t.Errorf("blob %s is in the wrong directory", rel)
		}
		var h hash.Hash
		if alg == "sha256" {
			h = sha256.New()
		} else {
			h = sha512.New()
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("blob %s holds content with digest %s:%s: a partial or corrupt blob", rel, alg, got)
		}
		n++
		return nil
	})
	if err != nil {
		t.Errorf("walk blob store: %v", err)
	}
	return n
}
