package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/encryption"
)

func newEncryptionCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "encryption", "Show and rotate the key that encrypts content at rest")
	cmd.Long = `With berth serve --encryption-key, every blob's content is encrypted with a
data key of its own, and data keys are wrapped by the key-encryption key (KEK)
held in a key file or an HSM. These commands show the key and its versions,
and rotate it: a new version is recorded and every data key is rewrapped with
it in the background, without rewriting content and without stopping pulls
or pushes. See docs/encryption.md.`
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the key id, its versions and the progress of background work",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var st encryption.Status
			if err := c.do(cmd.Context(), "GET", "encryption", nil, nil, &st); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, st)
			}
			return printEncryptionStatus(c.out, st)
		},
	}
	var version int
	var wait bool
	rotate := &cobra.Command{
		Use:   "rotate-key [--version N] [--wait]",
		Short: "Record a new key version and rewrap every data key with it, online",
		Long: `Record a new version of the key-encryption key and rewrap every data key
with it in the background; content is not rewritten and the registry keeps
serving. Without --version the key provider makes the new version (a new line
in the key file, a new AES key in the HSM). With several nodes that each have
their own key file, add the new version to every node's file first and name it
with --version. Once rewrapping is 0, older versions can be removed from the
key file (or destroyed in the HSM). Needs the contributor or owner role.`,
		Example: `  berth encryption rotate-key --wait
  berth encryption rotate-key --version 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var st encryption.Status
			if err := c.do(cmd.Context(), "POST", "encryption/rotateKey", nil, api.RotateKeyRequest{Version: version}, &st); err != nil {
				return err
			}
			for wait && st.Rewrapping > 0 {
				select {
				case <-cmd.Context().Done():
					return context.Cause(cmd.Context())
				case <-time.After(time.Second):
				}
				if err := c.do(cmd.Context(), "GET", "encryption", nil, nil, &st); err != nil {
					return err
				}
			}
			if c.json {
				return printJSON(c.out, st)
			}
			fmt.Fprintf(c.out, "Key %s is now at version %d.\n", st.KeyID, st.Version)
			return printEncryptionStatus(c.out, st)
		},
	}
	rotate.Flags().IntVar(&version, "version", 0, "use this version the key provider already holds, instead of making one")
	rotate.Flags().BoolVar(&wait, "wait", false, "wait until every data key is rewrapped")
	var file string
	initKey := &cobra.Command{
		Use:   "init-key --file PATH",
		Short: "Make a new key file (on this machine) for berth serve --encryption-key file:PATH",
		Long: `Write a new key file with one random 256-bit key (version 1), readable by its
owner only. Keep a copy somewhere safe: without it, encrypted content cannot be
read. This runs locally and does not talk to a server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("give --file PATH")
			}
			if err := encryption.GenerateKeyFile(file); err != nil {
				return err
			}
			k, err := encryption.OpenKeyFile(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote key %s to %s; start the registry with --encryption-key file:%s\n", k.ID(), file, file)
			return nil
		},
	}
	initKey.Flags().StringVar(&file, "file", "", "where to write the key file (it must not exist)")
	cmd.AddCommand(status, rotate, initKey)
	return cmd
}

func printEncryptionStatus(out io.Writer, st encryption.Status) error {
	if !st.Enabled {
		_, err := fmt.Fprintln(out, "Encryption at rest is off (berth serve --encryption-key turns it on).")
		return err
	}
	avail := "available"
	if !st.Available {
		avail = "UNAVAILABLE: " + st.Error
	}
	fmt.Fprintf(out, "Key:        %s (%s), version %d, %s\n", st.KeyID, st.Provider, st.Version, avail)
	fmt.Fprintf(out, "Rewrapping: %d data key(s) still wrapped with older versions\n", st.Rewrapping)
	if e := st.Existing; e != nil {
		state := "in progress"
		if e.Done {
			state = "done"
		}
		fmt.Fprintf(out, "Existing content: %s: %d blob(s) checked, %d encrypted (%d bytes), %d failed\n", state, e.Checked, e.Encrypted, e.Bytes, e.Failed)
	}
	t := newTable(out, "VERSION", "DATA KEYS", "CREATED")
	for _, v := range st.Versions {
		t.row(fmt.Sprint(v.Version), fmt.Sprint(v.DataKeys), fmtTime(v.CreatedAt))
	}
	return t.flush()
}
