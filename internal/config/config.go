// Package config holds berth's configuration and where each value comes from:
// built-in defaults, then a YAML file, then BERTH_* environment variables,
// then command-line flags (applied by the caller).
package config

import (
	"encoding"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/berth-registry/berth/internal/s3store"
	"github.com/berth-registry/berth/internal/sqldb"
)

// Config is everything `berth serve` can be told.
type Config struct {
	// Addr is the listen address.
	Addr string `yaml:"addr" env:"BERTH_ADDR"`
	// Data is the data directory (blobs, uploads, embedded database).
	Data string `yaml:"data" env:"BERTH_DATA"`
	// Storage is where blobs live: empty for the filesystem under Data,
	// or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true with
	// credentials from the AWS SDK's default chain (never in the URL).
	Storage string `yaml:"storage" env:"BERTH_STORAGE"`
	// EncryptionKey turns on encryption at rest of blob content with the
	// key-encryption key it names: file:PATH or pkcs11:module=...;token=...
	// (see docs/encryption.md). Empty: content is stored as it is.
	EncryptionKey string `yaml:"encryptionKey" env:"BERTH_ENCRYPTION_KEY"`
	// Database is where metadata lives: empty for the embedded SQLite file
	// under Data, or postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=MODE.
	Database string `yaml:"database" env:"BERTH_DATABASE"`
	// Name is the registry's name: the admin user's name and the token service name.
	Name string `yaml:"name" env:"BERTH_NAME"`
	// PublicURL is the URL clients use (challenges, Location headers, login
	// commands). Empty means: derived from each request.
	PublicURL string `yaml:"publicURL" env:"BERTH_PUBLIC_URL"`
	// TrustedProxies are addresses or CIDRs whose X-Forwarded-Proto/-Host are believed.
	TrustedProxies []string `yaml:"trustedProxies" env:"BERTH_TRUSTED_PROXIES"`
	// TLSCert and TLSKey enable HTTPS (and HTTP/2).
	TLSCert string `yaml:"tlsCert" env:"BERTH_TLS_CERT"`
	TLSKey  string `yaml:"tlsKey" env:"BERTH_TLS_KEY"`
	// LogFormat is "text" or "json"; LogLevel is debug, info, warn or error.
	LogFormat string `yaml:"logFormat" env:"BERTH_LOG_FORMAT"`
	LogLevel  string `yaml:"logLevel" env:"BERTH_LOG_LEVEL"`
	// BodyIdleTimeout is how long a request body, or the client's reading
	// of a response, may stall before the connection is dropped; a slow
	// upload or download that keeps moving is never cut.
	BodyIdleTimeout time.Duration `yaml:"bodyIdleTimeout" env:"BERTH_BODY_IDLE_TIMEOUT"`
	// MaxConnections bounds the client connections held at once (0: derived
	// from the process's open-file limit).
	MaxConnections int `yaml:"maxConnections" env:"BERTH_MAX_CONNECTIONS"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout" env:"BERTH_SHUTDOWN_TIMEOUT"`
	// UploadTTL is how long an untouched upload session is kept.
	UploadTTL time.Duration `yaml:"uploadTTL" env:"BERTH_UPLOAD_TTL"`
	// UploadIdleTTL is how long a session that received no bytes is kept.
	UploadIdleTTL time.Duration `yaml:"uploadIdleTTL" env:"BERTH_UPLOAD_IDLE_TTL"`
	// MaxUploadsPerIdentity and MaxUploadsPerRepository cap open upload
	// sessions; a new one beyond either is refused with 429.
	MaxUploadsPerIdentity   int `yaml:"maxUploadsPerIdentity" env:"BERTH_MAX_UPLOADS_PER_IDENTITY"`
	MaxUploadsPerRepository int `yaml:"maxUploadsPerRepository" env:"BERTH_MAX_UPLOADS_PER_REPOSITORY"`
	// AnonymousPull lets callers without credentials pull every repository.
	AnonymousPull bool `yaml:"anonymousPull" env:"BERTH_ANONYMOUS_PULL"`
	// OwnerUsername names the owner user created on first start. Its
	// password comes from BERTH_OWNER_PASSWORD only (never the file).
	OwnerUsername string `yaml:"ownerUsername" env:"BERTH_OWNER_USERNAME"`
	// AccessTokenTTL and RefreshTokenTTL are the lifetimes of issued tokens.
	AccessTokenTTL  time.Duration `yaml:"accessTokenTTL" env:"BERTH_ACCESS_TOKEN_TTL"`
	RefreshTokenTTL time.Duration `yaml:"refreshTokenTTL" env:"BERTH_REFRESH_TOKEN_TTL"`
	// LoginFailureThreshold is how many failed logins a username may have
	// from one client address before that client's further attempts are
	// delayed (see auth.Limiter for the per-address and per-username rules).
	LoginFailureThreshold int `yaml:"loginFailureThreshold" env:"BERTH_LOGIN_FAILURE_THRESHOLD"`
	// GCInterval, when set, collects garbage that often (0: only on request).
	GCInterval time.Duration `yaml:"gcInterval" env:"BERTH_GC_INTERVAL"`
	// ScrubRate is how many bytes per second the background scrub reads
	// to verify blobs against their digests (0: no scrub).
	ScrubRate ByteSize `yaml:"scrubRate" env:"BERTH_SCRUB_RATE"`
	// DebugAddr, when set, serves pprof and metrics on a separate listener.
	DebugAddr string `yaml:"debugAddr" env:"BERTH_DEBUG_ADDR"`
	// AdminAddr, when set, serves the management API, the portal and the
	// metrics on a listener of their own, and no longer on Addr.
	AdminAddr string `yaml:"adminAddr" env:"BERTH_ADMIN_ADDR"`
	// AuditRetention and AuditMaxRecords bound the audit log: records
	// older than AuditRetention, and the oldest beyond AuditMaxRecords,
	// are deleted hourly (0: no limit).
	AuditRetention  time.Duration `yaml:"auditRetention" env:"BERTH_AUDIT_RETENTION"`
	AuditMaxRecords int           `yaml:"auditMaxRecords" env:"BERTH_AUDIT_MAX_RECORDS"`
	// FederationAllowHTTPLoopback lets federated credentials trust OIDC
	// issuers served over plain http on loopback addresses (tests only);
	// FederationCAFile adds CAs for issuers' certificates;
	// FederationMaxTokenLifetime is the longest lifetime a workload's JWT
	// may have.
	FederationAllowHTTPLoopback bool          `yaml:"federationAllowHTTPLoopback" env:"BERTH_FEDERATION_ALLOW_HTTP_LOOPBACK"`
	FederationCAFile            string        `yaml:"federationCAFile" env:"BERTH_FEDERATION_CA_FILE"`
	FederationMaxTokenLifetime  time.Duration `yaml:"federationMaxTokenLifetime" env:"BERTH_FEDERATION_MAX_TOKEN_LIFETIME"`
}

// DefaultScrubRate re-reads about 340 GB a day: enough to find damage in
// most stores within days, little enough not to be felt beside pulls.
const DefaultScrubRate = 4 << 20

// Default returns the configuration used when nothing is configured.
func Default() Config {
	return Config{
		Addr:            ":5000",
		Data:            "./berth-data",
		Name:            "berth",
		LogFormat:       "text",
		LogLevel:        "info",
		BodyIdleTimeout: time.Minute,
		ShutdownTimeout: 30 * time.Second,
		UploadTTL:       24 * time.Hour,
		UploadIdleTTL:   5 * time.Minute,
		OwnerUsername:   "owner",
		AccessTokenTTL:  5 * time.Minute,
		RefreshTokenTTL: 8 * time.Hour,

		LoginFailureThreshold: 5,
		// A multi-platform push opens a session per layer it uploads at
		// once (a handful per platform); these leave room for many such
		// pushes in parallel under one token.
		MaxUploadsPerIdentity:   1000,
		MaxUploadsPerRepository: 2000,
		ScrubRate:               DefaultScrubRate,
		// About a quarter to half a gigabyte of records at most.
		AuditRetention:  90 * 24 * time.Hour,
		AuditMaxRecords: 1_000_000,

		FederationMaxTokenLifetime: 24 * time.Hour,
	}
}

// Load returns the defaults overlaid with the YAML file at path (if path is
// not empty) and then the environment (looked up with getenv).
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && err.Error() != "EOF" {
			return c, fmt.Errorf("parse config file %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, getenv); err != nil {
		return c, err
	}
	return c, nil
}

func applyEnv(c *Config, getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("env")
		s := getenv(name)
		if name == "" || s == "" {
			continue
		}
		f := v.Field(i)
		if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(s)); err != nil {
				return fmt.Errorf("%s=%q: %w", name, s, err)
			}
			continue
		}
		switch f.Interface().(type) {
		case string:
			f.SetString(s)
		case []string:
			f.Set(reflect.ValueOf(splitList(s)))
		case time.Duration:
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, s, err)
			}
			f.SetInt(int64(d))
		case bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, s, err)
			}
			f.SetBool(b)
		case int:
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, s, err)
			}
			f.SetInt(int64(n))
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("set both --tls-cert and --tls-key, or neither")
	}
	if c.Storage != "" {
		if _, err := s3store.ParseURL(c.Storage); err != nil {
			return err
		}
	}
	if k := c.EncryptionKey; k != "" && !strings.HasPrefix(k, "file:") && !strings.HasPrefix(k, "pkcs11:") {
		return fmt.Errorf("encryption key: want file:PATH or pkcs11:module=PATH;token=LABEL;label=KEY (see docs/encryption.md)")
	}
	if c.Database != "" && !sqldb.IsPostgresURL(c.Database) {
		return fmt.Errorf("database %q: use a postgres:// URL, or leave it unset for the embedded SQLite file under the data directory", sqldb.Redact(c.Database))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q: use text or json", c.LogFormat)
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("public URL %q must start with http:// or https://", c.PublicURL)
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 5*time.Minute {
		return fmt.Errorf("access token lifetime %s: use between 1m and 5m", c.AccessTokenTTL)
	}
	if c.RefreshTokenTTL <= c.AccessTokenTTL || c.RefreshTokenTTL > 30*24*time.Hour {
		return fmt.Errorf("refresh token lifetime %s: use longer than the access token lifetime (%s) and at most 720h", c.RefreshTokenTTL, c.AccessTokenTTL)
	}
	if c.LoginFailureThreshold < 1 {
		return fmt.Errorf("login failure threshold %d: use 1 or more", c.LoginFailureThreshold)
	}
	if c.UploadIdleTTL < time.Second || c.UploadTTL < time.Second {
		return fmt.Errorf("upload TTL %s, idle TTL %s: use at least 1s", c.UploadTTL, c.UploadIdleTTL)
	}
	if c.MaxUploadsPerIdentity < 1 || c.MaxUploadsPerRepository < 1 {
		return fmt.Errorf("upload session caps %d per identity, %d per repository: use 1 or more", c.MaxUploadsPerIdentity, c.MaxUploadsPerRepository)
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("max connections %d: use 1 or more, or 0 for the default", c.MaxConnections)
	}
	if c.Data == "" {
		return fmt.Errorf("the data directory must not be empty")
	}
	if c.ScrubRate < 0 {
		return fmt.Errorf("scrub rate %d: use 0 (off) or more bytes per second", c.ScrubRate)
	}
	if c.AuditRetention < 0 || (c.AuditRetention > 0 && c.AuditRetention < time.Hour) {
		return fmt.Errorf("audit retention %s: use at least 1h, or 0 to keep records of any age", c.AuditRetention)
	}
	if c.AuditMaxRecords < 0 {
		return fmt.Errorf("audit max records %d: use 1 or more, or 0 for no limit", c.AuditMaxRecords)
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			return fmt.Errorf("admin address %q: use host:port, e.g. 10.0.0.5:5443 or 127.0.0.1:5443", c.AdminAddr)
		}
		if c.AdminAddr == c.Addr {
			return fmt.Errorf("admin address %q is the registry's address: give the management API a listener of its own, or leave --admin-addr unset", c.AdminAddr)
		}
	}
	return nil
}
