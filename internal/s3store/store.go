package s3store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// Store is the content store on one bucket (and key prefix).
type Store struct {
	cfg     Config
	client  *s3.Client
	presign *s3.PresignClient
	bufs    sync.Pool // *[]byte of cfg.PartSize, reused across parts
	// copies counts server-side copies, which cost the object store a
	// second write of the blob: tests check which paths avoid them.
	copies atomic.Int64
	// sealer, when set, gives what blob objects hold in place of content.
	sealer storage.Sealer
}

// SetSealer has every blob written from now on stored as sl seals it
// (encryption at rest). Upload sessions still hold what clients sent
// until their commit seals it. Call it before use.
func (s *Store) SetSealer(sl storage.Sealer) { s.sealer = sl }

// New connects to the bucket. Credentials come from the AWS SDK's default
// chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared config files,
// or an instance role.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.PartSize < minPartSize {
		cfg.PartSize = defaultPartSize
	}
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = 5
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = 5 * time.Second
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Every blob is verified against its sha256 digest by berth; the
		// SDK's extra CRC of every request and response buys nothing.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &Store{cfg: cfg, client: client, presign: s3.NewPresignClient(client)}
	s.bufs.New = func() any { b := make([]byte, cfg.PartSize); return &b }
	return s, nil
}

// Config returns the store's configuration.
func (s *Store) Config() Config { return s.cfg }

// Ping checks that the bucket is reachable with the store's credentials.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.cfg.Bucket}); err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

func validate(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return storage.ErrUnsupportedAlgo
	}
	if d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512 {
		return storage.ErrUnsupportedAlgo
	}
	return nil
}

func (s *Store) blobKey(d digest.Digest) string {
	hx := d.Encoded()
	return s.cfg.Prefix + "blobs/" + string(d.Algorithm()) + "/" + hx[:2] + "/" + hx
}

func isNotFound(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchUpload":
			return true
		}
	}
	var nk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nk) || errors.As(err, &nf)
}

// Stat returns the size of a stored blob.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.blobKey(d))})
	if isNotFound(err) {
		return 0, storage.ErrBlobNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Open returns the blob's content as a reader that can seek. Opening costs
// a HEAD (a HEAD request of a client, which reads nothing, costs no more);
// the first read starts one GET that later reads stream, and a seek
// elsewhere starts a ranged GET from there on the next read.
func (s *Store) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	key := s.blobKey(d)
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
	if isNotFound(err) {
		return nil, storage.ErrBlobNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return &objectReader{s: s, ctx: ctx, key: key, size: aws.ToInt64(out.ContentLength)}, nil
}

// PresignGet returns a URL that serves blob d without credentials until ttl
// has passed, for redirecting clients to the object store.
func (s *Store) PresignGet(ctx context.Context, d digest.Digest, ttl time.Duration) (string, error) {
	if err := validate(d); err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.blobKey(d))},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign blob %s: %w", d, err)
	}
	return req.URL, nil
}

type objectReader struct {
	s    *Store
	ctx  context.Context
	key  string
	size int64
	off  int64 // where the next Read reads
	pos  int64 // where body is
	body io.ReadCloser
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.body != nil && r.pos != r.off {
		_ = r.body.Close()
		r.body = nil
	}
	if r.body == nil {
		in := &s3.GetObjectInput{Bucket: &r.s.cfg.Bucket, Key: &r.key}
		if r.off > 0 {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-", r.off))
		}
		out, err := r.s.client.GetObject(r.ctx, in)
		if err != nil {
			return 0, fmt.Errorf("read blob at %d: %w", r.off, err)
		}
		r.body, r.pos = out.Body, r.off
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	r.pos += int64(n)
	if err == io.EOF && r.off < r.size {
		// The object is shorter than it said: never pass that off as the
		// end of the blob.
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// readBufSize is the buffer of WriteTo: the response body of a GET gives
// what the socket holds, often far more than io.Copy's 32 KiB, and every
// read is a system call.
const readBufSize = 1 << 20

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// WriteTo copies the blob from the current position to its end into w, for
// io.Copy (the scrub, fsck, a hash of the content).
func (r *objectReader) WriteTo(w io.Writer) (int64, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	// Hide both sides' shortcuts, which would lead back here or to a
	// small buffer.
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, *bp)
}

func (r *objectReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = abs
	return abs, nil
}

func (r *objectReader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// Put stores r as blob d, verifying the digest while it streams. Content up
// to one part is checked in memory and written with one PUT; larger content
// goes up as a multipart upload to the blob's own key that is completed only
// if the digest matches, so the key never holds wrong or partial content.
// If the blob is already stored, r is verified but not written again.
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	return s.PutSized(ctx, d, -1, r)
}

// PutSized is Put for content whose length the client declared (size, or
// -1 if it did not): a stored object of another size is suspect (damaged,
// or the client lies, which the digest check catches) and is replaced by
// what the client sends, which repairs it.
func (s *Store) PutSized(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error) {
	return s.put(ctx, d, size, r, false)
}

// put is PutSized; with replace it writes r even over a stored object, for
// callers that cannot tell beforehand whether the stored one is sound.
func (s *Store) put(ctx context.Context, d digest.Digest, size int64, r io.Reader, replace bool) (int64, error) {
	if err := validate(d); err != nil {
		return 0, err
	}
	if s.sealer != nil {
		// A stored object's size says nothing of the content's: write it
		// again, verified by the sealer as it goes.
		return s.putSealed(ctx, d, r)
	}
	if stored, err := s.Stat(ctx, d); !replace && err == nil && (size < 0 || stored == size) {
		h := d.Algorithm().Hash()
		n, err := io.Copy(h, r)
		if err != nil {
			return n, fmt.Errorf("read blob: %w", err)
		}
		if digest.NewDigest(d.Algorithm(), h) != d {
			return n, storage.ErrDigestMismatch
		}
		return n, nil
	}
	return s.write(ctx, d, d.Algorithm().Hash(), r)
}

// putSealed writes the sealed form of r as blob d and returns the
// content's size.
func (s *Store) putSealed(ctx context.Context, d digest.Digest, r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	sealed, err := s.sealer.Seal(ctx, d, cr)
	if err != nil {
		return 0, err
	}
	_, err = s.write(ctx, d, nil, sealed)
	if errors.Is(err, storage.ErrDigestMismatch) {
		err = storage.ErrDigestMismatch
	}
	return cr.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// write stores r at blob d's key, in one PUT if it fits in a part, or as a
// multipart upload completed only once all of r was read and, with h, its
// digest matched d. It returns how many bytes of r it read.
func (s *Store) write(ctx context.Context, d digest.Digest, h hash.Hash, r io.Reader) (int64, error) {
	key := s.blobKey(d)
	check := h != nil
	if !check {
		h = discardHash{}
	}
	verified := func() bool { return !check || digest.NewDigest(d.Algorithm(), h) == d }
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(r, buf)
	h.Write(buf[:n])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if !verified() {
			return int64(n), storage.ErrDigestMismatch
		}
		if err := s.putObject(ctx, key, buf[:n]); err != nil {
			return int64(n), fmt.Errorf("write blob %s: %w", d, err)
		}
		return int64(n), nil
	case err != nil:
		return int64(n), fmt.Errorf("read blob: %w", err)
	}
	mp, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &key})
	if err != nil {
		return int64(n), fmt.Errorf("write blob %s: %w", d, err)
	}
	up := &multipart{s: s, key: key, id: aws.ToString(mp.UploadId)}
	total, err := up.stream(ctx, buf[:n], r, h)
	if err == nil && !verified() {
		err = storage.ErrDigestMismatch
	}
	if err == nil {
		err = up.complete(ctx)
	}
	if err != nil {
		up.abort(context.WithoutCancel(ctx))
		if !errors.Is(err, storage.ErrDigestMismatch) {
			err = fmt.Errorf("write blob %s: %w", d, err)
		}
		return total, err
	}
	return total, nil
}

// discardHash stands in for the hash of content that is not verified
// here (a sealer verifies it).
type discardHash struct{}

func (discardHash) Write(p []byte) (int, error) { return len(p), nil }
func (discardHash) Sum(b []byte) []byte         { return b }
func (discardHash) Reset()                      {}
func (discardHash) Size() int                   { return 0 }
func (discardHash) BlockSize() int              { return 1 }

func (s *Store) putObject(ctx context.Context, key string, b []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.cfg.Bucket, Key: &key, Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}, unsignedPayload)
	return err
}

// unsignedPayload sends a PUT's body as UNSIGNED-PAYLOAD, as the SDK does
// on HTTPS. Over plain HTTP it would otherwise hash every byte with SHA-256
// to sign it, and the object store would hash it again to check: two more
// passes over content berth has already verified against its digest. What
// still protects the bytes between berth and the store is TLS on https://
// endpoints and TCP's checksum on http:// ones; a signed payload would not
// make plain HTTP safe anyway, since the store's answers to GETs are not
// signed (berth checks blobs up to 1 MiB on every read, fsck and the scrub
// all of them).
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// Delete removes blob d. Deleting a blob that is not stored is not an error.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.blobKey(d))}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob, in key order, until fn returns an
// error.
func (s *Store) Walk(ctx context.Context, fn func(storage.BlobInfo) error) error {
	prefix := s.cfg.Prefix + "blobs/"
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, o := range page.Contents {
			rest := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			parts := strings.Split(rest, "/")
			if len(parts) != 3 {
				continue // not ours
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
			if d.Validate() != nil || parts[1] != parts[2][:2] {
				continue
			}
			if err := fn(storage.BlobInfo{Digest: d, Size: aws.ToInt64(o.Size), Touched: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// multipart is one multipart upload in progress.
type multipart struct {
	s     *Store
	key   string
	id    string
	parts []Part
}

// partSize is the size of part number n (1-based): the configured size for
// the first thousand, doubling every thousand after up to 16 times the
// first, so that S3's 10,000 parts hold over 100,000 first-size parts (1.7
// TiB with 16 MiB parts) while what an upload buffers stays bounded (see
// partsInFlight).
func (s *Store) partSize(n int32) int64 {
	shift := min((n-1)/1000, 4)
	return min(s.cfg.PartSize<<shift, 5<<30)
}

// partsInFlight is how many first-size parts an upload sends at once: the
// object store writes them in parallel while the next part is read. With
// the part being read, an upload buffers at most partsInFlight+1 parts of
// the configured size; once parts grow (past the thousandth) only one is in
// flight besides the one being read, which keeps the bound near four
// first-size parts until parts are four times that size.
const partsInFlight = 3

// stream uploads first (already read and hashed) and then the rest of r as
// parts, hashing r as it is read. While parts are being sent, the next is
// read, so the socket and the object store work at the same time. Parts
// may finish in any order; m.parts ends up in part order. It returns how
// many bytes it read in all. After an error no part is still being sent.
func (m *multipart) stream(ctx context.Context, first []byte, r io.Reader, h io.Writer) (int64, error) {
	total := int64(len(first))
	type result struct {
		part Part
		size int64
		err  error
	}
	results := make(chan result, partsInFlight)
	budget := partsInFlight * m.s.cfg.PartSize
	var (
		inFlight      int
		inFlightBytes int64
		failed        error
		next          int32 = 1
	)
	wait := func() {
		res := <-results
		inFlight--
		inFlightBytes -= res.size
		switch {
		case res.err != nil && failed == nil:
			// The other parts in flight are let finish rather than
			// cancelled: a part the store is still writing when the
			// upload is aborted could outlive the abort.
			failed = res.err
		case res.err == nil:
			m.parts = append(m.parts, res.part)
		}
	}
	fail := func(err error) (int64, error) {
		for inFlight > 0 {
			wait()
		}
		if failed != nil {
			return total, failed
		}
		return total, err
	}
	send := func(b []byte, release func()) {
		// A part always goes if none is in flight; more only within the
		// budget.
		for inFlight > 0 && (inFlight >= partsInFlight || inFlightBytes+int64(len(b)) > budget) {
			wait()
		}
		if failed != nil {
			release()
			return
		}
		n := next
		next++
		inFlight++
		inFlightBytes += int64(len(b))
		go func() {
			defer release()
			p, err := m.uploadPart(ctx, n, b)
			results <- result{p, int64(len(b)), err}
		}()
	}
	send(first, func() {})
	for failed == nil {
		if next > 10000 {
			return fail(errors.New("blob too large: over 10,000 parts"))
		}
		bp := m.s.bufs.Get().(*[]byte)
		buf := (*bp)[:min(int64(cap(*bp)), m.s.partSize(next))]
		if int64(len(buf)) < m.s.partSize(next) {
			buf = make([]byte, m.s.partSize(next))
		}
		n, err := io.ReadFull(r, buf)
		h.Write(buf[:n])
		total += int64(n)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			m.s.bufs.Put(bp)
			return fail(fmt.Errorf("read blob: %w", err))
		}
		if n > 0 {
			send(buf[:n], func() { m.s.bufs.Put(bp) })
		} else {
			m.s.bufs.Put(bp)
		}
		if err != nil {
			break
		}
	}
	if _, err := fail(nil); err != nil {
		return total, err
	}
	slices.SortFunc(m.parts, func(a, b Part) int { return cmp.Compare(a.Number, b.Number) })
	return total, nil
}

func (m *multipart) uploadPart(ctx context.Context, n int32, b []byte) (Part, error) {
	out, err := m.s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &m.s.cfg.Bucket, Key: &m.key, UploadId: &m.id, PartNumber: aws.Int32(n),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}, unsignedPayload)
	if err != nil {
		return Part{}, fmt.Errorf("upload part %d: %w", n, err)
	}
	return Part{Number: n, ETag: aws.ToString(out.ETag), Size: int64(len(b))}, nil
}

func (m *multipart) complete(ctx context.Context) error {
	return m.s.completeMultipart(ctx, m.key, m.id, m.parts)
}

func (s *Store) completeMultipart(ctx context.Context, key, id string, parts []Part) error {
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.cfg.Bucket, Key: &key, UploadId: &id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	})
	if err != nil {
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	return nil
}

func (m *multipart) abort(ctx context.Context) {
	_, _ = m.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &m.s.cfg.Bucket, Key: &m.key, UploadId: &m.id})
}

// copyObject copies src to dst on the server: in one request up to 5 GiB,
// as a multipart copy above that.
func (s *Store) copyObject(ctx context.Context, src, dst string, size int64) error {
	s.copies.Add(1)
	source := s.cfg.Bucket + "/" + src
	const maxCopy = 5 << 30
	if size <= maxCopy {
		_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.cfg.Bucket, Key: &dst, CopySource: &source})
		if err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		return nil
	}
	mp, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &dst})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	m := &multipart{s: s, key: dst, id: aws.ToString(mp.UploadId)}
	const chunk = 1 << 30
	for off, n := int64(0), int32(1); off < size; off, n = off+chunk, n+1 {
		end := min(off+chunk, size) - 1
		out, err := s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &s.cfg.Bucket, Key: &dst, UploadId: &m.id, PartNumber: aws.Int32(n),
			CopySource: &source, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		})
		if err != nil {
			m.abort(context.WithoutCancel(ctx))
			return fmt.Errorf("copy %s to %s: part %d: %w", src, dst, n, err)
		}
		m.parts = append(m.parts, Part{Number: n, ETag: aws.ToString(out.CopyPartResult.ETag), Size: end - off + 1})
	}
	if err := m.complete(ctx); err != nil {
		m.abort(context.WithoutCancel(ctx))
		return err
	}
	return nil
}
