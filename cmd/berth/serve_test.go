package main

import (
	"testing"

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
