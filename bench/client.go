package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// newTransport returns the benchmark's HTTP/1.1 transport: enough idle
// connections for every worker, no compression, and for bulk transfers large
// socket buffers so that the client moves data in big system calls.
func newTransport(bulk bool) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// Plain HTTP on loopback: HTTP/1.1 like docker and podman use.
		ForceAttemptHTTP2: false,
	}
	if bulk {
		t.WriteBufferSize = 1 << 20
		t.ReadBufferSize = 1 << 20
	}
	return t
}

// regClient is a minimal registry client that authenticates like docker: it
// reads the challenge of GET /v2/ once; with a Bearer challenge it fetches an
// access token per scope from the token endpoint with Basic credentials and
// reuses it until it is about to expire; with a Basic challenge it sends
// Basic credentials on every request.
type regClient struct {
	base *url.URL
	hc   *http.Client
	user string
	pass string

	scheme  string // "", "basic" or "bearer"
	realm   string
	service string
	basic   string // the Basic Authorization header value

	mu     sync.Mutex
	tokens map[string]*bearer // by scope
	// fetches counts the access tokens fetched, for the report.
	fetches atomic.Int64
}

type bearer struct {
	header    string    // "Bearer ..."
	refreshAt time.Time // fetch a new one from then on
}

// newRegClient pings baseURL/v2/ and learns how it authenticates. With an
// empty user every request is anonymous.
func newRegClient(ctx context.Context, baseURL string, hc *http.Client, user, pass string) (*regClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	c := &regClient{base: u, hc: hc, user: user, pass: pass, tokens: map[string]*bearer{},
		basic: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/v2/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	drain(resp)
	switch {
	case resp.StatusCode == http.StatusOK || user == "":
	case resp.StatusCode == http.StatusUnauthorized:
		scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
		switch scheme {
		case "basic":
			c.scheme = "basic"
		case "bearer":
			c.scheme, c.realm, c.service = "bearer", params["realm"], params["service"]
			if c.realm == "" {
				return nil, fmt.Errorf("bearer challenge without a realm from %s", baseURL)
			}
		default:
			return nil, fmt.Errorf("unsupported challenge %q from %s", resp.Header.Get("WWW-Authenticate"), baseURL)
		}
	default:
		return nil, fmt.Errorf("GET %s/v2/: %s", baseURL, resp.Status)
	}
	return c, nil
}

// parseChallenge splits a WWW-Authenticate value into its lower-cased scheme
// and its parameters. Parameter values are quoted strings without escapes,
// which is what registries send.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		var key, val string
		key, rest, _ = strings.Cut(rest, "=")
		key = strings.ToLower(strings.TrimSpace(strings.TrimLeft(key, ", ")))
		if strings.HasPrefix(rest, `"`) {
			val, rest, _ = strings.Cut(rest[1:], `"`)
		} else {
			val, rest, _ = strings.Cut(rest, ",")
		}
		rest = strings.TrimLeft(rest, ", ")
		if key != "" {
			params[key] = val
		}
	}
	return strings.ToLower(scheme), params
}

// authorization returns the Authorization header value for a request that
// needs scope (several scopes separated by spaces), fetching an access token
// when needed; "" for none.
func (c *regClient) authorization(ctx context.Context, scope string) (string, error) {
	switch c.scheme {
	case "basic":
		return c.basic, nil
	case "bearer":
		t, err := c.bearerFor(ctx, scope)
		if err != nil {
			return "", err
		}
		return t.header, nil
	}
	return "", nil
}

// bearerFor returns the cached access token for scope, or fetches a new one
// when there is none or it is about to expire.
func (c *regClient) bearerFor(ctx context.Context, scope string) (*bearer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tokens[scope]; t != nil && time.Now().Before(t.refreshAt) {
		return t, nil
	}
	t, err := c.fetchToken(ctx, scope)
	if err != nil {
		return nil, err
	}
	c.tokens[scope] = t
	return t, nil
}

// tokenResponse is the part of the token endpoint's answer the client uses.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// fetchToken asks the token endpoint for an access token for scope with
// Basic credentials, as `docker login` and `docker pull` do.
func (c *regClient) fetchToken(ctx context.Context, scope string) (*bearer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.tokenURL(scope), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", c.basic)
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("token endpoint: %s: %s", resp.Status, b)
	}
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return nil, fmt.Errorf("token endpoint: %v", err)
	}
	tok := cmp.Or(tr.Token, tr.AccessToken)
	if tok == "" {
		return nil, errors.New("token endpoint answered no token")
	}
	ttl := time.Duration(cmp.Or(tr.ExpiresIn, 60)) * time.Second
	c.fetches.Add(1)
	// Like docker, reuse the token until shortly before it expires.
	return &bearer{header: "Bearer " + tok, refreshAt: start.Add(ttl - min(ttl/4, 30*time.Second))}, nil
}

func (c *regClient) tokenURL(scope string) string {
	// Several scopes are separated by spaces, and sent as one parameter each.
	q := url.Values{"service": {c.service}, "scope": strings.Fields(scope)}
	sep := "?"
	if strings.Contains(c.realm, "?") {
		sep = "&"
	}
	return c.realm + sep + q.Encode()
}

// headerSource returns a function that gives the Authorization value for
// scope on every call, for load loops: a lock-free read while the access
// token is fresh, and one fetch for all callers (under the client's lock)
// when it is about to expire. A failed fetch keeps the old value; the
// requests then fail and are counted as errors.
func (c *regClient) headerSource(ctx context.Context, scope string) (func() string, error) {
	if c.scheme != "bearer" {
		h, err := c.authorization(ctx, scope)
		return func() string { return h }, err
	}
	t, err := c.bearerFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	var cur atomic.Pointer[bearer]
	cur.Store(t)
	return func() string {
		t := cur.Load()
		if time.Now().Before(t.refreshAt) {
			return t.header
		}
		if nt, err := c.bearerFor(ctx, scope); err == nil {
			cur.Store(nt)
			return nt.header
		}
		return t.header
	}, nil
}

// url resolves a path or a Location header against the registry's base URL.
func (c *regClient) url(ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	return c.base.ResolveReference(u), nil
}

// do sends one request needing scope. body may be nil.
func (c *regClient) do(ctx context.Context, method, ref, scope string, body io.Reader, size int64, hdr http.Header) (*http.Response, error) {
	u, err := c.url(ref)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	a, err := c.authorization(ctx, scope)
	if err != nil {
		return nil, err
	}
	if a != "" {
		req.Header.Set("Authorization", a)
	}
	return c.hc.Do(req)
}

// expect closes resp and returns an error unless its status is want.
func expect(resp *http.Response, want int, what string) error {
	defer drain(resp)
	if resp.StatusCode == want {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return fmt.Errorf("%s: %s, want %d: %s", what, resp.Status, want, bytes.TrimSpace(b))
}

// drain reads what is left of resp's body (a little) and closes it, so that
// the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func pushScope(repo string) string { return "repository:" + repo + ":pull,push" }
func pullScope(repo string) string { return "repository:" + repo + ":pull" }

const catalogScope = "registry:catalog:*"

// pushBlob uploads data monolithically: POST to open an upload session, then
// one PUT with the whole body and the digest.
func (c *regClient) pushBlob(ctx context.Context, repo string, data []byte, digest string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", pushScope(repo), nil, 0, nil)
	if err != nil {
		return err
	}
	loc := resp.Header.Get("Location")
	if err := expect(resp, http.StatusAccepted, "POST blob upload"); err != nil {
		return err
	}
	return c.finishUpload(ctx, repo, loc, data, digest)
}

// finishUpload PUTs data with its digest to an upload session.
func (c *regClient) finishUpload(ctx context.Context, repo, loc string, data []byte, digest string) error {
	if loc == "" {
		return errors.New("upload session without a Location")
	}
	u, err := c.url(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err := c.do(ctx, http.MethodPut, u.String(), pushScope(repo), bytes.NewReader(data), int64(len(data)), hdr)
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "PUT blob upload")
}

// mountBlob links a blob of repository from into repo; when the registry
// falls back to a plain upload session, it uploads data there.
func (c *regClient) mountBlob(ctx context.Context, repo, from string, data []byte, digest string) error {
	q := url.Values{"mount": {digest}, "from": {from}}
	// Two scopes in one token request, as docker asks for a mount.
	scope := pushScope(repo) + " " + pullScope(from)
	resp, err := c.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?"+q.Encode(), scope, nil, 0, nil)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		drain(resp)
		return nil
	case http.StatusAccepted:
		loc := resp.Header.Get("Location")
		drain(resp)
		return c.finishUpload(ctx, repo, loc, data, digest)
	}
	return expect(resp, http.StatusCreated, "POST blob mount")
}

// putManifest stores a manifest under ref.
func (c *regClient) putManifest(ctx context.Context, repo, ref, mediaType string, body []byte) error {
	hdr := http.Header{"Content-Type": {mediaType}}
	resp, err := c.do(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, pushScope(repo), bytes.NewReader(body), int64(len(body)), hdr)
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "PUT manifest "+repo+":"+ref)
}

// getManifest fetches a manifest.
func (c *regClient) getManifest(ctx context.Context, repo, ref, accept string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, pullScope(repo), nil, 0, http.Header{"Accept": {accept}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, expect(resp, http.StatusOK, "GET manifest "+repo+":"+ref)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

// getBlobInto reads a blob into buf, which must have exactly its size.
func (c *regClient) getBlobInto(ctx context.Context, repo, digest string, buf []byte) error {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+digest, pullScope(repo), nil, 0, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return expect(resp, http.StatusOK, "GET blob")
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(buf)) {
		return fmt.Errorf("GET blob: Content-Length %d, want %d", resp.ContentLength, len(buf))
	}
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		return fmt.Errorf("GET blob: %v", err)
	}
	if n, _ := resp.Body.Read(make([]byte, 1)); n != 0 {
		return errors.New("GET blob: longer than expected")
	}
	return nil
}

// maxPages bounds a paginated listing, so that a registry whose Link
// headers loop cannot keep the benchmark busy.
const maxPages = 100_000

// listAll follows a paginated listing (catalog or tags) from first until
// there is no Link header, and returns how many entries it saw and in how
// many pages. key is the JSON field with the entries.
func (c *regClient) listAll(ctx context.Context, first, scope, key string) (entries, pages int, err error) {
	next := first
	for next != "" {
		if pages++; pages > maxPages {
			return entries, pages, fmt.Errorf("more than %d pages", maxPages)
		}
		resp, err := c.do(ctx, http.MethodGet, next, scope, nil, 0, nil)
		if err != nil {
			return entries, pages, err
		}
		if resp.StatusCode != http.StatusOK {
			return entries, pages, expect(resp, http.StatusOK, "GET "+next)
		}
		var page map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&page)
		drain(resp)
		if err != nil {
			return entries, pages, fmt.Errorf("GET %s: %v", next, err)
		}
		var list []string
		if raw := page[key]; len(raw) > 0 {
			if err := json.Unmarshal(raw, &list); err != nil {
				return entries, pages, fmt.Errorf("GET %s: %v", next, err)
			}
		}
		entries += len(list)
		next = nextLink(resp.Header.Get("Link"))
		if len(list) == 0 {
			break
		}
	}
	return entries, pages, nil
}

// nextLink returns the target of a `<...>; rel="next"` Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		target, params, _ := strings.Cut(part, ";")
		if !strings.Contains(params, `rel="next"`) && !strings.Contains(params, "rel=next") {
			continue
		}
		target = strings.TrimSpace(target)
		if strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
			return target[1 : len(target)-1]
		}
	}
	return ""
}
