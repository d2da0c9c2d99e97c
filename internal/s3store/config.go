// Package s3store holds berth's content store on S3-compatible object
// storage: blobs addressed by digest, and the multipart uploads that produce
// them.
//
// The store keeps no state of its own between calls. An upload session's
// state (the multipart upload's id, its parts, the running hash) is a value,
// UploadState, that the caller keeps in the metadata database, so that any
// node of a cluster can continue an upload another node started.
package s3store

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config says where the store's objects live.
type Config struct {
	Bucket string
	// Prefix is prepended to every key, without a leading slash; empty or
	// ending in "/".
	Prefix string
	// Endpoint is the S3 server's URL; empty means AWS's own.
	Endpoint string
	Region   string
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, which most S3-compatible servers need.
	PathStyle bool
	// PartSize is the size of the first parts of multipart uploads; later
	// ones grow so that 10,000 parts hold terabytes. A push buffers at
	// most four parts of this size, or two of the larger later ones (see
	// partsInFlight). At least 5 MiB
	// (S3's minimum).
	PartSize int64
	// MaxAttempts bounds the retries of one request on 5xx, throttling and
	// connection errors, with exponential backoff.
	MaxAttempts int
	// Redirect makes blob GETs answer with a redirect to a pre-signed URL
	// valid for RedirectTTL, instead of streaming through berth.
	Redirect    bool
	RedirectTTL time.Duration
}

const (
	minPartSize     = 5 << 20
	defaultPartSize = 16 << 20
)

// ParseURL reads a storage URL of the form
//
//	s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true
//
// with the optional parameters part-size (bytes, or with a KiB/MiB/GiB
// suffix), max-attempts, redirect=true and redirect-ttl (a Go duration).
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("storage URL: %w", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("storage URL %q: the scheme must be s3://", raw)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("storage URL: put credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL")
	}
	c := Config{
		Bucket:      u.Host,
		Prefix:      strings.Trim(u.Path, "/"),
		PartSize:    defaultPartSize,
		MaxAttempts: 5,
		RedirectTTL: 5 * time.Minute,
	}
	if c.Bucket == "" {
		return Config{}, fmt.Errorf("storage URL %q: no bucket (s3://BUCKET[/PREFIX]?...)", raw)
	}
	if c.Prefix != "" {
		c.Prefix += "/"
	}
	q := u.Query()
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return Config{}, fmt.Errorf("storage URL: endpoint %q must be an http:// or https:// URL", v)
			}
			c.Endpoint = strings.TrimRight(v, "/")
		case "region":
			c.Region = v
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("storage URL: path-style=%q must be true or false", v)
			}
			c.PathStyle = b
		case "part-size":
			n, err := parseSize(v)
			if err != nil || n < minPartSize || n > 5<<30 {
				return Config{}, fmt.Errorf("storage URL: part-size=%q must be between 5MiB and 5GiB", v)
			}
			c.PartSize = n
		case "max-attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 20 {
				return Config{}, fmt.Errorf("storage URL: max-attempts=%q must be between 1 and 20", v)
			}
			c.MaxAttempts = n
		case "redirect":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("storage URL: redirect=%q must be true or false", v)
			}
			c.Redirect = b
		case "redirect-ttl":
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second || d > 7*24*time.Hour {
				return Config{}, fmt.Errorf("storage URL: redirect-ttl=%q must be a duration between 1s and 168h", v)
			}
			c.RedirectTTL = d
		default:
			return Config{}, fmt.Errorf("storage URL: unknown parameter %q (known: endpoint, region, path-style, part-size, max-attempts, redirect, redirect-ttl)", k)
		}
	}
	return c, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

// String is the URL form of c, without secrets (it never holds any).
func (c Config) String() string {
	s := "s3://" + c.Bucket
	if c.Prefix != "" {
		s += "/" + strings.TrimSuffix(c.Prefix, "/")
	}
	q := url.Values{}
	if c.Endpoint != "" {
		q.Set("endpoint", c.Endpoint)
	}
	if c.Region != "" {
		q.Set("region", c.Region)
	}
	if c.PathStyle {
		q.Set("path-style", "true")
	}
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}
