package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordBytes is the entropy of a generated password. 256 bits make
// guessing hopeless, which is what lets generated passwords be stored with a
// fast hash (see HashSecret).
const PasswordBytes = 32

// GeneratePassword returns a new random password for a token or the admin
// user: 32 bytes from crypto/rand in unpadded base64url, 43 characters that
// survive a shell, a URL and a Basic-auth header unescaped.
func GeneratePassword() string {
	b := make([]byte, PasswordBytes)
	// crypto/rand.Read never returns an error; it aborts the program if the
	// system's randomness fails, which is the only safe thing to do.
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// b64 is the encoding of salts and sums inside stored hashes: standard
// alphabet without padding, as the PHC string format uses.
var b64 = base64.RawStdEncoding.Strict()

const (
	secretScheme  = "hmac-sha256"
	secretSaltLen = 16
)

// HashSecret hashes a generated password (a token's or the admin user's) for
// storage, as "hmac-sha256$<salt>$<sum>": HMAC-SHA256 keyed with a random
// 16-byte salt. A slow hash (argon2, bcrypt) protects guessable passwords;
// these have 256 random bits, so a fast hash is as safe and keeps Basic
// authentication on /v2/ at microseconds per request. The salt makes equal
// passwords hash differently and rules out precomputation.
func HashSecret(password string) string {
	salt := make([]byte, secretSaltLen)
	rand.Read(salt)
	return secretScheme + "$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(secretSum(salt, password))
}

func secretSum(salt []byte, password string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(password))
	return m.Sum(nil)
}

// VerifySecret reports whether password matches a hash made by HashSecret,
// comparing the sums in constant time. A malformed hash never matches.
func VerifySecret(hash, password string) bool {
	salt, sum, ok := parseSecretHash(hash)
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare(secretSum(salt, password), sum) == 1
}

func parseSecretHash(hash string) (salt, sum []byte, ok bool) {
	rest, ok := strings.CutPrefix(hash, secretScheme+"$")
	if !ok {
		return nil, nil, false
	}
	s, m, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, nil, false
	}
	salt, err1 := b64.DecodeString(s)
	sum, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || len(salt) != secretSaltLen || len(sum) != sha256.Size {
		return nil, nil, false
	}
	return salt, sum, true
}

// dummySecretHash is hashed against when a slot is empty so that an empty
// slot takes as long as a set one. Its value is irrelevant: nothing
// matches it because its sum is not the HMAC of anything we know.
const dummySecretHash = "hmac-sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// MatchSecret checks a presented password against the stored hashes of a
// credential's password slots (a token's password1 and password2, or the
// admin user's two passwords) and returns the index of the slot that
// matched, or ok false. It always hashes against every slot, empty ones
// ("" meaning deleted or never set) included, and combines the results
// without branching, so the time taken says neither which slot matched nor
// which slots are set. Call it with two empty hashes for an unknown
// username, so that unknown names take as long as known ones.
//
// The hashes are HashSecret hashes; expiry is the caller's business, but it
// should pass "" for an expired slot rather than skip the call.
func MatchSecret(password string, hashes ...string) (slot int, ok bool) {
	match := 0
	slot = -1
	for i, h := range hashes {
		salt, sum, valid := parseSecretHash(h)
		if !valid {
			salt, sum, _ = parseSecretHash(dummySecretHash)
		}
		eq := subtle.ConstantTimeCompare(secretSum(salt, password), sum)
		eq &= subtle.ConstantTimeEq(boolInt(valid), 1)
		// Keep the first matching slot, without a data-dependent branch.
		first := eq & (1 ^ match)
		slot = subtle.ConstantTimeSelect(first, i, slot)
		match |= eq
	}
	return slot, match == 1
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// Argon2Params are the cost parameters of HashUserPassword.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultArgon2Params cost about 45 ms and 19 MiB per hash on one core of a
// small 2-core server: slow enough to make offline guessing expensive,
// cheap enough that logins (which happen once per session; requests then
// use access tokens) do not load the machine, and small enough in memory
// that a burst of logins cannot exhaust it. They are OWASP's m=19 MiB
// argon2id setting with the time cost raised from 2 to 4 to reach the
// ~50 ms target; spending time rather than memory keeps the peak memory of
// concurrent logins bounded.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Memory: 19 * 1024, Time: 4, Threads: 1}
}

// Bounds on parameters read from a stored hash, so that a corrupted or
// planted hash cannot make a login allocate gigabytes or spin for minutes.
const (
	maxArgon2Memory  = 1 << 20 // 1 GiB in KiB
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	argon2SaltLen    = 16
	argon2KeyLen     = 32
)

// HashUserPassword hashes a password that a person chose, with argon2id and
// DefaultArgon2Params, in the PHC string format
// "$argon2id$v=19$m=19456,t=4,p=1$<salt>$<hash>". Human passwords are
// guessable, so they get a slow, memory-hard hash.
func HashUserPassword(password string) string {
	return HashUserPasswordWith(password, DefaultArgon2Params())
}

// HashUserPasswordWith is HashUserPassword with explicit parameters; tests
// use cheap ones.
func HashUserPasswordWith(password string, p Argon2Params) string {
	salt := make([]byte, argon2SaltLen)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, argon2KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// VerifyUserPassword reports whether password matches a HashUserPassword
// hash, using the parameters stored in the hash (so raising the defaults
// does not break existing passwords) and a constant-time comparison. A
// malformed hash, or one with parameters outside sane bounds, never
// matches.
func VerifyUserPassword(hash, password string) bool {
	p, salt, sum, ok := parseArgon2Hash(hash)
	if !ok {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(sum)))
	return subtle.ConstantTimeCompare(got, sum) == 1
}

// NeedsRehash reports whether a user password hash was made with other
// parameters than DefaultArgon2Params, so the service can re-hash it with
// the password it just verified.
func NeedsRehash(hash string) bool {
	p, _, _, ok := parseArgon2Hash(hash)
	return !ok || p != DefaultArgon2Params()
}

func parseArgon2Hash(hash string) (p Argon2Params, salt, sum []byte, ok bool) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, sum
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, false
	}
	var m, t, th uint64
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return p, nil, nil, false
	}
	for i, dst := range []*uint64{&m, &t, &th} {
		k, v, found := strings.Cut(params[i], "=")
		if !found || k != "mtp"[i:i+1] {
			return p, nil, nil, false
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, false
		}
		*dst = n
	}
	if m == 0 || m > maxArgon2Memory || t == 0 || t > maxArgon2Time || th == 0 || th > maxArgon2Threads || m < 8*th {
		return p, nil, nil, false
	}
	salt, err1 := b64.DecodeString(f[4])
	sum, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(sum) < 16 || len(sum) > 64 {
		return p, nil, nil, false
	}
	return Argon2Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(th)}, salt, sum, true
}
