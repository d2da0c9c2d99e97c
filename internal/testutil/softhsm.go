package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSM is a PKCS#11 token of SoftHSMv2 for one test.
type SoftHSM struct {
	Module string // the PKCS#11 library
	Token  string // the token's label
	PIN    string // the user PIN
	Dir    string // where the token's files are
}

// StartSoftHSM initialises a token of its own for this test (SOFTHSM2_CONF
// points at a configuration naming a token directory under the test's
// temporary directory, for this process and the ones it starts).
func StartSoftHSM(t *testing.T) *SoftHSM {
	t.Helper()
	util := LookTool(t, "softhsm2-util")
	var module string
	for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(p); err == nil {
			module = p
			break
		}
	}
	if module == "" {
		t.Fatal("softhsm2-util is installed but libsofthsm2.so is not where Debian puts it")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	h := &SoftHSM{Module: module, Token: "berth", PIN: randomHex(t, 8), Dir: tokens}
	cmd := exec.Command(util, "--init-token", "--free", "--label", h.Token, "--pin", h.PIN, "--so-pin", randomHex(t, 8))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return h
}
