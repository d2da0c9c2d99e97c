package main

import (
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// A flag given on the command line beats the environment and the file; a
// flag left at its default beats nothing.
func TestServeFlagsOverrideOnlyWhenSet(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.ParseFlags([]string{"--addr", "127.0.0.1:7000", "--anonymous-pull"}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data, cfg.Name = "/from/env", "env-name"
	flags := config.Default()
	flags.Addr, flags.AnonymousPull = "127.0.0.1:7000", true
	applyFlags(cmd.Flags(), &cfg, flags)
	if cfg.Addr != "127.0.0.1:7000" || !cfg.AnonymousPull {
		t.Errorf("set flags not applied: %+v", cfg)
	}
	if cfg.Data != "/from/env" || cfg.Name != "env-name" {
		t.Errorf("unset flags overrode the environment: data %q, name %q", cfg.Data, cfg.Name)
	}
}

// The upload session settings have flags that reach the configuration.
func TestServeUploadFlags(t *testing.T) {
	cmd := newServeCmd()
	args := []string{"--upload-idle-ttl", "45s", "--max-uploads-per-identity", "7", "--max-uploads-per-repository", "9"}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"upload-idle-ttl": "45s", "max-uploads-per-identity": "7", "max-uploads-per-repository": "9"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s, want %s", name, got, want)
		}
	}
	cfg := config.Default()
	flags := config.Default()
	flags.UploadIdleTTL, flags.MaxUploadsPerIdentity, flags.MaxUploadsPerRepository = 45*time.Second, 7, 9
	applyFlags(cmd.Flags(), &cfg, flags)
	if cfg.UploadIdleTTL != 45*time.Second || cfg.MaxUploadsPerIdentity != 7 || cfg.MaxUploadsPerRepository != 9 {
		t.Errorf("upload flags not applied: idle %s, caps %d and %d", cfg.UploadIdleTTL, cfg.MaxUploadsPerIdentity, cfg.MaxUploadsPerRepository)
	}
}
