package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// copyChunk is the size of one write or read of fileRates: large, as a
// registry writing a blob should use.
const copyChunk = 1 << 20

// sha256Rate hashes b and returns MB/s.
func sha256Rate(b []byte) float64 {
	start := time.Now()
	h := sha256.New()
	h.Write(b)
	h.Sum(nil)
	return mbps(int64(len(b)), time.Since(start))
}

// fileRates writes b to a new file in dir with copyChunk writes, then fsyncs
// it, then reads it back into into (which must be as long), and returns
// three rates in MB/s: writing into the page cache, writing and fsyncing
// (what a registry that makes a blob durable before it answers can do at
// best), and reading from the page cache.
func fileRates(dir string, b, into []byte) (write, durable, read float64, err error) {
	f, err := os.CreateTemp(dir, "pagecache-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size := int64(len(b))
	start := time.Now()
	for off := 0; off < len(b); off += copyChunk {
		if _, err := f.Write(b[off:min(off+copyChunk, len(b))]); err != nil {
			return 0, 0, 0, err
		}
	}
	write = mbps(size, time.Since(start))
	if err := f.Sync(); err != nil {
		return 0, 0, 0, err
	}
	durable = mbps(size, time.Since(start))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, 0, err
	}
	start = time.Now()
	for off := 0; off < len(b); off += copyChunk {
		if _, err := io.ReadFull(f, into[off:min(off+copyChunk, len(b))]); err != nil {
			return 0, 0, 0, err
		}
	}
	read = mbps(size, time.Since(start))
	return write, durable, read, nil
}

// trivialServer serves, on a loopback port inside this process, what a
// registry answers with no work behind it: a fixed manifest for
// /v2/x/manifests/..., the big blob from a file (with sendfile, as
// registries serve blobs) for /v2/x/blobs/..., and a sink for uploads.
type trivialServer struct {
	url  string
	srv  *http.Server
	done chan struct{}
}

func startTrivialServer(manifest []byte, blob *os.File) (*trivialServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/x/manifests/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{ociManifest}
		h["Content-Length"] = []string{strconv.Itoa(len(manifest))}
		h["Docker-Content-Digest"] = []string{sha256Digest(manifest)}
		if r.Method == http.MethodGet {
			_, _ = w.Write(manifest)
		}
	})
	mux.HandleFunc("/v2/x/blobs/", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			// One pull at a time: the shared file offset is safe.
			http.ServeContent(w, r, "", time.Time{}, blob)
		case http.MethodPut:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		}
	})
	s := &trivialServer{url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: mux}, done: make(chan struct{})}
	go func() {
		_ = s.srv.Serve(ln)
		close(s.done)
	}()
	return s, nil
}

func (s *trivialServer) close() {
	_ = s.srv.Close()
	<-s.done
}

// rawResponder is the cheapest HTTP/1.1 server there is: on every
// keep-alive connection it reads a request head (the benchmark's GETs have
// no body) and writes the same prepared response. The client measured
// against it is the client's own ceiling on this machine.
type rawResponder struct {
	url  string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn []net.Conn
}

func startRawResponder(manifest []byte) (*rawResponder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: " + ociManifest + "\r\nDocker-Content-Digest: " + sha256Digest(manifest) +
		"\r\nContent-Length: " + strconv.Itoa(len(manifest)) + "\r\n\r\n" + string(manifest))
	r := &rawResponder{url: "http://" + ln.Addr().String(), ln: ln}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conn = append(r.conn, c)
			r.mu.Unlock()
			r.wg.Go(func() { serveRaw(c, resp) })
		}
	})
	return r, nil
}

func serveRaw(c net.Conn, resp []byte) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		// The request head ends with an empty line.
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (r *rawResponder) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conn {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// clientCeiling is what the client achieves with servers that do no work.
type clientCeiling struct {
	raw     loadResult // manifest GETs from the raw responder
	handler loadResult // manifest GETs from a trivial net/http handler
	push    float64    // MB/s of the big blob into a net/http handler that discards it
	pull    float64    // MB/s of the big blob from a file, served with sendfile
}

// clientCeilings measures the benchmark's client: manifest GETs at the
// benchmark's concurrency against the raw responder (the client's own
// ceiling) and against a trivial net/http handler (the ceiling of any
// registry built on net/http, with this client on this machine), and one
// push and one pull of the big blob through loopback TCP. Pulls land in into.
func clientCeilings(ctx context.Context, cfg *config, dir string, manifest, blob, into []byte) (clientCeiling, error) {
	var cc clientCeiling
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return cc, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(blob); err != nil {
		return cc, err
	}
	s, err := startTrivialServer(manifest, f)
	if err != nil {
		return cc, err
	}
	defer s.close()
	rr, err := startRawResponder(manifest)
	if err != nil {
		return cc, err
	}
	defer rr.close()

	hc := &http.Client{Transport: newTransport(false), Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	gets := func(base string) (loadResult, error) {
		spec := loadSpec{
			concurrency: cfg.concurrency, duration: min(cfg.duration, 5*time.Second), maxRequests: cfg.maxRequests,
			newRequest: func(ctx context.Context) (*http.Request, error) {
				r, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/x/manifests/v1", nil)
				if err == nil {
					r.Header.Set("Accept", ociManifest)
				}
				return r, err
			},
			check: expectStatus(http.StatusOK, int64(len(manifest))),
		}
		if err := warmUp(ctx, hc, spec); err != nil {
			return loadResult{}, err
		}
		return runLoad(ctx, hc, spec)
	}
	if cc.raw, err = gets(rr.url); err != nil {
		return cc, fmt.Errorf("raw responder: %v", err)
	}
	if cc.handler, err = gets(s.url); err != nil {
		return cc, fmt.Errorf("trivial handler: %v", err)
	}

	bulk := &http.Client{Transport: newTransport(true), Timeout: bulkTimeout}
	defer bulk.CloseIdleConnections()
	c, err := newRegClient(ctx, s.url, bulk, "", "")
	if err != nil {
		return cc, err
	}
	start := time.Now()
	if err := c.finishUpload(ctx, "x", "/v2/x/blobs/upload", blob, "sha256:x"); err != nil {
		return cc, fmt.Errorf("push to the trivial server: %v", err)
	}
	cc.push = mbps(int64(len(blob)), time.Since(start))
	start = time.Now()
	if err := c.getBlobInto(ctx, "x", "sha256:x", into); err != nil {
		return cc, fmt.Errorf("pull from the trivial server: %v", err)
	}
	cc.pull = mbps(int64(len(blob)), time.Since(start))
	return cc, nil
}

// prefault touches every page of b, so that the first pull into it does not
// pay for page faults the later ones do not.
func prefault(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 0
	}
}

// warmUp opens the connections and warms both sides before a timed run:
// each worker sends a few requests.
func warmUp(ctx context.Context, hc *http.Client, spec loadSpec) error {
	spec.duration = 2 * time.Second
	spec.maxRequests = int64(spec.concurrency) * 10
	spec.pid = 0
	_, err := runLoad(ctx, hc, spec)
	return err
}
