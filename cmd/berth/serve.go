package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/server"
)

func newServeCmd() *cobra.Command {
	var cfgFile string
	flagCfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry",
		Long: `Run the registry. With no configuration it listens on :5000 and keeps
everything under ./berth-data (blobs on the filesystem, metadata in SQLite).

Settings come from, lowest to highest: built-in defaults, the YAML file given
with --config (or BERTH_CONFIG), BERTH_* environment variables, and flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile == "" {
				cfgFile = os.Getenv("BERTH_CONFIG")
			}
			cfg, err := config.Load(cfgFile, os.Getenv)
			if err != nil {
				return err
			}
			applyFlags(cmd.Flags(), &cfg, flagCfg)
			log, err := newLogger(cfg)
			if err != nil {
				return err
			}
			srv, err := server.New(cmd.Context(), cfg, log, server.Secrets{OwnerPassword: os.Getenv("BERTH_OWNER_PASSWORD")})
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML configuration file (env BERTH_CONFIG)")
	f.StringVar(&flagCfg.Addr, "addr", flagCfg.Addr, "listen address (env BERTH_ADDR)")
	f.StringVar(&flagCfg.Data, "data", flagCfg.Data, "data directory (env BERTH_DATA)")
	f.StringVar(&flagCfg.Storage, "storage", "", "where blobs live: s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the AWS SDK's default chain); default the filesystem under --data (env BERTH_STORAGE)")
	f.StringVar(&flagCfg.EncryptionKey, "encryption-key", "", "encrypt blob content at rest with this key-encryption key: file:PATH (made with berth encryption init-key) or pkcs11:module=PATH;token=LABEL;label=KEY;pin-file=PATH; see docs/encryption.md (env BERTH_ENCRYPTION_KEY)")
	f.StringVar(&flagCfg.Database, "database", "", "where metadata lives: postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=MODE; default the embedded SQLite file under --data (env BERTH_DATABASE)")
	f.StringVar(&flagCfg.Name, "name", flagCfg.Name, "registry name: the admin user's name and the token service name (env BERTH_NAME)")
	f.StringVar(&flagCfg.PublicURL, "public-url", "", "URL clients use to reach the registry; default: derived from each request (env BERTH_PUBLIC_URL)")
	f.StringSliceVar(&flagCfg.TrustedProxies, "trusted-proxy", nil, "IP or CIDR of a proxy whose X-Forwarded-Proto/-Host headers are trusted; repeatable (env BERTH_TRUSTED_PROXIES, comma-separated)")
	f.StringVar(&flagCfg.TLSCert, "tls-cert", "", "TLS certificate file; enables HTTPS and HTTP/2 (env BERTH_TLS_CERT)")
	f.StringVar(&flagCfg.TLSKey, "tls-key", "", "TLS private key file (env BERTH_TLS_KEY)")
	f.StringVar(&flagCfg.LogFormat, "log-format", flagCfg.LogFormat, "log format: text or json (env BERTH_LOG_FORMAT)")
	f.StringVar(&flagCfg.LogLevel, "log-level", flagCfg.LogLevel, "log level: debug, info, warn or error (env BERTH_LOG_LEVEL)")
	f.DurationVar(&flagCfg.BodyIdleTimeout, "body-idle-timeout", flagCfg.BodyIdleTimeout, "drop a request whose body sends nothing, or whose client reads nothing of the response, for this long (env BERTH_BODY_IDLE_TIMEOUT)")
	f.IntVar(&flagCfg.MaxConnections, "max-connections", 0, "most client connections held at once; at the bound, idle and unauthenticated ones are closed first; 0 means derived from the open-file limit (env BERTH_MAX_CONNECTIONS)")
	f.DurationVar(&flagCfg.ShutdownTimeout, "shutdown-timeout", flagCfg.ShutdownTimeout, "how long shutdown waits for requests in flight (env BERTH_SHUTDOWN_TIMEOUT)")
	f.DurationVar(&flagCfg.UploadTTL, "upload-ttl", flagCfg.UploadTTL, "remove upload sessions untouched for this long (env BERTH_UPLOAD_TTL)")
	f.DurationVar(&flagCfg.UploadIdleTTL, "upload-idle-ttl", flagCfg.UploadIdleTTL, "remove upload sessions that received no bytes for this long (env BERTH_UPLOAD_IDLE_TTL)")
	f.IntVar(&flagCfg.MaxUploadsPerIdentity, "max-uploads-per-identity", flagCfg.MaxUploadsPerIdentity, "open upload sessions one user or token may have; more are refused with 429 (env BERTH_MAX_UPLOADS_PER_IDENTITY)")
	f.IntVar(&flagCfg.MaxUploadsPerRepository, "max-uploads-per-repository", flagCfg.MaxUploadsPerRepository, "open upload sessions one repository may have; more are refused with 429 (env BERTH_MAX_UPLOADS_PER_REPOSITORY)")
	f.BoolVar(&flagCfg.AnonymousPull, "anonymous-pull", false, "let callers without credentials pull every repository (env BERTH_ANONYMOUS_PULL)")
	f.StringVar(&flagCfg.OwnerUsername, "owner-username", flagCfg.OwnerUsername, "name of the owner user created on first start; its password comes from BERTH_OWNER_PASSWORD or is generated and printed once (env BERTH_OWNER_USERNAME)")
	f.DurationVar(&flagCfg.AccessTokenTTL, "access-token-ttl", flagCfg.AccessTokenTTL, "lifetime of access tokens, 1m to 5m (env BERTH_ACCESS_TOKEN_TTL)")
	f.DurationVar(&flagCfg.RefreshTokenTTL, "refresh-token-ttl", flagCfg.RefreshTokenTTL, "lifetime of refresh tokens (env BERTH_REFRESH_TOKEN_TTL)")
	f.IntVar(&flagCfg.LoginFailureThreshold, "login-failure-threshold", flagCfg.LoginFailureThreshold, "failed logins per username and client address (×10 per address) before that client's further attempts are delayed (1s, doubling, up to 5m) and answered 429 (env BERTH_LOGIN_FAILURE_THRESHOLD)")
	f.DurationVar(&flagCfg.GCInterval, "gc-interval", 0, "collect garbage (unreferenced blob links and content older than 1h) this often, e.g. 24h; 0 means only on request with `berth gc` (env BERTH_GC_INTERVAL)")
	f.Var(&flagCfg.ScrubRate, "scrub-rate", "bytes per second the background scrub reads to verify every blob against its digest, quarantining damaged ones, e.g. 16MiB; 0 turns it off (env BERTH_SCRUB_RATE)")
	f.StringVar(&flagCfg.AdminAddr, "admin-addr", "", "serve the management API, the portal and /metrics on this separate address (e.g. a private network's 10.0.0.5:5443) and not on --addr (env BERTH_ADMIN_ADDR)")
	f.StringVar(&flagCfg.DebugAddr, "debug-addr", "", "serve pprof profiles and metrics on this separate address, e.g. 127.0.0.1:6060 (env BERTH_DEBUG_ADDR)")
	f.DurationVar(&flagCfg.AuditRetention, "audit-retention", flagCfg.AuditRetention, "delete audit records older than this; 0 keeps them (env BERTH_AUDIT_RETENTION)")
	f.IntVar(&flagCfg.AuditMaxRecords, "audit-max-records", flagCfg.AuditMaxRecords, "keep at most this many audit records, deleting the oldest; 0 for no limit (env BERTH_AUDIT_MAX_RECORDS)")
	f.BoolVar(&flagCfg.FederationAllowHTTPLoopback, "federation-allow-http-loopback", false, "let federated credentials trust OIDC issuers on plain http at loopback addresses, for tests; otherwise issuers must be https (env BERTH_FEDERATION_ALLOW_HTTP_LOOPBACK)")
	f.StringVar(&flagCfg.FederationCAFile, "federation-ca-file", "", "PEM file of CAs that OIDC issuers' certificates may chain to, besides the system's (env BERTH_FEDERATION_CA_FILE)")
	f.DurationVar(&flagCfg.FederationMaxTokenLifetime, "federation-max-token-lifetime", flagCfg.FederationMaxTokenLifetime, "refuse workload OIDC tokens (JWTs) valid for longer than this, from iat to exp (env BERTH_FEDERATION_MAX_TOKEN_LIFETIME)")
	return cmd
}

// applyFlags copies the flags the user set onto cfg: flags win over the file
// and the environment, but an unset flag's default must not.
func applyFlags(fs *pflag.FlagSet, cfg *config.Config, f config.Config) {
	set := map[string]func(){
		"addr":                       func() { cfg.Addr = f.Addr },
		"data":                       func() { cfg.Data = f.Data },
		"storage":                    func() { cfg.Storage = f.Storage },
		"encryption-key":             func() { cfg.EncryptionKey = f.EncryptionKey },
		"database":                   func() { cfg.Database = f.Database },
		"name":                       func() { cfg.Name = f.Name },
		"public-url":                 func() { cfg.PublicURL = f.PublicURL },
		"trusted-proxy":              func() { cfg.TrustedProxies = f.TrustedProxies },
		"tls-cert":                   func() { cfg.TLSCert = f.TLSCert },
		"tls-key":                    func() { cfg.TLSKey = f.TLSKey },
		"log-format":                 func() { cfg.LogFormat = f.LogFormat },
		"log-level":                  func() { cfg.LogLevel = f.LogLevel },
		"body-idle-timeout":          func() { cfg.BodyIdleTimeout = f.BodyIdleTimeout },
		"max-connections":            func() { cfg.MaxConnections = f.MaxConnections },
		"shutdown-timeout":           func() { cfg.ShutdownTimeout = f.ShutdownTimeout },
		"upload-ttl":                 func() { cfg.UploadTTL = f.UploadTTL },
		"upload-idle-ttl":            func() { cfg.UploadIdleTTL = f.UploadIdleTTL },
		"max-uploads-per-identity":   func() { cfg.MaxUploadsPerIdentity = f.MaxUploadsPerIdentity },
		"max-uploads-per-repository": func() { cfg.MaxUploadsPerRepository = f.MaxUploadsPerRepository },
		"anonymous-pull":             func() { cfg.AnonymousPull = f.AnonymousPull },
		"owner-username":             func() { cfg.OwnerUsername = f.OwnerUsername },
		"access-token-ttl":           func() { cfg.AccessTokenTTL = f.AccessTokenTTL },
		"refresh-token-ttl":          func() { cfg.RefreshTokenTTL = f.RefreshTokenTTL },
		"login-failure-threshold":    func() { cfg.LoginFailureThreshold = f.LoginFailureThreshold },
		"debug-addr":                 func() { cfg.DebugAddr = f.DebugAddr },
		"admin-addr":                 func() { cfg.AdminAddr = f.AdminAddr },
		"gc-interval":                func() { cfg.GCInterval = f.GCInterval },
		"audit-retention":            func() { cfg.AuditRetention = f.AuditRetention },
		"audit-max-records":          func() { cfg.AuditMaxRecords = f.AuditMaxRecords },
		"scrub-rate":                 func() { cfg.ScrubRate = f.ScrubRate },

		"federation-allow-http-loopback": func() { cfg.FederationAllowHTTPLoopback = f.FederationAllowHTTPLoopback },
		"federation-ca-file":             func() { cfg.FederationCAFile = f.FederationCAFile },
		"federation-max-token-lifetime":  func() { cfg.FederationMaxTokenLifetime = f.FederationMaxTokenLifetime },
	}
	fs.Visit(func(fl *pflag.Flag) {
		if apply, ok := set[fl.Name]; ok {
			apply()
		}
	})
}

func newLogger(cfg config.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}
