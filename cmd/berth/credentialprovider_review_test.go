package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCredentialProviderFollowsNoRedirect: the service-account token is
// posted to the registry named by --registry only; a redirect (a 307 keeps
// the body) must not carry it anywhere else.
func TestCredentialProviderFollowsNoRedirect(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "subject_token") {
			leaked.Store(true)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"x","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","expires_in":300,"username":"u"}`)
	}))
	defer elsewhere.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/oauth2/token", http.StatusTemporaryRedirect)
	}))
	defer reg.Close()
	p := credentialProvider{registry: reg.URL, timeout: 5 * time.Second}
	host := strings.TrimPrefix(reg.URL, "http://")
	in := `{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + host + `/acme/app:v1","serviceAccountToken":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}`
	var out strings.Builder
	err := p.run(context.Background(), strings.NewReader(in), &out)
	if leaked.Load() {
		t.Fatal("the service-account token was posted to the redirect's target")
	}
	if err == nil {
		t.Fatalf("a redirect was taken for an answer: %s", out.String())
	}
}
