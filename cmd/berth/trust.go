package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
)

func newTrustCmd(env *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Content trust: signature policies that pulls must satisfy",
	}
	policy, g := newNoun(env, "policy", "Manage signature policies: repositories whose pulls need a valid cosign or Notation signature")
	policy.Long = `A signature policy names a repository pattern (team/app, 'team/*' or '*')
and the keys (cosign public keys) or certificates (Notation trust store)
whose signatures it accepts. In enforce mode a pull of a manifest without a
valid signature by one of them is refused with 403 DENIED naming the policy;
in audit mode it is served and recorded in the audit log (kind trust).
Signatures themselves, and cosign or notation run by an identity that may push
to the repository, are never held back. A change applies to the next pull on
every node. See docs/trust.md.`
	policy.AddCommand(newTrustPolicyCreateCmd(g), newTrustPolicyUpdateCmd(g), newTrustPolicyShowCmd(g), newTrustPolicyListCmd(g), newTrustPolicyDeleteCmd(g))
	cmd.AddCommand(policy)
	return cmd
}

// pemFiles is the value of --key FILE... and --certificate FILE...: every
// word after the flag up to the next flag (see withGroupedFlags), and the
// flag may be repeated.
type pemFiles []string

func (p *pemFiles) String() string { return strings.Join(*p, " ") }
func (p *pemFiles) Type() string   { return "FILE..." }
func (p *pemFiles) Set(v string) error {
	words := strings.Fields(v)
	if len(words) == 0 {
		return fmt.Errorf("give one or more files")
	}
	*p = append(*p, words...)
	return nil
}

// readPEMFiles reads each named file (a cosign.pub, a certificate).
func readPEMFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

func newTrustPolicyCreateCmd(g *globals) *cobra.Command {
	var name, repo, require, mode string
	var keys, certs pemFiles
	var identities []string
	cmd := &cobra.Command{
		Use:   "create -n NAME --repository PATTERN [--require cosign|notation|any] (--key FILE... | --certificate FILE...) [--mode enforce|audit]",
		Short: "Create a signature policy",
		Args:  cobra.NoArgs,
		Example: `  berth trust policy create -n prod --repository 'prod/*' --require cosign --key cosign.pub
  berth trust policy create -n releases --repository 'releases/*' --require notation --certificate ca.crt \
      --trusted-identity 'x509.subject: C=US, ST=WA, O=example, CN=release signer'
  berth trust policy create -n try --repository '*' --key cosign.pub --certificate ca.crt --mode audit`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.TrustPolicyCreate
			q := &req.Properties
			q.Repository, q.Require, q.Mode, q.TrustedIdentities = repo, require, mode, identities
			var err error
			if q.Keys, err = readPEMFiles(keys); err != nil {
				return err
			}
			if q.Certificates, err = readPEMFiles(certs); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var p api.TrustPolicy
			if err := c.do(cmd.Context(), "PUT", "trustPolicies/"+url.PathEscape(name), nil, req, &p); err != nil {
				return err
			}
			return printTrustPolicy(c, p)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "policy name: 1 to 50 letters, digits, '-' or '_'")
	f.StringVar(&repo, "repository", "", "repository pattern: team/app, 'team/*' or '*'")
	f.StringVar(&require, "require", "any", "signature format: cosign, notation or any")
	f.StringVar(&mode, "mode", "enforce", "enforce (refuse unsigned pulls) or audit (serve and record)")
	f.Var(&keys, "key", "files with a PEM public key each that cosign signatures may verify with (cosign.pub)")
	f.Var(&certs, "certificate", "files with PEM certificates: the Notation trust store (a CA or a self-signed signing certificate), and roots of cosign signing certificates")
	f.StringArrayVar(&identities, "trusted-identity", nil, "a Notation trusted identity, 'x509.subject: C=..., ST=..., O=..., CN=...'; repeatable; default any")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("repository")
	withGroupedFlags(cmd, "key", "certificate")
	return cmd
}

func newTrustPolicyUpdateCmd(g *globals) *cobra.Command {
	var name, repo, require, mode string
	var keys, certs pemFiles
	var identities []string
	cmd := &cobra.Command{
		Use:   "update -n NAME [--repository PATTERN] [--require ...] [--key FILE...] [--certificate FILE...] [--mode enforce|audit]",
		Short: "Change a signature policy; the next pull on every node follows it",
		Long: `Change a signature policy. Flags that are given replace the setting whole
(--key replaces every key); the others are left alone.`,
		Example: `  berth trust policy update -n prod --mode audit
  berth trust policy update -n prod --key new-cosign.pub --key old-cosign.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.TrustPolicyPatch
			q := &req.Properties
			fl := cmd.Flags()
			if fl.Changed("repository") {
				q.Repository = &repo
			}
			if fl.Changed("require") {
				q.Require = &require
			}
			if fl.Changed("mode") {
				q.Mode = &mode
			}
			if fl.Changed("key") {
				k, err := readPEMFiles(keys)
				if err != nil {
					return err
				}
				q.Keys = &k
			}
			if fl.Changed("certificate") {
				c, err := readPEMFiles(certs)
				if err != nil {
					return err
				}
				q.Certificates = &c
			}
			if fl.Changed("trusted-identity") {
				q.TrustedIdentities = &identities
			}
			if q.Repository == nil && q.Require == nil && q.Mode == nil && q.Keys == nil && q.Certificates == nil && q.TrustedIdentities == nil {
				return fmt.Errorf("nothing to change: give --repository, --require, --mode, --key, --certificate or --trusted-identity")
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var p api.TrustPolicy
			if err := c.do(cmd.Context(), "PATCH", "trustPolicies/"+url.PathEscape(name), nil, req, &p); err != nil {
				return err
			}
			return printTrustPolicy(c, p)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "policy name")
	f.StringVar(&repo, "repository", "", "new repository pattern")
	f.StringVar(&require, "require", "", "cosign, notation or any")
	f.StringVar(&mode, "mode", "", "enforce or audit")
	f.Var(&keys, "key", "PEM public key files; replace every key")
	f.Var(&certs, "certificate", "PEM certificate files; replace every certificate")
	f.StringArrayVar(&identities, "trusted-identity", nil, "Notation trusted identity; replaces them; repeatable")
	cmd.MarkFlagRequired("name")
	withGroupedFlags(cmd, "key", "certificate")
	return cmd
}

func newTrustPolicyShowCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "show -n NAME",
		Short: "Show a signature policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var p api.TrustPolicy
			if err := c.do(cmd.Context(), "GET", "trustPolicies/"+url.PathEscape(name), nil, nil, &p); err != nil {
				return err
			}
			return printTrustPolicy(c, p)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "policy name")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newTrustPolicyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List signature policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var list api.List[api.TrustPolicy]
			if err := c.do(cmd.Context(), "GET", "trustPolicies", nil, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list)
			}
			t := newTable(c.out, "NAME", "REPOSITORY", "REQUIRE", "MODE", "KEYS", "CERTIFICATES", "VERSION")
			for _, p := range list.Value {
				q := p.Properties
				t.row(p.Name, q.Repository, q.Require, q.Mode, strconv.Itoa(len(q.Keys)), strconv.Itoa(len(q.Certificates)), strconv.FormatInt(q.Version, 10))
			}
			return t.flush()
		},
	}
}

func newTrustPolicyDeleteCmd(g *globals) *cobra.Command {
	var name string
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete -n NAME [--yes]",
		Short: "Delete a signature policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := confirm(cmd, g.env, yes, fmt.Sprintf("signature policy %q", name)); err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", "trustPolicies/"+url.PathEscape(name), nil, nil, nil); err != nil {
				return err
			}
			if !c.json {
				fmt.Fprintf(c.out, "Deleted signature policy %q.\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "policy name")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.MarkFlagRequired("name")
	return cmd
}

func printTrustPolicy(c *client, p api.TrustPolicy) error {
	if c.json {
		return printJSON(c.out, p)
	}
	q := p.Properties
	ids := "any"
	if len(q.TrustedIdentities) > 0 {
		ids = strings.Join(q.TrustedIdentities, "; ")
	}
	return fields(c.out,
		"Name", p.Name,
		"Repository", q.Repository,
		"Require", q.Require,
		"Mode", q.Mode,
		"Keys", strconv.Itoa(len(q.Keys)),
		"Certificates", strconv.Itoa(len(q.Certificates)),
		"Trusted identities", ids,
		"Version", strconv.FormatInt(q.Version, 10),
		"Created", fmtTime(q.CreationDate),
		"Updated", fmtTime(q.LastUpdateDate),
	)
}
