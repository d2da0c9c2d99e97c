package main

// The container image is FROM scratch: no CA bundle for the TLS of an
// object store, a database or an OIDC issuer. These roots are used only
// when the system has none; a mounted bundle (SSL_CERT_FILE) still wins.
import _ "golang.org/x/crypto/x509roots/fallback"
