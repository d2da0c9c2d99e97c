package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The kubelet's credential provider API
// (credentialprovider.kubelet.k8s.io/v1), defined here rather than
// imported: k8s.io/kubelet would bring most of Kubernetes' dependency tree
// for three small JSON documents.
const (
	credentialProviderAPIVersion = "credentialprovider.kubelet.k8s.io/v1"
	credentialProviderRequest    = "CredentialProviderRequest"
	credentialProviderResponse   = "CredentialProviderResponse"
)

// CredentialProviderRequest is what the kubelet writes to the plugin's
// stdin. ServiceAccountToken and ServiceAccountAnnotations are sent by
// kubelet 1.33+ when the provider's tokenAttributes ask for them.
type CredentialProviderRequest struct {
	Kind                      string            `json:"kind"`
	APIVersion                string            `json:"apiVersion"`
	Image                     string            `json:"image"`
	ServiceAccountToken       string            `json:"serviceAccountToken,omitempty"`
	ServiceAccountAnnotations map[string]string `json:"serviceAccountAnnotations,omitempty"`
}

// CredentialProviderResponse is what the plugin writes to stdout.
type CredentialProviderResponse struct {
	Kind          string `json:"kind"`
	APIVersion    string `json:"apiVersion"`
	CacheKeyType  string `json:"cacheKeyType"`
	CacheDuration string `json:"cacheDuration,omitempty"`
	// Auth maps an image pattern (here the registry's host[:port]) to
	// the credentials for it.
	Auth map[string]AuthConfig `json:"auth"`
}

// AuthConfig is the username and password the container runtime logs in
// with.
type AuthConfig struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// TokenAnnotation, on a pod's service account, names the berth token its
// pulls log in as (when the provider's tokenAttributes list it).
const TokenAnnotation = "berth-registry.io/token"

// cacheMargin is how long before the credential expires the kubelet stops
// using its cached copy.
const cacheMargin = 30 * time.Second

func newCredentialProviderCmd() *cobra.Command {
	var registry, token, tokenFile, caFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "credential-provider --registry URL [--token NAME] [--token-file FILE]",
		Short: "A kubelet image credential provider: pod service-account tokens in, short-lived berth credentials out",
		Long: `Implements the kubelet's CredentialProvider API
(credentialprovider.kubelet.k8s.io/v1): reads a CredentialProviderRequest on
stdin, exchanges the pod's service-account token it carries (kubelet 1.33+
with tokenAttributes configured; otherwise the token in --token-file) with
berth for a refresh token of the berth token whose federated credential
trusts it (RFC 8693 token exchange at /oauth2/token), and writes a
CredentialProviderResponse with that credential for the registry's host and
a cacheDuration until shortly before it expires.

The berth token is --token, else the pod's service account annotation
` + TokenAnnotation + `, else the one token whose federated credentials the
service-account token satisfies. Settings also come from the environment:
BERTH_REGISTRY, BERTH_TOKEN, BERTH_TOKEN_FILE, BERTH_CA_FILE. See
docs/kubernetes.md for the kubelet configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := credentialProvider{registry: registry, token: token, tokenFile: tokenFile, timeout: timeout}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("read --ca-file: %w", err)
				}
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
				}
				p.rootCAs = pool
			}
			return p.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&registry, "registry", os.Getenv("BERTH_REGISTRY"), "the registry's URL, e.g. https://registry.example.com (env BERTH_REGISTRY)")
	f.StringVar(&token, "token", os.Getenv("BERTH_TOKEN"), "the berth token to log in as (env BERTH_TOKEN; default: the service account's "+TokenAnnotation+" annotation, else the token whose federated credential matches)")
	f.StringVar(&tokenFile, "token-file", os.Getenv("BERTH_TOKEN_FILE"), "a service-account token file, used when the request carries none (env BERTH_TOKEN_FILE)")
	f.StringVar(&caFile, "ca-file", os.Getenv("BERTH_CA_FILE"), "PEM file of CAs the registry's certificate may chain to, besides the system's (env BERTH_CA_FILE)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long the exchange with berth may take")
	return cmd
}

type credentialProvider struct {
	registry, token, tokenFile string
	rootCAs                    *x509.CertPool
	timeout                    time.Duration
	// transport replaces the HTTP transport (tests).
	transport http.RoundTripper
}

func (p *credentialProvider) run(ctx context.Context, in io.Reader, out io.Writer) error {
	if p.registry == "" {
		return errors.New("--registry is required: the registry's URL, e.g. https://registry.example.com")
	}
	reg, err := url.Parse(p.registry)
	if err != nil || reg.Host == "" || reg.Scheme != "https" && reg.Scheme != "http" {
		return fmt.Errorf("--registry %q: give the registry's URL, e.g. https://registry.example.com", p.registry)
	}
	var req CredentialProviderRequest
	dec := json.NewDecoder(io.LimitReader(in, 1<<20))
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("read the CredentialProviderRequest on stdin: %w", err)
	}
	if req.Kind != credentialProviderRequest {
		return fmt.Errorf("stdin holds a %q, not a %s", req.Kind, credentialProviderRequest)
	}
	if !strings.HasPrefix(req.APIVersion, "credentialprovider.kubelet.k8s.io/") {
		return fmt.Errorf("unsupported apiVersion %q: use %s", req.APIVersion, credentialProviderAPIVersion)
	}
	resp := CredentialProviderResponse{Kind: credentialProviderResponse, APIVersion: req.APIVersion, CacheKeyType: "Registry", Auth: map[string]AuthConfig{}}
	if imageHost(req.Image) != reg.Host {
		// Not this registry's image (matchImages is wider than it): no
		// credentials, and the kubelet pulls without.
		return json.NewEncoder(out).Encode(resp)
	}
	sat := strings.TrimSpace(req.ServiceAccountToken)
	if sat == "" && p.tokenFile != "" {
		b, err := os.ReadFile(p.tokenFile)
		if err != nil {
			return fmt.Errorf("read the service-account token: %w", err)
		}
		sat = strings.TrimSpace(string(b))
	}
	if sat == "" {
		return errors.New("the request carries no serviceAccountToken: configure tokenAttributes in the kubelet's CredentialProviderConfig (kubelet 1.33+), or give --token-file")
	}
	token := p.token
	if token == "" {
		token = req.ServiceAccountAnnotations[TokenAnnotation]
	}
	user, password, expiresIn, err := p.exchange(ctx, reg, sat, token)
	if err != nil {
		return err
	}
	resp.Auth[reg.Host] = AuthConfig{Username: user, Password: password}
	if d := time.Duration(expiresIn)*time.Second - cacheMargin; d > 0 {
		resp.CacheDuration = d.String()
	} else {
		resp.CacheDuration = "0s"
	}
	return json.NewEncoder(out).Encode(resp)
}

// imageHost is the registry host of an image reference, as the kubelet
// passes it (host[:port]/path[:tag|@digest]).
func imageHost(image string) string {
	host, _, ok := strings.Cut(image, "/")
	if !ok || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "docker.io"
	}
	return host
}

// exchange trades the service-account token for a berth refresh token of
// the berth token (RFC 8693), which the runtime uses as that token's
// password.
func (p *credentialProvider) exchange(ctx context.Context, reg *url.URL, sat, token string) (user, password string, expiresIn int64, err error) {
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {sat},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:jwt"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:refresh_token"},
	}
	if token != "" {
		form.Set("client_id", token)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	u := reg.JoinPath("/oauth2/token")
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", "", 0, err
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("User-Agent", "berth-credential-provider/"+version)
	tr := p.transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: p.rootCAs, MinVersion: tls.VersionTLS12}
		tr = t
	}
	// No redirects: a 307 would post the service-account token to
	// wherever it points.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hresp, err := (&http.Client{Transport: tr, CheckRedirect: noRedirect}).Do(hreq)
	if err != nil {
		return "", "", 0, fmt.Errorf("exchange the service-account token with %s: %w", u.Redacted(), err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return "", "", 0, fmt.Errorf("exchange the service-account token: %w", err)
	}
	var ans struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		ExpiresIn       int64  `json:"expires_in"`
		Username        string `json:"username"`
		Error           string `json:"error"`
		Description     string `json:"error_description"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), &ans); err != nil {
		return "", "", 0, fmt.Errorf("exchange the service-account token: %s answered %s, not JSON", u.Redacted(), hresp.Status)
	}
	if hresp.StatusCode != http.StatusOK {
		return "", "", 0, fmt.Errorf("berth refused the service-account token: %s: %s", ans.Error, ans.Description)
	}
	if ans.AccessToken == "" || ans.IssuedTokenType != "urn:ietf:params:oauth:token-type:refresh_token" {
		return "", "", 0, errors.New("berth answered the token exchange without a refresh token")
	}
	user = ans.Username
	if user == "" {
		user = token
	}
	return user, ans.AccessToken, ans.ExpiresIn, nil
}
