package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newLoginCmd(env *cliEnv) *cobra.Command {
	g := &globals{env: env, output: "table"}
	var username, password string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login [SERVER] [-u USERNAME] [--password-stdin | -p PASSWORD]",
		Short: "Log in to a berth server for the management commands",
		Long: `Log in to a berth server. The username and password are exchanged at the
server's token endpoint for a refresh token, which is saved (never the
password) in $XDG_CONFIG_HOME/berth/config.json, or ~/.config/berth/config.json,
readable by you only. Later commands trade it for short-lived access tokens.
The server becomes the default for later commands.

Without --password-stdin or -p, the username and password are asked for on
the terminal.

SERVER defaults to --server, BERTH_SERVER, the last server logged in to, or
` + defaultServer + `. Without a scheme, https is used, except for localhost.

Instead of logging in, you may set BERTH_USERNAME and BERTH_PASSWORD, which
are sent with each request.`,
		Example: `  berth login registry.example.com -u alice            # asks for the password
  printf '%s' "$PASSWORD" | berth login registry.example.com -u alice --password-stdin`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				g.server = args[0]
			}
			interactive := env.isTerminal(cmd.InOrStdin()) && !fromStdin
			if username == "" {
				if !interactive {
					return errors.New("give the username with -u USERNAME")
				}
				u, err := prompt(cmd, "Username: ", false)
				if err != nil {
					return err
				}
				username = u
			}
			switch {
			case fromStdin:
				pw, err := readPasswordStdin(cmd)
				if err != nil {
					return err
				}
				password = pw
			case cmd.Flags().Changed("password"):
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: a password on the command line can be seen by other users of this machine; prefer --password-stdin")
			case interactive:
				pw, err := prompt(cmd, "Password: ", true)
				if err != nil {
					return err
				}
				password = pw
			default:
				return errors.New("give the password with --password-stdin (or -p PASSWORD)")
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			tr, err := c.requestToken(cmd.Context(), url.Values{"grant_type": {"password"}, "username": {username},
				"password": {password}, "access_type": {"offline"}})
			var he *httpError
			if errors.As(err, &he) && he.status == http.StatusUnauthorized {
				return fmt.Errorf("login to %s failed: %s", c.server, he.message)
			}
			if err != nil {
				return fmt.Errorf("login to %s failed: %w", c.server, err)
			}
			if tr.RefreshToken == "" {
				return fmt.Errorf("login to %s failed: the server did not issue a refresh token (is it a berth server?)", c.server)
			}
			login := savedLogin{Server: c.server, Username: username, RefreshToken: tr.RefreshToken}
			if err := updateConfig(c.cfgPath, func(cfg *loginFile) { cfg.save(login, true) }); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Login succeeded: %s at %s.\nSaved in %s (a refresh token, not the password).\n", username, c.server, c.cfgPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&g.server, "server", "", "berth server URL (env BERTH_SERVER)")
	f.StringVarP(&username, "username", "u", "", "username: a user, or a token")
	f.StringVarP(&password, "password", "p", "", "password")
	f.BoolVar(&fromStdin, "password-stdin", false, "read the password from stdin")
	cmd.MarkFlagsMutuallyExclusive("password", "password-stdin")
	return cmd
}

func newLogoutCmd(env *cliEnv) *cobra.Command {
	g := &globals{env: env, output: "table"}
	cmd := &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Forget the saved login for a server",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				g.server = args[0]
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			removed := false
			if err := updateConfig(c.cfgPath, func(cfg *loginFile) { removed = cfg.remove(c.server) }); err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s.\n", c.server)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed the saved login for %s.\n", c.server)
			return nil
		},
	}
	cmd.Flags().StringVar(&g.server, "server", "", "berth server URL (env BERTH_SERVER)")
	return cmd
}

// prompt asks for one line on the terminal; with secret set, the typed
// characters are not shown. Interrupting (Ctrl-C) returns at once, with
// the terminal restored.
func prompt(cmd *cobra.Command, question string, secret bool) (string, error) {
	in, errOut := cmd.InOrStdin(), cmd.ErrOrStderr()
	fmt.Fprint(errOut, question)
	if secret {
		f, ok := in.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", errors.New("cannot hide the password on this terminal: use --password-stdin")
		}
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(errOut)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		if len(b) == 0 {
			return "", errors.New("nothing entered")
		}
		return string(b), nil
	}
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case a := <-ch:
		line := strings.TrimRight(a.line, "\r\n")
		if a.err != nil && !errors.Is(a.err, io.EOF) {
			return "", fmt.Errorf("read from the terminal: %w", a.err)
		}
		if line == "" {
			return "", errors.New("nothing entered")
		}
		return line, nil
	case <-cmd.Context().Done():
		return "", cmd.Context().Err()
	}
}
