//go:build !cgo

package encryption

import "errors"

// openPKCS11 needs cgo (the PKCS#11 module is a C library): a static
// build has no HSM support.
func openPKCS11(string) (KeyProvider, error) {
	return nil, errors.New("encryption key pkcs11: this berth was built without cgo, which PKCS#11 needs (build with CGO_ENABLED=1)")
}
