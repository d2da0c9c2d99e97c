package encryption

import "errors"

func openPKCS11(string) (KeyProvider, error) {
	return nil, errors.New("encryption key pkcs11: not supported by this build")
}
