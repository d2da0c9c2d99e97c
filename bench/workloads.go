package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// bulkTimeout bounds one push or pull of bulk content.
const bulkTimeout = 10 * time.Minute

// Repositories the workloads use.
const (
	smallRepo  = "bench/app"   // the tiny image of workload 3
	blobRepo   = "bench/blob"  // the big blob of workloads 1 and 2
	imageRepo  = "bench/image" // the layered image of workloads 1 and 2
	scaleBase  = "scale/base"  // where workload 5's blobs are pushed once
	scaleTags  = "scale/tags"  // the repository with many tags
	scaleRepos = "scale/r"     // prefix of the many repositories
	tokenName  = "bench"       // berth's scoped token
)

// A subject is one flavour under test with its two instances and clients.
type subject struct {
	f    *flavour
	auth *instance // authenticated
	open *instance // unauthenticated

	// authAdmin has every right on the auth instance: berth's owner, or
	// Distribution's htpasswd user.
	authAdmin *regClient
	// openAdmin can push to the open instance: berth's owner, or anonymous
	// for Distribution.
	openAdmin *regClient
	// token is berth's scoped token (content/read on bench/app) on the auth
	// instance; for Distribution the htpasswd user.
	token *regClient
	// anon is an anonymous client of the open instance.
	anon *regClient
}

// setUp creates the clients of s, pushes the tiny image to both instances,
// and for berth creates the scoped token.
func (b *bench) setUp(ctx context.Context, s *subject) error {
	var err error
	if s.authAdmin, err = newRegClient(ctx, s.auth.url, b.bulk, s.auth.user, s.auth.pass); err != nil {
		return err
	}
	if s.openAdmin, err = newRegClient(ctx, s.open.url, b.bulk, s.open.user, s.open.pass); err != nil {
		return err
	}
	if s.anon, err = newRegClient(ctx, s.open.url, b.small, "", ""); err != nil {
		return err
	}
	for _, c := range []*regClient{s.authAdmin, s.openAdmin} {
		if err := b.pushTiny(ctx, c, smallRepo, "v1"); err != nil {
			return err
		}
	}
	user, pass := s.auth.user, s.auth.pass
	if s.f.key == keyBerth {
		if user, pass, err = createToken(ctx, b.small, s.auth); err != nil {
			return err
		}
	}
	s.token, err = newRegClient(ctx, s.auth.url, b.small, user, pass)
	return err
}

// pushTiny pushes the tiny image's blobs and its manifest as repo:tag.
func (b *bench) pushTiny(ctx context.Context, c *regClient, repo, tag string) error {
	for _, blob := range [][]byte{b.tiny.config, b.tiny.layer} {
		if err := c.pushBlob(ctx, repo, blob, sha256Digest(blob)); err != nil {
			return fmt.Errorf("push to %s: %v", c.base.Host, err)
		}
	}
	return c.putManifest(ctx, repo, tag, ociManifest, b.tiny.manifest)
}

// createToken creates berth's token "bench" with content/read on bench/app
// through the REST API (as `berth token create -n bench --repository
// bench/app content/read` does) and returns its name and password1.
func createToken(ctx context.Context, hc *http.Client, in *instance) (user, pass string, err error) {
	return createNamedToken(ctx, hc, in, tokenName)
}

// createNamedToken creates a token like "bench" with another name.
func createNamedToken(ctx context.Context, hc *http.Client, in *instance, name string) (user, pass string, err error) {
	body := `{"properties": {"scopeMapActions": ["repositories/` + smallRepo + `/content/read"],
		"credentials": {"passwords": [{"name": "password1"}]}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, in.url+"/api/v1/tokens/"+name, strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.SetBasicAuth(in.user, in.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", "", expect(resp, http.StatusCreated, "create token")
	}
	var tok struct {
		Properties struct {
			Credentials struct {
				Username  string `json:"username"`
				Passwords []struct {
					Value string `json:"value"`
				} `json:"passwords"`
			} `json:"credentials"`
		} `json:"properties"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", "", fmt.Errorf("create token: %v", err)
	}
	cr := tok.Properties.Credentials
	if cr.Username == "" || len(cr.Passwords) == 0 || cr.Passwords[0].Value == "" {
		return "", "", fmt.Errorf("create token: no password in the answer")
	}
	return cr.Username, cr.Passwords[0].Value, nil
}

// pushBlob is workload 1a: the big blob, monolithic (POST, then one PUT).
func (b *bench) pushBlob(ctx context.Context, s *subject) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	c := s.authAdmin
	// The access token comes first, as docker has it before it pushes.
	if _, err := c.authorization(ctx, pushScope(blobRepo)); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.pushBlob(ctx, blobRepo, b.content.blob(), b.content.blobDigest); err != nil {
		return 0, err
	}
	return mbps(b.content.blobSize, time.Since(start)), nil
}

// pushImage is workload 1b: the layered image, pushed by
// go-containerregistry with cfg.jobs concurrent uploads.
func (b *bench) pushImage(ctx context.Context, s *subject, tag string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	img, err := b.content.image()
	if err != nil {
		return 0, err
	}
	ref, err := name.NewTag(s.auth.host+"/"+imageRepo+":"+tag, name.Insecure)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = remote.Write(ref, img,
		remote.WithContext(ctx),
		remote.WithAuth(&authn.Basic{Username: s.auth.user, Password: s.auth.pass}),
		remote.WithTransport(b.bulk.Transport),
		remote.WithJobs(b.cfg.jobs))
	if err != nil {
		return 0, err
	}
	return mbps(b.content.imageBytes(), time.Since(start)), nil
}

// pullBlob is workload 2a: the big blob read into memory, then its digest
// checked (after the clock stops, so that the client's hashing does not cap
// the rate; see docs/benchmarks.md).
func (b *bench) pullBlob(ctx context.Context, s *subject) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	c := s.authAdmin
	if _, err := c.authorization(ctx, pullScope(blobRepo)); err != nil {
		return 0, err
	}
	into := b.pullBuf[:b.content.blobSize]
	start := time.Now()
	if err := c.getBlobInto(ctx, blobRepo, b.content.blobDigest, into); err != nil {
		return 0, err
	}
	rate := mbps(b.content.blobSize, time.Since(start))
	if got := sha256Digest(into); got != b.content.blobDigest {
		return 0, fmt.Errorf("pulled blob has digest %s, want %s", got, b.content.blobDigest)
	}
	return rate, nil
}

// pullImage is workload 2b: the image's manifest, then its layers with
// cfg.jobs concurrent GETs, each into memory; digests checked afterwards.
func (b *bench) pullImage(ctx context.Context, s *subject, tag string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	c := s.authAdmin
	if _, err := c.authorization(ctx, pullScope(imageRepo)); err != nil {
		return 0, err
	}
	start := time.Now()
	raw, err := c.getManifest(ctx, imageRepo, tag, ociManifest)
	if err != nil {
		return 0, err
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("pulled manifest: %v", err)
	}
	if len(m.Layers) != b.content.layers {
		return 0, fmt.Errorf("pulled manifest has %d layers, want %d", len(m.Layers), b.content.layers)
	}
	var (
		next int64 = -1
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range b.cfg.jobs {
		wg.Go(func() {
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= len(m.Layers) || ctx.Err() != nil {
					return
				}
				into := b.pullBuf[int64(i)*b.content.layerSize : int64(i+1)*b.content.layerSize]
				if err := c.getBlobInto(ctx, imageRepo, m.Layers[i].Digest, into); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errs[0]
	}
	rate := mbps(b.content.imageBytes(), time.Since(start))
	for i, l := range m.Layers {
		into := b.pullBuf[int64(i)*b.content.layerSize : int64(i+1)*b.content.layerSize]
		if want := b.content.layerDigests[i].String(); l.Digest != want || sha256Digest(into) != want {
			return 0, fmt.Errorf("pulled layer %d does not match %s", i, want)
		}
	}
	return rate, nil
}

// A smallVariant is one kind of run of workload 3.
type smallVariant struct {
	label  string
	method string
	authed bool
}

var smallVariants = []smallVariant{
	{"manifest GET, authenticated", http.MethodGet, true},
	{"manifest HEAD, authenticated", http.MethodHead, true},
	{"manifest GET, anonymous", http.MethodGet, false},
	{"manifest HEAD, anonymous", http.MethodHead, false},
}

// smallRequests is workload 3: manifest HEAD or GET of bench/app:v1 at
// cfg.concurrency, closed loop. Authenticated: berth with its scoped token's
// access token, fetched once and reused; Distribution with Basic htpasswd
// credentials on every request. Anonymous: the open instances.
func (b *bench) smallRequests(ctx context.Context, s *subject, v smallVariant) (loadResult, error) {
	in, c := s.open, s.anon
	if v.authed {
		in, c = s.auth, s.token
	}
	want := int64(len(b.tiny.manifest))
	if v.method == http.MethodHead {
		want = 0
	}
	spec := loadSpec{
		concurrency: b.cfg.concurrency, duration: b.cfg.duration, maxRequests: b.cfg.maxRequests,
		newRequest: func(ctx context.Context) (*http.Request, error) {
			r, err := http.NewRequestWithContext(ctx, v.method, in.url+"/v2/"+smallRepo+"/manifests/v1", nil)
			if err == nil {
				r.Header.Set("Accept", ociManifest)
			}
			return r, err
		},
		check: expectStatus(http.StatusOK, want),
		pid:   in.pid(),
	}
	if v.authed {
		h, err := c.headerSource(ctx, pullScope(smallRepo))
		if err != nil {
			return loadResult{}, err
		}
		spec.auth = h
	}
	if err := warmUp(ctx, b.small, spec); err != nil {
		return loadResult{}, err
	}
	return runLoad(ctx, b.small, spec)
}

// logins is workload 4: GET /oauth2/token with the scoped token's Basic
// credentials, asking for pull on bench/app, at cfg.concurrency.
func (b *bench) logins(ctx context.Context, s *subject) (loadResult, error) {
	c := s.token
	if c.scheme != "bearer" {
		return loadResult{}, fmt.Errorf("%s has no token endpoint", s.f.label)
	}
	u := c.tokenURL(pullScope(smallRepo))
	spec := loadSpec{
		concurrency: b.cfg.concurrency, duration: b.cfg.duration, maxRequests: b.cfg.maxRequests,
		newRequest: func(ctx context.Context) (*http.Request, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err == nil {
				r.Header.Set("Authorization", c.basic)
			}
			return r, err
		},
		check: expectStatus(http.StatusOK, -1),
		pid:   s.auth.pid(),
	}
	if err := warmUp(ctx, b.small, spec); err != nil {
		return loadResult{}, err
	}
	return runLoad(ctx, b.small, spec)
}

// populate is the set-up of workload 5 on the open instance: cfg.repos
// repositories scale/rNNNNN holding the tiny image (its blobs mounted from
// scale/base, then the manifest), and cfg.tags tags of it in scale/tags. It
// returns how long each half took.
func (b *bench) populate(ctx context.Context, s *subject) (repos, tags time.Duration, err error) {
	c := s.openAdmin
	if err := b.pushTiny(ctx, c, scaleBase, "v1"); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.populateTimeout)
	defer cancel()
	mountTiny := func(repo string) error {
		if err := c.mountBlob(ctx, repo, scaleBase, b.tiny.config, b.tiny.configDigest); err != nil {
			return err
		}
		return c.mountBlob(ctx, repo, scaleBase, b.tiny.layer, b.tiny.layerDigest)
	}
	start := time.Now()
	err = parallel(b.cfg.populateConcurrency, b.cfg.repos, func(i int) error {
		repo := fmt.Sprintf("%s%05d", scaleRepos, i)
		if err := mountTiny(repo); err != nil {
			return err
		}
		return c.putManifest(ctx, repo, "v1", ociManifest, b.tiny.manifest)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("populate %d repositories: %v", b.cfg.repos, err)
	}
	repos = time.Since(start)
	if err := mountTiny(scaleTags); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	err = parallel(b.cfg.populateConcurrency, b.cfg.tags, func(i int) error {
		return c.putManifest(ctx, scaleTags, fmt.Sprintf("t%05d", i), ociManifest, b.tiny.manifest)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("populate %d tags: %v", b.cfg.tags, err)
	}
	return repos, time.Since(start), nil
}

// parallel runs fn(0) ... fn(n-1) on workers goroutines and returns the
// first error; after an error no new call starts.
func parallel(workers, n int, fn func(i int) error) error {
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(true)
					errOnce.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// A listing is one paginated listing of workload 5.
type listing struct {
	label string
	path  string
	scope string
	key   string
	want  int // entries expected at least
}

func (b *bench) listings() []listing {
	return []listing{
		{fmt.Sprintf("catalog of %s repositories, n=1000", thousands(b.cfg.repos)), "/v2/_catalog?n=1000", catalogScope, "repositories", b.cfg.repos},
		{fmt.Sprintf("catalog of %s repositories, default page", thousands(b.cfg.repos)), "/v2/_catalog", catalogScope, "repositories", b.cfg.repos},
		{fmt.Sprintf("%s tags, n=1000", thousands(b.cfg.tags)), "/v2/" + scaleTags + "/tags/list?n=1000", pullScope(scaleTags), "tags", b.cfg.tags},
		{fmt.Sprintf("%s tags, default page", thousands(b.cfg.tags)), "/v2/" + scaleTags + "/tags/list", pullScope(scaleTags), "tags", b.cfg.tags},
	}
}

// list times one full paginated listing and returns the time and the number
// of pages.
func (b *bench) list(ctx context.Context, s *subject, l listing) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c := s.openAdmin
	if _, err := c.authorization(ctx, l.scope); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	n, pages, err := c.listAll(ctx, l.path, l.scope, l.key)
	d := time.Since(start)
	if err != nil {
		return 0, pages, err
	}
	if n < l.want {
		return 0, pages, fmt.Errorf("listed %d entries, want at least %d", n, l.want)
	}
	return d, pages, nil
}

// profile fetches a CPU profile of berth (through its --debug-addr) for
// secs seconds into dir/name, in the background; the returned function waits
// for it and returns where it was written.
func profile(ctx context.Context, in *instance, dir, name string, secs int) func() (string, error) {
	type result struct {
		path string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		hc := &http.Client{Timeout: time.Duration(secs)*time.Second + time.Minute}
		u := "http://" + in.debugAddr + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			ch <- result{err: err}
			return
		}
		resp, err := hc.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			ch <- result{err: expect(resp, http.StatusOK, "GET "+u)}
			return
		}
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err == nil {
			_, err = f.ReadFrom(resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		ch <- result{path, err}
	}()
	return func() (string, error) {
		r := <-ch
		return r.path, r.err
	}
}
