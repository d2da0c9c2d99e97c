package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := GeneratePassword()
		if len(p) < 43 {
			t.Fatalf("password %q is %d characters", p, len(p))
		}
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || len(b) < 32 {
			t.Fatalf("password %q does not carry 32 bytes: %v", p, err)
		}
		if seen[p] {
			t.Fatalf("password %q generated twice", p)
		}
		seen[p] = true
	}
}

func TestSecretHash(t *testing.T) {
	pw := GeneratePassword()
	h := HashSecret(pw)
	if !strings.HasPrefix(h, "hmac-sha256$") || strings.Count(h, "$") != 2 {
		t.Fatalf("hash %q has the wrong format", h)
	}
	if strings.Contains(h, pw) {
		t.Fatal("hash contains the password")
	}
	if h2 := HashSecret(pw); h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if !VerifySecret(h, pw) {
		t.Error("VerifySecret rejects the right password")
	}
	salt, sum, _ := strings.Cut(strings.TrimPrefix(h, "hmac-sha256$"), "$")
	for _, tt := range []struct{ name, hash, pw string }{
		{"wrong password", h, pw + "x"},
		{"prefix of password", h, pw[:len(pw)-1]},
		{"empty password", h, ""},
		{"empty hash", "", pw},
		{"empty hash and password", "", ""},
		{"other scheme", "sha256$" + salt + "$" + sum, pw},
		{"missing sum", "hmac-sha256$" + salt, pw},
		{"padded salt", "hmac-sha256$" + salt + "==$" + sum, pw},
		{"short sum", "hmac-sha256$" + salt + "$" + sum[:20], pw},
		{"bad base64", "hmac-sha256$" + salt + "$" + sum[:len(sum)-1] + "!", pw},
		{"extra field", h + "$x", pw},
		{"argon2 hash", HashUserPasswordWith(pw, cheapArgon2), pw},
	} {
		if VerifySecret(tt.hash, tt.pw) {
			t.Errorf("%s: VerifySecret accepted", tt.name)
		}
	}
	if _, _, ok := parseSecretHash(dummySecretHash); !ok {
		t.Error("dummySecretHash does not parse, so empty slots would be faster than set ones")
	}
}

func TestMatchSecret(t *testing.T) {
	p1, p2 := GeneratePassword(), GeneratePassword()
	h1, h2 := HashSecret(p1), HashSecret(p2)
	tests := []struct {
		name   string
		pw     string
		hashes []string
		slot   int
		ok     bool
	}{
		{"password1", p1, []string{h1, h2}, 0, true},
		{"password2", p2, []string{h1, h2}, 1, true},
		{"wrong", "nope", []string{h1, h2}, -1, false},
		{"password1 deleted", p1, []string{"", h2}, -1, false},
		{"password2 after password1 deleted", p2, []string{"", h2}, 1, true},
		{"both deleted", p1, []string{"", ""}, -1, false},
		{"unknown user", p1, nil, -1, false},
		{"same password in both slots", p1, []string{h1, HashSecret(p1)}, 0, true},
		{"malformed slot", p1, []string{"garbage", h1}, 1, true},
		{"empty password never matches an empty slot", "", []string{"", ""}, -1, false},
	}
	for _, tt := range tests {
		slot, ok := MatchSecret(tt.pw, tt.hashes...)
		if slot != tt.slot || ok != tt.ok {
			t.Errorf("%s: MatchSecret = %d, %v; want %d, %v", tt.name, slot, ok, tt.slot, tt.ok)
		}
	}
}

// cheapArgon2 keeps tests fast; the defaults are exercised once below.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1}

func TestUserPassword(t *testing.T) {
	h := HashUserPasswordWith("correct horse battery staple", cheapArgon2)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	if !VerifyUserPassword(h, "correct horse battery staple") {
		t.Error("right password rejected")
	}
	if !NeedsRehash(h) {
		t.Error("NeedsRehash is false for non-default parameters")
	}
	f := strings.Split(h, "$")
	for _, tt := range []struct{ name, hash, pw string }{
		{"wrong password", h, "correct horse battery stapl"},
		{"empty password", h, ""},
		{"empty hash", "", ""},
		{"argon2i", strings.Replace(h, "argon2id", "argon2i", 1), "correct horse battery staple"},
		{"other version", strings.Replace(h, "v=19", "v=16", 1), "correct horse battery staple"},
		{"changed params", strings.Replace(h, "t=1", "t=2", 1), "correct horse battery staple"},
		{"huge memory", strings.Replace(h, "m=64", "m=4194304", 1), "x"},
		{"huge time", strings.Replace(h, "t=1", "t=1000000", 1), "x"},
		{"zero threads", strings.Replace(h, "p=1", "p=0", 1), "x"},
		{"reordered params", strings.Replace(h, "m=64,t=1", "t=1,m=64", 1), "x"},
		{"negative", strings.Replace(h, "m=64", "m=-64", 1), "x"},
		{"no salt", strings.Join([]string{"", f[1], f[2], f[3], "", f[5]}, "$"), "x"},
		{"short salt", strings.Join([]string{"", f[1], f[2], f[3], "AAAA", f[5]}, "$"), "x"},
		{"too few fields", strings.Join(f[:5], "$"), "x"},
		{"hmac hash", HashSecret("x"), "x"},
	} {
		if VerifyUserPassword(tt.hash, tt.pw) {
			t.Errorf("%s: VerifyUserPassword accepted", tt.name)
		}
	}
}

func TestUserPasswordDefaults(t *testing.T) {
	h := HashUserPassword("hunter2hunter2")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=4,p=1$") {
		t.Errorf("default hash %q", h)
	}
	if !VerifyUserPassword(h, "hunter2hunter2") || VerifyUserPassword(h, "hunter2hunter3") {
		t.Error("default-parameter round trip failed")
	}
	if NeedsRehash(h) {
		t.Error("NeedsRehash is true for default parameters")
	}
}
