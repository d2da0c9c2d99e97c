package main

// The management commands talk to a berth server's REST API (/api/v1/) and
// nothing else. This file holds what they share: the environment, the
// global flags, credentials (a saved login's refresh token, or
// BERTH_USERNAME/BERTH_PASSWORD), the saved-login file and the HTTP client.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/api"
)

// defaultServer is the server the CLI talks to when nothing else is said.
const defaultServer = "http://localhost:5000"

// clientID identifies the CLI to the token endpoint.
const clientID = "berth-cli"

// cliEnv is what the management commands take from the outside world, so
// that tests can give them another one.
type cliEnv struct {
	getenv func(string) string
	// isTerminal reports whether r is an interactive terminal.
	isTerminal func(r io.Reader) bool
	http       *http.Client
	now        func() time.Time
}

func osEnv() *cliEnv {
	return &cliEnv{
		getenv: os.Getenv,
		isTerminal: func(r io.Reader) bool {
			f, ok := r.(*os.File)
			return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
		},
		http: &http.Client{Timeout: time.Minute},
		now:  time.Now,
	}
}

// newManagementCmds returns the management commands, to be added to the
// root command.
func newManagementCmds() []*cobra.Command { return managementCmds(osEnv()) }

func managementCmds(env *cliEnv) []*cobra.Command {
	return []*cobra.Command{
		newLoginCmd(env), newLogoutCmd(env),
		newScopeMapCmd(env), newTokenCmd(env), newAdminCmd(env), newUserCmd(env), newSigningKeyCmd(env), newTrustCmd(env),
		newRoleCmd(env),
		newRepositoryCmd(env), newAuditCmd(env), newOverviewCmd(env), newGCCmd(env), newFsckCmd(env), newEncryptionCmd(env),
		newNetworkRuleCmd(env), newConfigCmd(env),
	}
}

// globals are the flags every management command has.
type globals struct {
	env    *cliEnv
	server string
	output string
}

// newNoun returns a noun command (scope-map, token, ...) carrying the global
// flags for all its subcommands.
func newNoun(env *cliEnv, use, short string) (*cobra.Command, *globals) {
	g := &globals{env: env}
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	g.addFlags(cmd.PersistentFlags())
	return cmd, g
}

func (g *globals) addFlags(f *pflag.FlagSet) {
	f.StringVar(&g.server, "server", "", "berth server URL (env BERTH_SERVER; default: the server last logged in to, else "+defaultServer+")")
	f.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
}

// client returns an API client for the command, or an error if the flags
// are wrong.
func (g *globals) client(cmd *cobra.Command) (*client, error) {
	if g.output != "table" && g.output != "json" {
		return nil, fmt.Errorf("invalid --output %q: use table or json", g.output)
	}
	cfgPath, err := configPath(g.env)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	raw := cmp.Or(g.server, g.env.getenv("BERTH_SERVER"), cfg.Current, defaultServer)
	server, err := normalizeServer(raw)
	if err != nil {
		return nil, err
	}
	c := &client{env: g.env, server: server, cfgPath: cfgPath, json: g.output == "json",
		out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
	user, pass := g.env.getenv("BERTH_USERNAME"), g.env.getenv("BERTH_PASSWORD")
	switch {
	case user != "" && pass != "":
		c.basicUser, c.basicPass = user, pass
	case user != "" || pass != "":
		return nil, errors.New("set both BERTH_USERNAME and BERTH_PASSWORD, or neither")
	default:
		c.login = cfg.login(server)
	}
	return c, nil
}

// normalizeServer turns what a user typed into a base URL without a
// trailing slash. Without a scheme, localhost gets http and anything else
// https, as docker does.
func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = strings.TrimRight(s, "/")
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if host == "localhost" || host == "127.0.0.1" || host == "::1" || host == "[::1]" {
			s = "http://" + s
		} else {
			s = "https://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("invalid server %q: use a URL such as https://registry.example.com or http://localhost:5000", s)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), nil
}

// serverHost is the host[:port] of a server URL, as `docker login` wants it.
func serverHost(server string) string {
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		return u.Host
	}
	return server
}

// client calls the API of one server.
type client struct {
	env     *cliEnv
	server  string
	cfgPath string
	json    bool
	out     io.Writer
	errOut  io.Writer

	basicUser, basicPass string
	login                *savedLogin
	// scopes are asked for with the access token: repository commands need
	// the repository's actions in it, as on /v2/.
	scopes []string
	access string
}

// withScopes sets the scopes the access token is asked for.
func (c *client) withScopes(scopes ...string) { c.scopes = scopes }

// loginHint says how to get credentials.
func (c *client) loginHint() string {
	return fmt.Sprintf("run `berth login %s` or set BERTH_USERNAME and BERTH_PASSWORD", c.server)
}

// authorize adds credentials to req.
func (c *client) authorize(ctx context.Context, req *http.Request) error {
	switch {
	case c.basicUser != "":
		req.SetBasicAuth(c.basicUser, c.basicPass)
	case c.login != nil:
		if c.access == "" {
			tok, err := c.refresh(ctx)
			if err != nil {
				return err
			}
			c.access = tok
		}
		req.Header.Set("Authorization", "Bearer "+c.access)
	}
	return nil
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// requestToken posts a form to the server's token endpoint.
func (c *client) requestToken(ctx context.Context, form url.Values) (tokenResponse, error) {
	form.Set("client_id", clientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.server+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.env.http.Do(req)
	if err != nil {
		return tokenResponse{}, c.unreachable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenResponse{}, fmt.Errorf("read the token endpoint's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var te tokenError
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &te) == nil && (te.Description != "" || te.Error != "") {
			msg = cmp.Or(te.Description, te.Error)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			msg += " (retry after " + resp.Header.Get("Retry-After") + " seconds)"
		}
		return tokenResponse{}, &httpError{status: resp.StatusCode, message: msg}
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("the token endpoint's answer is not JSON: %w", err)
	}
	if tr.AccessToken == "" {
		tr.AccessToken = tr.Token
	}
	return tr, nil
}

// refresh trades the saved refresh token for an access token.
func (c *client) refresh(ctx context.Context) (string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.login.RefreshToken}}
	for _, s := range c.scopes {
		form.Add("scope", s)
	}
	tr, err := c.requestToken(ctx, form)
	var he *httpError
	if errors.As(err, &he) && (he.status == http.StatusUnauthorized || he.status == http.StatusBadRequest) {
		return "", fmt.Errorf("the saved login of %q for %s is no longer valid (%s): run `berth login %s` again", c.login.Username, c.server, he.message, c.server)
	}
	if err != nil {
		return "", err
	}
	if tr.RefreshToken != "" && tr.RefreshToken != c.login.RefreshToken {
		// The server rotated the refresh token: keep the new one.
		c.login.RefreshToken = tr.RefreshToken
		if err := updateConfig(c.cfgPath, func(cfg *loginFile) { cfg.save(*c.login, false) }); err != nil {
			fmt.Fprintln(c.errOut, "warning: could not save the renewed login:", err)
		}
	}
	return tr.AccessToken, nil
}

// httpError is an error answer of the server.
type httpError struct {
	status  int
	code    string
	message string
	hint    string
}

func (e *httpError) Error() string {
	if e.hint != "" {
		return e.message + "\n" + e.hint
	}
	return e.message
}

func (c *client) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach the berth server at %s: %v\ncheck --server or BERTH_SERVER, and that the server is running", c.server, err)
}

// do calls the API: method on path (below /api/v1/) with query, sending in
// as JSON when not nil and decoding the answer into out when not nil.
func (c *client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.server + api.Prefix + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "berth-cli/"+version)
	if err := c.authorize(ctx, req); err != nil {
		return err
	}
	resp, err := c.env.http.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return c.apiError(resp, b)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer of %s %s is not what berth sends (is %s a berth server?): %w", method, path, c.server, err)
	}
	return nil
}

// apiError turns an error answer into an error that says what to do next.
func (c *client) apiError(resp *http.Response, body []byte) error {
	e := &httpError{status: resp.StatusCode}
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		e.code, e.message = eb.Error.Code, eb.Error.Message
	} else {
		e.message = fmt.Sprintf("unexpected answer %s from %s (is it a berth server?)", resp.Status, c.server)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		// An access token that lacks a scope is no login problem: the
		// message names the scope.
		if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
			e.hint = c.loginHint()
		}
	case http.StatusTooManyRequests:
		e.hint = "wait " + resp.Header.Get("Retry-After") + " seconds and try again"
	case http.StatusConflict:
		if strings.Contains(e.message, "Enabled=false") {
			e.hint = "unlock it with `berth repository update (-n NAME | --image NAME:TAG) --write-enabled true --delete-enabled true`"
		}
	case http.StatusInternalServerError:
		e.hint = "the server's log has the details"
	}
	return e
}

// loginFile is the saved-login file.
type loginFile struct {
	// Current is the server used when neither --server nor BERTH_SERVER is set.
	Current string       `json:"current,omitempty"`
	Logins  []savedLogin `json:"logins"`
}

// savedLogin is what `berth login` keeps: never a password.
type savedLogin struct {
	Server       string `json:"server"`
	Username     string `json:"username"`
	RefreshToken string `json:"refresh_token"`
}

func (c *loginFile) login(server string) *savedLogin {
	for i := range c.Logins {
		if c.Logins[i].Server == server {
			return &c.Logins[i]
		}
	}
	return nil
}

// save stores l, replacing the server's earlier login; current makes its
// server the current one. A server that was current stays current.
func (c *loginFile) save(l savedLogin, current bool) {
	current = current || c.Current == l.Server
	c.remove(l.Server)
	c.Logins = append(c.Logins, l)
	if current {
		c.Current = l.Server
	}
}

func (c *loginFile) remove(server string) bool {
	for i := range c.Logins {
		if c.Logins[i].Server == server {
			c.Logins = append(c.Logins[:i], c.Logins[i+1:]...)
			if c.Current == server {
				c.Current = ""
			}
			return true
		}
	}
	return false
}

// configPath is $XDG_CONFIG_HOME/berth/config.json, or
// ~/.config/berth/config.json.
func configPath(env *cliEnv) (string, error) {
	dir := env.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := env.getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("find the configuration directory: set XDG_CONFIG_HOME or HOME: %w", err)
			}
			home = h
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "berth", "config.json"), nil
}

func loadConfig(path string) (loginFile, error) {
	var cfg loginFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read saved logins: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("read saved logins from %s: %w (delete the file and run `berth login` again)", path, err)
	}
	return cfg, nil
}

// updateConfig changes the saved-login file: readable by its owner only,
// written to a temporary file and renamed into place.
func updateConfig(path string, change func(*loginFile)) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	change(&cfg)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode saved logins: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save login: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save login: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	return nil
}
