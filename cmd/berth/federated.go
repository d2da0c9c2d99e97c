package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/federation"
	"github.com/berth-registry/berth/internal/identity"
)

// newTokenFederatedCmd is `berth token federated-credential`, after `az
// identity federated-credential`.
func newTokenFederatedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federated-credential",
		Short: "Let workloads log in as a token with their platform's OIDC token, without a password",
		Long: `Manage a token's federated credentials. A workload whose OIDC token (a JWT
from GitHub Actions, a Kubernetes service account, any OIDC issuer) has the
credential's issuer, a subject matching it, the audience and the claims
logs in as the token with that JWT as its password:

  docker login -u TOKEN --password-stdin REGISTRY <<<"$OIDC_TOKEN"

and gets access tokens with the token's scope map, as with a password.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newFederatedCreateCmd(g), newFederatedListCmd(g), newFederatedShowCmd(g), newFederatedDeleteCmd(g))
	return cmd
}

func newFederatedCreateCmd(g *globals) *cobra.Command {
	var token, name, issuer, subject, audience, jwksFile string
	var claims []string
	cmd := &cobra.Command{
		Use:   "create -n TOKEN --issuer URL --subject SUBJECT [--audience AUDIENCE] [--claim NAME=VALUE]... [--jwks-file FILE] [--credential-name NAME]",
		Short: "Trust an OIDC issuer's tokens for a subject as logins of a token",
		Long: `Add a federated credential to a token. The subject is exact or has
wildcards ('*' for any run of characters, '?' for one), and so may the
values of --claim conditions. The audience defaults to the registry's name.
berth fetches the issuer's keys by OIDC discovery over https; for an issuer
it cannot reach (a Kubernetes cluster's service-account issuer), give its
keys with --jwks-file (kubectl get --raw /openid/v1/jwks).
The credential is named --credential-name, or after its subject.`,
		Example: `  berth token federated-credential create -n ci-push \
      --issuer https://token.actions.githubusercontent.com \
      --subject 'repo:acme/app:ref:refs/heads/main' --claim repository_owner=acme
  berth token federated-credential create -n deployer --credential-name prod \
      --issuer https://kubernetes.default.svc.cluster.local \
      --subject system:serviceaccount:prod:deployer --jwks-file jwks.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conds, err := federation.ParseClaimConditions(claims)
			if err != nil {
				return err
			}
			req := api.FederatedCredentialCreate{Issuer: issuer, Subject: subject, Audience: audience, Claims: conds}
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("read the JWKS: %w", err)
				}
				if !json.Valid(b) {
					return fmt.Errorf("%s is not JSON: give a JWK Set, as the issuer's jwks_uri serves it", jwksFile)
				}
				req.JWKS = b
			}
			if name == "" {
				name = defaultCredentialName(issuer, subject, audience)
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var fc identity.FederatedCredential
			if err := c.do(cmd.Context(), "PUT", federatedPath(token, name), nil, req, &fc); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, fc)
			}
			if err := printFederated(c, token, fc); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "\nA workload with such a token logs in with:\n\n    docker login -u %s --password-stdin %s <<<\"$OIDC_TOKEN\"\n", token, serverHost(c.server))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&token, "name", "n", "", "token name (the docker username the workload logs in as)")
	f.StringVar(&name, "credential-name", "", "the credential's name: 3 to 120 letters, digits, '-' or '_' (default: made from the subject)")
	f.StringVar(&issuer, "issuer", "", "the issuer URL, exactly as in the tokens' iss claim")
	f.StringVar(&subject, "subject", "", "the tokens' sub claim, exact or with '*' and '?' wildcards")
	f.StringVar(&audience, "audience", "", "a value the tokens' aud claim must include (default: the registry's name)")
	f.StringArrayVar(&claims, "claim", nil, "a condition NAME=VALUE on another claim (VALUE exact or with wildcards); repeatable")
	f.StringVar(&jwksFile, "jwks-file", "", "the issuer's public keys (a JWK Set) for an issuer berth does not fetch from")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("issuer")
	cmd.MarkFlagRequired("subject")
	return cmd
}

// defaultCredentialName names a credential after its subject, with a
// short hash of issuer, subject and audience, so that the same trust made
// twice is refused as a duplicate.
func defaultCredentialName(issuer, subject, audience string) string {
	var b strings.Builder
	dash := false
	for _, r := range subject {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimRight(b.String(), "-")
	if len(base) > 60 {
		base = strings.TrimRight(base[:60], "-")
	}
	sum := sha256.Sum256([]byte(issuer + "\n" + subject + "\n" + audience))
	if base == "" {
		base = "federated"
	}
	return base + "-" + hex.EncodeToString(sum[:3])
}

func federatedPath(token, name string) string {
	p := "tokens/" + url.PathEscape(token) + "/federatedCredentials"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

func newFederatedListCmd(g *globals) *cobra.Command {
	var token string
	cmd := &cobra.Command{
		Use:   "list -n TOKEN",
		Short: "List a token's federated credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var list api.List[identity.FederatedCredential]
			if err := c.do(cmd.Context(), "GET", federatedPath(token, ""), nil, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list.Value)
			}
			t := newTable(c.out, "NAME", "ISSUER", "SUBJECT", "AUDIENCE", "CLAIMS", "KEYS", "CREATED")
			for _, fc := range list.Value {
				t.row(fc.Name, fc.Issuer, fc.Subject, fc.Audience, strings.Join(federation.FormatClaims(fc.Claims), " "), keysSource(fc), fmtTime(fc.CreationTime))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVarP(&token, "name", "n", "", "token name")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newFederatedShowCmd(g *globals) *cobra.Command {
	var token, name string
	cmd := &cobra.Command{
		Use:   "show -n TOKEN (--credential-name NAME | NAME)",
		Short: "Show a federated credential",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := credentialNameArg(&name, args); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var fc identity.FederatedCredential
			if err := c.do(cmd.Context(), "GET", federatedPath(token, name), nil, nil, &fc); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, fc)
			}
			return printFederated(c, token, fc)
		},
	}
	cmd.Flags().StringVarP(&token, "name", "n", "", "token name")
	cmd.Flags().StringVar(&name, "credential-name", "", "the credential's name")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newFederatedDeleteCmd(g *globals) *cobra.Command {
	var token, name string
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete -n TOKEN (--credential-name NAME | NAME) [--yes]",
		Short: "Delete a federated credential; its logins and the tokens they issued stop working on their next request",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := credentialNameArg(&name, args); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if err := confirm(cmd, g.env, yes, fmt.Sprintf("federated credential %q of token %q", name, token)); err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", federatedPath(token, name), nil, nil, nil); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, map[string]string{"deleted": "/tokens/" + token + "/federatedCredentials/" + name})
			}
			fmt.Fprintf(c.out, "Deleted federated credential %q of token %q.\n", name, token)
			return nil
		},
	}
	cmd.Flags().StringVarP(&token, "name", "n", "", "token name")
	cmd.Flags().StringVar(&name, "credential-name", "", "the credential's name (see federated-credential list)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.MarkFlagRequired("name")
	return cmd
}

// credentialNameArg takes the credential's name from --credential-name or
// the one argument, not both.
func credentialNameArg(name *string, args []string) error {
	switch {
	case len(args) == 1 && *name != "" && args[0] != *name:
		return fmt.Errorf("two credential names, %q and %q: give one", *name, args[0])
	case len(args) == 1:
		*name = args[0]
	case *name == "":
		return errors.New("name the credential: --credential-name NAME (see federated-credential list)")
	}
	return nil
}

func keysSource(fc identity.FederatedCredential) string {
	if len(fc.JWKS) > 0 {
		return "JWKS given"
	}
	return "OIDC discovery"
}

func printFederated(c *client, token string, fc identity.FederatedCredential) error {
	return fields(c.out, "Token", token, "Name", fc.Name, "Issuer", fc.Issuer, "Subject", fc.Subject, "Audience", fc.Audience,
		"Claims", strings.Join(federation.FormatClaims(fc.Claims), " "), "Keys", keysSource(fc), "Created", fmtTime(fc.CreationTime))
}
