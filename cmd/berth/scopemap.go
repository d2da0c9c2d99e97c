package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/auth"
)

func newScopeMapCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "scope-map", "Manage scope maps: named sets of repository permissions for tokens")
	cmd.Long = `Manage scope maps. A scope map grants actions on repositories; each token
uses one scope map. Actions: content/read (pull), content/write (push),
content/overwrite (move an existing tag to another manifest), content/delete,
metadata/read (list tags), metadata/write (untag, change attributes).
Repository patterns: a name (team/app), a prefix with one trailing wildcard
(team/*, every repository below team/), or * for all. --tags after a
--repository limits its actions to tag patterns: literal tags or globs with
* (v*, *-rc*); without it they apply to every tag. Quote wildcards so that
the shell leaves them alone.

The five built-in scope maps (_repositories_admin, _repositories_pull,
_repositories_pull_metadata_read, _repositories_push,
_repositories_push_metadata_write) cannot be changed.`
	cmd.AddCommand(newScopeMapCreateCmd(g), newScopeMapUpdateCmd(g), newScopeMapShowCmd(g), newScopeMapListCmd(g), newScopeMapDeleteCmd(g))
	cmd.AddCommand(newScopeMapMatchCmd(g))
	return cmd
}

func newScopeMapCreateCmd(g *globals) *cobra.Command {
	var name, description string
	cmd := &cobra.Command{
		Use:   "create -n NAME --repository REPO ACTION... [--repository REPO ACTION...]",
		Short: "Create a scope map",
		Example: `  berth scope-map create -n ci-push --repository 'samples/*' content/read content/write
  berth scope-map create -n ci-dev --repository team/app content/read --repository team/app content/write content/overwrite --tags 'dev-*,pr-*'
  berth scope-map create -n mixed --repository team/app content/read --repository 'team/*' metadata/read --description "Team readers"`,
	}
	repos := addRepositoryFlag(cmd.Flags(), "repository", "a repository pattern and the actions to grant on it; repeatable")
	addTagsFlag(cmd.Flags(), repos)
	cmd.Flags().StringVarP(&name, "name", "n", "", "scope map name: 5 to 50 letters, digits, '-' or '_'")
	cmd.Flags().StringVar(&description, "description", "", "description, at most 256 characters")
	cmd.MarkFlagRequired("name")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := g.client(cmd)
		if err != nil {
			return err
		}
		var req api.ScopeMapCreate
		req.Properties.Description = description
		if req.Properties.Actions, req.Properties.Tags, err = repos.merged(); err != nil {
			return err
		}
		var m api.ScopeMap
		if err := c.do(cmd.Context(), "PUT", "scopeMaps/"+url.PathEscape(name), nil, req, &m); err != nil {
			return err
		}
		return printScopeMap(c, m)
	}
	withGroupedFlags(cmd, "repository")
	return cmd
}

func newScopeMapUpdateCmd(g *globals) *cobra.Command {
	var name, description string
	lim := &limitFlags{}
	cmd := &cobra.Command{
		Use:   "update -n NAME [--add-repository REPO ACTION...] [--remove-repository REPO ACTION...] [--description TEXT] [--rate-limit RATE] [--burst N] [--pull-bytes-per-day SIZE] [--push-bytes-per-day SIZE]",
		Short: "Change a scope map; every token using it is affected at once",
		Long: `Change a scope map. Added and removed grants are applied by the server in
one step, so that two people changing the same scope map at once do not undo
each other's change. The change applies to every token that uses the scope
map from its next request. Limits set on a scope map apply to each of its
tokens that has no limit of its own (each token counts its own requests and
bytes).`,
		Example: `  berth scope-map update -n ci-push --add-repository team/app content/read --remove-repository 'samples/*' content/write
  berth scope-map update -n ci-push --rate-limit 20/s --push-bytes-per-day 50GiB
  berth scope-map update -n ci-dev --remove-repository team/app content/write --add-repository team/app content/write --tags 'release-*'`,
	}
	add := addRepositoryFlag(cmd.Flags(), "add-repository", "a repository pattern and actions to grant; repeatable")
	remove := addRepositoryFlag(cmd.Flags(), "remove-repository", "a repository pattern and actions to take away (with their tag limits); repeatable")
	addTagsFlag(cmd.Flags(), add, remove)
	cmd.Flags().StringVarP(&name, "name", "n", "", "scope map name")
	cmd.Flags().StringVar(&description, "description", "", "new description")
	lim.register(cmd.Flags())
	cmd.MarkFlagRequired("name")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var req api.ScopeMapPatch
		var err error
		if req.Properties.AddActions, req.Properties.AddTags, err = add.merged(); err != nil {
			return err
		}
		req.Properties.RemoveActions = remove.actions
		if cmd.Flags().Changed("description") {
			req.Properties.Description = &description
		}
		lu, limits, err := lim.update(cmd)
		if err != nil {
			return err
		}
		changes := req.Properties.AddActions != nil || req.Properties.RemoveActions != nil || req.Properties.Description != nil
		if !changes && !limits {
			return fmt.Errorf("nothing to change: give --add-repository, --remove-repository, --description or a limit (--rate-limit, --burst, --pull-bytes-per-day, --push-bytes-per-day)")
		}
		c, err := g.client(cmd)
		if err != nil {
			return err
		}
		var m api.ScopeMap
		if changes {
			err = c.do(cmd.Context(), "PATCH", "scopeMaps/"+url.PathEscape(name), nil, req, &m)
		} else {
			err = c.do(cmd.Context(), "GET", "scopeMaps/"+url.PathEscape(name), nil, nil, &m)
		}
		if err != nil {
			return err
		}
		if !limits {
			return printScopeMap(c, m)
		}
		sl, err := setScopeMapLimits(cmd, c, name, lu)
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(c.out, sl)
		}
		if err := printScopeMap(c, m); err != nil {
			return err
		}
		printScopeMapLimits(c, sl)
		return nil
	}
	withGroupedFlags(cmd, "add-repository", "remove-repository")
	return cmd
}

func newScopeMapShowCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "show -n NAME",
		Short: "Show a scope map",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var m api.ScopeMap
			if err := c.do(cmd.Context(), "GET", "scopeMaps/"+url.PathEscape(name), nil, nil, &m); err != nil {
				return err
			}
			if err := printScopeMap(c, m); err != nil || c.json {
				return err
			}
			showScopeMapLimits(cmd, c, m.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "scope map name")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newScopeMapListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List scope maps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			var list api.List[api.ScopeMap]
			if err := c.do(cmd.Context(), "GET", "scopeMaps", nil, nil, &list); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, list.Value)
			}
			t := newTable(c.out, "NAME", "TYPE", "TOKENS", "CREATED", "DESCRIPTION")
			for _, m := range list.Value {
				p := m.Properties
				t.row(m.Name, p.Type, strconv.Itoa(len(p.Tokens)), fmtOptTime(p.CreationDate, "-"), p.Description)
			}
			return t.flush()
		},
	}
}

func newScopeMapDeleteCmd(g *globals) *cobra.Command {
	var name string
	var yes, force bool
	cmd := &cobra.Command{
		Use:   "delete -n NAME [--yes] [--force]",
		Short: "Delete a scope map",
		Long: `Delete a scope map. A scope map that tokens use is not deleted unless
--force is given; those tokens are then left without any permissions, and
are listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			if err := confirm(cmd, g.env, yes, fmt.Sprintf("scope map %q", name)); err != nil {
				return err
			}
			q := url.Values{}
			if force {
				q.Set("force", "true")
			}
			var del api.ScopeMapDeleted
			if err := c.do(cmd.Context(), "DELETE", "scopeMaps/"+url.PathEscape(name), q, nil, &del); err != nil {
				var he *httpError
				if errors.As(err, &he) && he.code == api.CodeInUse {
					he.hint = "change the tokens' scope map with `berth token update -n TOKEN --scope-map OTHER`, or pass --force"
				}
				return err
			}
			if c.json {
				return printJSON(c.out, del)
			}
			fmt.Fprintf(c.out, "Deleted scope map %q.\n", name)
			if len(del.TokensWithoutPermissions) > 0 {
				fmt.Fprintf(c.out, "These tokens no longer have any permissions: %s\n", strings.Join(del.TokensWithoutPermissions, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "scope map name")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&force, "force", false, "delete even if tokens use it (they lose all permissions)")
	cmd.MarkFlagRequired("name")
	return cmd
}

// printScopeMap shows one scope map, with its grants grouped by repository.
func printScopeMap(c *client, m api.ScopeMap) error {
	if c.json {
		return printJSON(c.out, m)
	}
	p := m.Properties
	tokens := "none"
	if len(p.Tokens) > 0 {
		tokens = strings.Join(p.Tokens, ", ")
	}
	if err := fields(c.out, "Name", m.Name, "Type", p.Type, "Description", p.Description,
		"Created", fmtOptTime(p.CreationDate, "-"), "Tokens", tokens); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	if len(p.Tags) > 0 {
		return printTagGrants(c.out, p.Actions, p.Tags)
	}
	return printGrants(c.out, p.Actions)
}

// printTagGrants shows the grants of a scope map with tag limits as a
// REPOSITORY → ACTIONS → TAGS table.
func printTagGrants(w io.Writer, actions []string, tags map[string][]string) error {
	groups, err := auth.GroupRules(auth.ScopeMap{Actions: actions, Tags: tags})
	if err != nil {
		return printGrants(w, actions)
	}
	t := newTable(w, "REPOSITORY", "ACTIONS", "TAGS")
	for _, gr := range groups {
		tg := "*"
		if len(gr.Tags) > 0 {
			tg = strings.Join(gr.Tags, ", ")
		}
		t.row(gr.Pattern.String(), strings.Join(gr.Actions.ScopeMapNames(), ", "), tg)
	}
	return t.flush()
}

// printGrants shows stored scope-map actions as a REPOSITORY → ACTIONS table.
func printGrants(w io.Writer, actions []string) error {
	groups, err := auth.GroupActions(actions)
	if err != nil {
		// Not expected from a berth server; show the raw form rather than fail.
		for _, a := range actions {
			fmt.Fprintln(w, a)
		}
		return nil
	}
	if len(groups) == 0 {
		fmt.Fprintln(w, "No permissions.")
		return nil
	}
	t := newTable(w, "REPOSITORY", "ACTIONS")
	for _, gr := range groups {
		t.row(gr.Pattern.String(), strings.Join(gr.Actions.ScopeMapNames(), ", "))
	}
	return t.flush()
}
