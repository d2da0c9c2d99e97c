package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berth.yaml")
	os.WriteFile(file, []byte("addr: \":6000\"\ndata: /from/file\nname: file-name\nbodyIdleTimeout: 2m\ntrustedProxies: [\"10.0.0.0/8\"]\nuploadIdleTTL: 90s\nmaxUploadsPerIdentity: 50\nmaxUploadsPerRepository: 60\n"), 0o600)
	env := map[string]string{"BERTH_DATA": "/from/env", "BERTH_ANONYMOUS_PULL": "true", "BERTH_MAX_CONNECTIONS": "300", "BERTH_TRUSTED_PROXIES": "192.0.2.1, 198.51.100.0/24",
		"BERTH_MAX_UPLOADS_PER_REPOSITORY": "70", "BERTH_STORAGE": "s3://env-bucket",
		"BERTH_DATABASE": "postgres://berth@db.example/berth?sslmode=verify-full"}
	c, err := Load(file, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"file beats default", c.Addr, ":6000"},
		{"env beats file", c.Data, "/from/env"},
		{"file value kept", c.Name, "file-name"},
		{"duration from file", c.BodyIdleTimeout, 2 * time.Minute},
		{"bool from env", c.AnonymousPull, true},
		{"int from env", c.MaxConnections, 300},
		{"list from env", strings.Join(c.TrustedProxies, " "), "192.0.2.1 198.51.100.0/24"},
		{"default kept", c.LogFormat, "text"},
		{"upload idle TTL from file", c.UploadIdleTTL, 90 * time.Second},
		{"upload cap from file", c.MaxUploadsPerIdentity, 50},
		{"upload cap from env", c.MaxUploadsPerRepository, 70},
		{"storage from env", c.Storage, "s3://env-bucket"},
		{"database from env", c.Database, "postgres://berth@db.example/berth?sslmode=verify-full"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("adr: \":1\"\n"), 0o600)
	if _, err := Load(unknown, func(string) string { return "" }); err == nil {
		t.Error("a misspelt key was accepted")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), func(string) string { return "" }); err == nil {
		t.Error("a missing file was accepted")
	}
	if _, err := Load("", func(k string) string {
		if k == "BERTH_UPLOAD_TTL" {
			return "soon"
		}
		return ""
	}); err == nil {
		t.Error("a bad duration in the environment was accepted")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"cert without key", func(c *Config) { c.TLSCert = "x" }, false},
		{"bad log format", func(c *Config) { c.LogFormat = "xml" }, false},
		{"public URL without scheme", func(c *Config) { c.PublicURL = "registry.example" }, false},
		{"access token TTL too long", func(c *Config) { c.AccessTokenTTL = time.Hour }, false},
		// The token signer refuses a refresh-token lifetime that is not
		// longer than the access tokens': so must the configuration.
		{"refresh token TTL equal to the access token TTL", func(c *Config) { c.AccessTokenTTL, c.RefreshTokenTTL = time.Minute, time.Minute }, false},
		{"shortest refresh token TTL", func(c *Config) { c.AccessTokenTTL, c.RefreshTokenTTL = time.Minute, 61*time.Second }, true},
		{"zero login threshold", func(c *Config) { c.LoginFailureThreshold = 0 }, false},
		{"empty data dir", func(c *Config) { c.Data = "" }, false},
		{"upload TTL shorter than the idle TTL", func(c *Config) { c.UploadTTL = time.Minute }, true},
		{"zero upload idle TTL", func(c *Config) { c.UploadIdleTTL = 0 }, false},
		{"zero upload TTL", func(c *Config) { c.UploadTTL = 0 }, false},
		{"zero upload cap per identity", func(c *Config) { c.MaxUploadsPerIdentity = 0 }, false},
		{"zero upload cap per repository", func(c *Config) { c.MaxUploadsPerRepository = 0 }, false},
		{"S3 storage", func(c *Config) { c.Storage = "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&path-style=true" }, true},
		{"storage that is not s3://", func(c *Config) { c.Storage = "/var/lib/berth" }, false},
		{"S3 storage with keys in the URL", func(c *Config) { c.Storage = "s3://key:secret@bucket" }, false},
		{"PostgreSQL database", func(c *Config) { c.Database = "postgres://berth:pw@db:5432/berth?sslmode=require" }, true},
		{"postgresql:// database", func(c *Config) { c.Database = "postgresql://db/berth" }, true},
		{"database that is not postgres://", func(c *Config) { c.Database = "/var/lib/berth/berth.db" }, false},
	}
	for _, tt := range tests {
		c := Default()
		tt.change(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// The audit log's retention has a default and comes from the file, the
// environment or (see cmd/berth) a flag.
func TestAuditRetention(t *testing.T) {
	if d := Default(); d.AuditRetention != 90*24*time.Hour || d.AuditMaxRecords != 1_000_000 {
		t.Errorf("default audit retention %s, %d records", d.AuditRetention, d.AuditMaxRecords)
	}
	file := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(file, []byte("auditRetention: 720h\nauditMaxRecords: 10\n"), 0o600)
	c, err := Load(file, func(k string) string { return map[string]string{"BERTH_AUDIT_MAX_RECORDS": "5000"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.AuditRetention != 720*time.Hour || c.AuditMaxRecords != 5000 {
		t.Errorf("audit retention %s, %d records, want 720h from the file and 5000 from the environment", c.AuditRetention, c.AuditMaxRecords)
	}
	for _, tt := range []struct {
		retention time.Duration
		records   int
		ok        bool
	}{
		{0, 0, true},
		{time.Hour, 1, true},
		{time.Minute, 0, false},
		{-time.Hour, 0, false},
		{0, -1, false},
	} {
		c := Default()
		c.AuditRetention, c.AuditMaxRecords = tt.retention, tt.records
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("retention %s, %d records: %v", tt.retention, tt.records, err)
		}
	}
}

// TestDatabaseErrorHidesPassword: a database setting that cannot work is
// named without its password.
func TestDatabaseErrorHidesPassword(t *testing.T) {
	c := Default()
	c.Database = "mysql://berth:s3cret@db/berth"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("Validate = %v; want a refusal that names postgres:// and hides the password", err)
	}
}

func TestDatabaseFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.yaml")
	os.WriteFile(file, []byte("database: postgres://berth@db/berth\n"), 0o600)
	c, err := Load(file, func(string) string { return "" })
	if err != nil || c.Database != "postgres://berth@db/berth" {
		t.Errorf("database from file = %q, %v", c.Database, err)
	}
}
