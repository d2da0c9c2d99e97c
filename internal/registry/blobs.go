package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

func (rg *Registry) blob(req *request) error {
	d, e := parseDigest(req.rt.ref)
	if e != nil {
		return e
	}
	switch req.r.Method {
	case http.MethodGet, http.MethodHead:
		return rg.getBlob(req, d)
	case http.MethodDelete:
		return rg.deleteBlob(req, d)
	}
	return methodNotAllowed(req, "GET, HEAD, DELETE")
}

func (rg *Registry) getBlob(req *request, d digest.Digest) error {
	ctx := req.r.Context()
	size, err := rg.meta.Blob(ctx, req.rt.name, d)
	if errors.Is(err, meta.ErrBlobNotFound) {
		return newError(CodeBlobUnknown, "blob %s not found in repository %q", d, req.rt.name)
	} else if err != nil {
		return err
	}
	if e := rg.readable(req, nil); e != nil {
		return e
	}
	if req.r.Method == http.MethodHead && req.caller != nil && req.caller.Can(req.rt.name, auth.OpPush) {
		// A pusher that finds a layer here skips uploading it and pushes
		// the manifest next: the link must outlive a garbage collection's
		// grace period from now, as if it had just been uploaded.
		if err := rg.meta.ReferenceBlob(ctx, req.rt.name, d); errors.Is(err, meta.ErrBlobNotFound) {
			return newError(CodeBlobUnknown, "blob %s not found in repository %q", d, req.rt.name)
		} else if err != nil {
			return err
		}
	}
	if rg.redirect != nil && req.r.Method == http.MethodGet && size > verifyOnServeMax {
		if done, err := rg.redirectBlob(req, d, size); done || err != nil {
			return err
		}
	}
	f, err := rg.blobs.Open(ctx, d)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return newError(CodeBlobUnknown, "blob %s not found in repository %q", d, req.rt.name)
	} else if err != nil {
		return err
	}
	defer f.Close()
	content, e := rg.checkBlob(req, d, f, size)
	if e != nil {
		return e
	}
	h := req.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent handles Range, If-None-Match and HEAD, and hands the file
	// to sendfile; its plain-text error answers (416) become OCI errors.
	http.ServeContent(&ociErrors{ResponseWriter: req.w}, req.r, "", timeZero, content)
	return nil
}

// redirectBlob answers a GET of blob d with a redirect to the object
// store, once the stored object has the size recorded at push (what
// checkBlob checks of a blob this large). It returns false, to serve the
// blob through berth, if the sizes differ: then checkBlob finds the damage
// and quarantines the blob.
func (rg *Registry) redirectBlob(req *request, d digest.Digest, want int64) (bool, error) {
	ctx := req.r.Context()
	stored, err := rg.blobs.Stat(ctx, d)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return true, newError(CodeBlobUnknown, "blob %s not found in repository %q", d, req.rt.name)
	} else if err != nil {
		return true, err
	}
	if stored != want {
		return false, nil
	}
	u, err := rg.redirect(ctx, d)
	if err != nil {
		return true, err
	}
	h := req.w.Header()
	h.Set("Location", u)
	h.Set("Docker-Content-Digest", d.String())
	// The URL expires; a cache must not keep the redirect.
	h.Set("Cache-Control", "no-store")
	req.w.WriteHeader(http.StatusTemporaryRedirect)
	return true, nil
}

// verifyOnServeMax is the largest blob whose content is hashed before
// every response. Configs, signatures, SBOMs and small layers cost a read
// of at most this much (from the page cache, usually) and a millisecond of
// hashing; larger blobs would lose sendfile and a core per stream, so
// their content is left to the scrub and fsck.
const verifyOnServeMax = 1 << 20

// checkBlob refuses to serve a damaged blob file: one whose size is not
// the size recorded when it was pushed (a truncated or overgrown file
// cannot have the content its digest names; one fstat finds it), or, for
// small blobs, whose content does not hash to its digest. The file is
// moved into quarantine and the answer is BLOB_UNKNOWN (404), not 500: the
// content is gone as far as anyone can use it, a pull fails either way,
// and a push that asks (HEAD) is told to upload it again, which is what
// repairs it.
func (rg *Registry) checkBlob(req *request, d digest.Digest, f io.ReadSeeker, want int64) (io.ReadSeeker, error) {
	b, err := storage.Opened(d, f)
	if err != nil {
		return nil, err
	}
	why := storage.Damage{Digest: d, Size: b.Size, ExpectedSize: want, FoundBy: "serve"}
	problem := fmt.Sprintf("%d bytes stored, %d expected", b.Size, want)
	switch {
	case b.Size != want:
	case want <= verifyOnServeMax:
		h := d.Algorithm().Hash()
		// A file is read again from the page cache (and sent with
		// sendfile); the content of any other store (an object store, a
		// request away) is kept from this one read, at most
		// verifyOnServeMax bytes.
		_, isFile := f.(*os.File)
		var kept bytes.Buffer
		w := io.Writer(h)
		if !isFile {
			w = io.MultiWriter(h, &kept)
		}
		if _, err := io.Copy(w, io.LimitReader(f, want+1)); errors.Is(err, storage.ErrTampered) {
			problem = "its encrypted form does not authenticate"
			break
		} else if err != nil {
			return nil, fmt.Errorf("verify blob %s: %w", d, err)
		}
		if why.ActualDigest = digest.NewDigest(d.Algorithm(), h); why.ActualDigest == d {
			if !isFile {
				return bytes.NewReader(kept.Bytes()), nil
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, fmt.Errorf("verify blob %s: %w", d, err)
			}
			return f, nil
		}
		problem = "its content hashes to " + why.ActualDigest.String()
	default:
		return f, nil
	}
	moved, err := rg.blobs.Quarantine(req.r.Context(), b, why)
	rg.log.Error("damaged blob refused; push it again to repair it", "digest", d, "repository", req.rt.name,
		"size", b.Size, "expected_size", want, "actual_digest", why.ActualDigest, "quarantined", moved, "err", err)
	rg.damage(why)
	return nil, newError(CodeBlobUnknown, "blob %s is damaged on the server (%s): push it again", d, problem)
}

// ociErrors turns the plain-text error responses that net/http helpers
// write into OCI error bodies, keeping their status and headers
// (Content-Range on a 416).
type ociErrors struct {
	http.ResponseWriter
	failed bool
}

func (w *ociErrors) WriteHeader(code int) {
	if code < 400 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.failed = true
	c := Code{Name: "UNSUPPORTED", Message: http.StatusText(code), Status: code}
	if code == http.StatusRequestedRangeNotSatisfiable {
		c = CodeRangeUnsatisfiable
	}
	h := w.Header()
	h.Del("Content-Type")
	h.Del("X-Content-Type-Options")
	h.Del("Content-Length")
	WriteError(w.ResponseWriter, &Error{Code: c})
}

func (w *ociErrors) Write(p []byte) (int, error) {
	if w.failed {
		return len(p), nil // the OCI body was written instead
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps sendfile for successful responses of files. Any other
// content (an object store's response body) is relayed with copyBufSize
// reads instead of the 32 KiB net/http's connection falls back to: a relay
// costs two system calls per buffer, and on a busy machine those are what a
// pull waits for.
func (w *ociErrors) ReadFrom(r io.Reader) (int64, error) {
	if w.failed {
		return io.Copy(io.Discard, r)
	}
	under := r
	if lr, ok := r.(*io.LimitedReader); ok {
		under = lr.R
	}
	if _, isFile := under.(*os.File); isFile {
		return io.Copy(w.ResponseWriter, r)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(writerOnly{w.ResponseWriter}, r, *bp)
}

// copyBufSize is the buffer of a blob relayed from a store that is not the
// filesystem: one per such response in progress.
const copyBufSize = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses its
// buffer.
type writerOnly struct{ io.Writer }

func (rg *Registry) deleteBlob(req *request, d digest.Digest) error {
	err := rg.meta.UnlinkBlob(req.r.Context(), req.rt.name, d)
	var le *meta.LockedError
	if errors.Is(err, meta.ErrBlobNotFound) {
		return newError(CodeBlobUnknown, "blob %s not found in repository %q", d, req.rt.name)
	}
	if errors.As(err, &le) {
		return newError(CodeDenied, "%s: unlock it before deleting", le.Error())
	}
	if err != nil {
		return err
	}
	if err := rg.emit(req, "delete", "", d); err != nil {
		return err
	}
	req.w.WriteHeader(http.StatusAccepted)
	return nil
}

// startUpload handles POST /v2/<name>/blobs/uploads/: a mount, a monolithic
// upload (?digest=), or the start of a session.
func (rg *Registry) startUpload(req *request) error {
	if req.r.Method != http.MethodPost {
		return methodNotAllowed(req, "POST")
	}
	ctx := req.r.Context()
	if e := rg.writable(req); e != nil {
		return e
	}
	q := req.r.URL.Query()
	if m := q.Get("mount"); m != "" {
		if d, e := parseDigest(m); e == nil {
			if ok, err := rg.mount(req, d, q.Get("from")); err != nil {
				return err
			} else if ok {
				return rg.blobCreated(req, d)
			}
		}
		// Anything else falls through to a plain upload, so a client learns
		// nothing about blobs it may not read.
	} else if dq := q.Get("digest"); dq != "" {
		d, e := parseDigest(dq)
		if e != nil {
			return e
		}
		size, err := rg.blobs.PutSized(ctx, d, req.r.ContentLength, req.r.Body)
		if err != nil {
			return uploadErr(err, d)
		}
		if err := checkLength(req.r, size); err != nil {
			return err
		}
		if err := rg.linkBlob(req, d, size); err != nil {
			return err
		}
		return rg.blobCreated(req, d)
	}

	owner := ""
	if req.caller != nil {
		owner = req.caller.Name()
	}
	up, err := rg.blobs.StartUpload(ctx, req.rt.name, owner)
	var many *storage.TooManyUploadsError
	if errors.As(err, &many) {
		e := newError(CodeTooManyRequests, "%s: finish or cancel (DELETE) open uploads, or retry later; sessions that receive no bytes expire soon", many.Error())
		e.Header = http.Header{"Retry-After": {strconv.Itoa(int(rg.uploadRetryAfter / time.Second))}}
		return e
	}
	if err != nil {
		return err
	}
	size := int64(0)
	if req.r.ContentLength > 0 {
		if size, err = rg.blobs.Append(ctx, up.ID, 0, req.r.Body); err != nil {
			// The client never learns the session's location, so nobody
			// can resume it: remove what arrived at once.
			if cerr := rg.blobs.Cancel(ctx, up.ID); cerr != nil {
				rg.log.Warn("remove failed upload", "upload", up.ID, "err", cerr)
			}
			return uploadErr(err, "")
		}
	}
	rg.uploadAccepted(req, up.ID, size, http.StatusAccepted)
	return nil
}

// mount links blob d into the request's repository if the caller may read it
// where it is: from the named repository, or (with no from) from any
// repository the caller can pull.
func (rg *Registry) mount(req *request, d digest.Digest, from string) (bool, error) {
	ctx := req.r.Context()
	var candidates []string
	if from != "" {
		if !ValidRepositoryName(from) {
			return false, nil
		}
		candidates = []string{from}
	} else {
		var err error
		if candidates, err = rg.meta.RepositoriesWithBlob(ctx, d); err != nil {
			return false, err
		}
	}
	for _, src := range candidates {
		if req.caller == nil || !req.caller.Can(src, auth.OpPull) {
			continue
		}
		repo, err := rg.meta.Repository(ctx, src)
		if err != nil || !repo.Attributes.ReadEnabled {
			continue
		}
		size, err := rg.meta.Blob(ctx, src, d)
		if err != nil {
			continue
		}
		// Touch, not Stat: a garbage collection running now must not take
		// the content between this check and the link.
		if err := rg.blobs.Touch(ctx, d); err != nil {
			continue
		}
		if err := rg.linkBlob(req, d, size); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// writable refuses a write into a repository with writeEnabled=false. A
// repository that does not exist yet is writable: the push creates it.
func (rg *Registry) writable(req *request) error {
	repo, err := rg.meta.Repository(req.r.Context(), req.rt.name)
	if err == nil && !repo.Attributes.WriteEnabled {
		return newError(CodeDenied, "repository %q has writeEnabled=false: unlock it before pushing", req.rt.name)
	}
	if err != nil && !errors.Is(err, meta.ErrRepositoryNotFound) {
		return err
	}
	return nil
}

// linkBlob links blob d into the request's repository, which refuses if the
// repository was locked since the upload began.
func (rg *Registry) linkBlob(req *request, d digest.Digest, size int64) error {
	err := rg.meta.LinkBlob(req.r.Context(), req.rt.name, d, size)
	var le *meta.LockedError
	if errors.As(err, &le) {
		return newError(CodeDenied, "%s: unlock it before pushing", le.Error())
	}
	return err
}

// refuseLocked ends session id if the repository is locked for writes: the
// push cannot complete, so its partial data goes at once rather than after
// the upload TTL.
func (rg *Registry) refuseLocked(req *request, id string) error {
	e := rg.writable(req)
	if e != nil {
		if err := rg.blobs.Cancel(req.r.Context(), id); err != nil && !errors.Is(err, storage.ErrUploadNotFound) && !errors.Is(err, storage.ErrUploadBusy) {
			rg.log.Warn("remove refused upload", "upload", id, "err", err)
		}
	}
	return e
}

func (rg *Registry) blobCreated(req *request, d digest.Digest) error {
	h := req.w.Header()
	h.Set("Location", rg.location(fmt.Sprintf("/v2/%s/blobs/%s", req.rt.name, d)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	req.w.WriteHeader(http.StatusCreated)
	return nil
}

func (rg *Registry) uploadAccepted(req *request, id string, size int64, status int) {
	h := req.w.Header()
	h.Set("Location", rg.location(fmt.Sprintf("/v2/%s/blobs/uploads/%s", req.rt.name, id)))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", uploadRange(size))
	h.Set("Content-Length", "0")
	req.w.WriteHeader(status)
}

// uploadRange is the Range header for an upload holding size bytes. With no
// bytes, "0-0" is what Distribution sends and clients expect.
func uploadRange(size int64) string {
	if size == 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", size-1)
}

// upload handles GET, PATCH, PUT and DELETE on /v2/<name>/blobs/uploads/<id>.
func (rg *Registry) upload(req *request) error {
	ctx := req.r.Context()
	id := req.rt.ref
	info, err := rg.blobs.Upload(ctx, id)
	if err != nil || info.Repository != req.rt.name {
		return newError(CodeBlobUploadUnknown, "upload %q not found in repository %q", truncate(id, 100), req.rt.name)
	}
	switch req.r.Method {
	case http.MethodGet:
		rg.uploadAccepted(req, id, info.Size, http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if e := rg.refuseLocked(req, id); e != nil {
			return e
		}
		start, want := int64(-1), int64(-1)
		if cr := req.r.Header.Get("Content-Range"); cr != "" {
			s, end, ok := parseContentRange(cr)
			if !ok {
				return rg.rangeError(req, id, info.Size, "invalid Content-Range %q: want <start>-<end>", truncate(cr, 100))
			}
			if s != info.Size {
				return rg.rangeError(req, id, info.Size, "chunk starts at %d but the upload has %d bytes", s, info.Size)
			}
			if req.r.ContentLength >= 0 && req.r.ContentLength != end-s+1 {
				return rg.rangeError(req, id, info.Size, "Content-Range covers %d bytes but Content-Length is %d", end-s+1, req.r.ContentLength)
			}
			start, want = s, end-s+1
		}
		body := io.Reader(req.r.Body)
		if want >= 0 {
			// A chunked body has no Content-Length to check up front: take
			// what the range promised and check the rest afterwards.
			body = io.LimitReader(req.r.Body, want)
		}
		size, err := rg.blobs.Append(ctx, id, start, body)
		if errors.Is(err, storage.ErrUploadBusy) {
			return rg.busyError(req, id, info.Size)
		}
		if errors.Is(err, storage.ErrRangeMismatch) {
			return rg.rangeError(req, id, size, "chunk starts at %d but the upload has %d bytes", start, size)
		}
		if err != nil {
			rg.dropIfUnwritable(req, id, err)
			return uploadErr(err, "")
		}
		if want >= 0 {
			var extra [1]byte
			if n, _ := io.ReadFull(req.r.Body, extra[:]); n > 0 || size != start+want {
				return rg.rangeError(req, id, size, "the chunk's length does not match its Content-Range %q; the upload now has %d bytes", req.r.Header.Get("Content-Range"), size)
			}
		}
		rg.uploadAccepted(req, id, size, http.StatusAccepted)
		return nil
	case http.MethodPut:
		if e := rg.refuseLocked(req, id); e != nil {
			return e
		}
		dq := req.r.URL.Query().Get("digest")
		if dq == "" {
			return newError(CodeDigestInvalid, "the final PUT of an upload needs ?digest=<algorithm>:<hex>")
		}
		d, e := parseDigest(dq)
		if e != nil {
			return e
		}
		if cr := req.r.Header.Get("Content-Range"); cr != "" {
			s, _, ok := parseContentRange(cr)
			if !ok || s != info.Size {
				return rg.rangeError(req, id, info.Size, "Content-Range %q does not continue the upload at %d", truncate(cr, 100), info.Size)
			}
		}
		size, err := rg.blobs.Commit(ctx, id, d, req.r.Body)
		if err != nil {
			rg.dropIfUnwritable(req, id, err)
			return uploadErr(err, d)
		}
		if err := rg.linkBlob(req, d, size); err != nil {
			return err
		}
		return rg.blobCreated(req, d)
	case http.MethodDelete:
		if err := rg.blobs.Cancel(ctx, id); err != nil {
			return uploadErr(err, "")
		}
		req.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(req, "GET, PATCH, PUT, DELETE")
}

// dropIfUnwritable ends upload id at once when err says the store is full or
// read-only: clients start a new upload rather than resume one after an
// error, so keeping what it holds until the session expires would keep the
// disk full for nothing.
func (rg *Registry) dropIfUnwritable(req *request, id string, err error) {
	if storage.Unwritable(err) == nil {
		return
	}
	if cerr := rg.blobs.Cancel(context.WithoutCancel(req.r.Context()), id); cerr != nil && !errors.Is(cerr, storage.ErrUploadNotFound) {
		rg.log.Warn("could not remove an upload that failed on unwritable storage", "upload", id, "err", cerr)
	}
}

func (rg *Registry) rangeError(req *request, id string, size int64, format string, args ...any) error {
	e := newError(CodeRangeInvalid, format, args...)
	e.Header = http.Header{
		"Location": {rg.location(fmt.Sprintf("/v2/%s/blobs/uploads/%s", req.rt.name, id))},
		"Range":    {uploadRange(size)},
	}
	return e
}

// busyError refuses a chunk while another request writes to the upload, at
// once and without reading the chunk: to the client it is a chunk out of
// order, answered as the spec says, with the range the upload had.
func (rg *Registry) busyError(req *request, id string, size int64) error {
	return rg.rangeError(req, id, size, "another request is writing to this upload: send chunks one at a time, and ask for the upload's status (GET) before sending the next")
}

// parseContentRange reads "<start>-<end>" (some clients prefix "bytes ").
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bytes "), "bytes=")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

func checkLength(r *http.Request, size int64) error {
	if r.ContentLength >= 0 && r.ContentLength != size {
		return newError(CodeSizeInvalid, "received %d bytes but Content-Length was %d", size, r.ContentLength)
	}
	return nil
}

func uploadErr(err error, d digest.Digest) error {
	switch {
	case errors.Is(err, storage.ErrDigestMismatch):
		return newError(CodeDigestInvalid, "uploaded content does not match digest %s", d)
	case errors.Is(err, storage.ErrUnsupportedAlgo):
		return newError(CodeDigestInvalid, "unsupported digest %q: use sha256 or sha512", d)
	case errors.Is(err, storage.ErrUploadNotFound):
		return newError(CodeBlobUploadUnknown, "upload not found")
	case errors.Is(err, storage.ErrUploadBusy):
		return newError(CodeBlobUploadInvalid, "another request is writing to this upload; send chunks one at a time")
	}
	return err
}
