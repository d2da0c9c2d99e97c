package main

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/config"
)

func newRepositoryCmd(env *cliEnv) *cobra.Command {
	cmd, g := newNoun(env, "repository", "List, inspect, lock and delete repositories and images")
	cmd.Aliases = []string{"repo"}
	cmd.Long = `List, inspect, lock and delete repositories and images. Each command needs
the same permission on the repository as the registry asks for: metadata/read
to show, metadata/write to change attributes, metadata/write or content/delete
to untag, content/delete to delete.`
	cmd.AddCommand(newRepositoryListCmd(g), newRepositoryShowCmd(g), newRepositoryShowTagsCmd(g),
		newRepositoryUpdateCmd(g), newRepositoryUntagCmd(g), newRepositoryDeleteCmd(g))
	return cmd
}

// repoTarget is what -n NAME or --image NAME:TAG|NAME@DIGEST names.
type repoTarget struct {
	name  string
	image string
}

func (t *repoTarget) addFlags(cmd *cobra.Command, imageUsage string) {
	cmd.Flags().StringVarP(&t.name, "name", "n", "", "repository name, as in team/app")
	if imageUsage != "" {
		cmd.Flags().StringVar(&t.image, "image", "", imageUsage)
		cmd.MarkFlagsMutuallyExclusive("name", "image")
		cmd.MarkFlagsOneRequired("name", "image")
	} else {
		cmd.MarkFlagRequired("name")
	}
}

// parse returns the repository and, for --image, the tag or digest.
func (t *repoTarget) parse() (repo, ref string, err error) {
	if t.image == "" {
		if t.name == "" {
			return "", "", errors.New("give the repository with -n NAME")
		}
		return t.name, "", nil
	}
	return parseImage(t.image)
}

// parseImage splits NAME:TAG or NAME@DIGEST.
func parseImage(image string) (repo, ref string, err error) {
	if name, d, ok := strings.Cut(image, "@"); ok {
		repo, ref = name, d
	} else if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		repo, ref = image[:i], image[i+1:]
	}
	if repo == "" || ref == "" {
		return "", "", fmt.Errorf("invalid --image %q: use NAME:TAG or NAME@DIGEST, as in team/app:v1", image)
	}
	return repo, ref, nil
}

func repoScope(repo string, actions ...string) string {
	return "repository:" + repo + ":" + strings.Join(actions, ",")
}

func newRepositoryListCmd(g *globals) *cobra.Command {
	var sortBy string
	var page, pageSize int
	cmd := &cobra.Command{
		Use:   "list [--sort name|lastPushed|created] [--page N] [--page-size 25|50|100|200]",
		Short: "List the repositories you may use",
		Long: `List the repositories you may use. With --sort, --page or --page-size, one
page of the detailed list: the total count, and for each repository when it
was last pushed to, its pulls (from the audit log), its size and creation
time.`,
		Example: `  berth repository list --sort lastPushed --page-size 25`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			c.withScopes("registry:catalog:*")
			if f := cmd.Flags(); f.Changed("sort") || f.Changed("page") || f.Changed("page-size") {
				q := url.Values{"sort": {sortBy}, "page": {strconv.Itoa(page)}, "pageSize": {strconv.Itoa(pageSize)}}
				var list api.RepositoryList
				if err := c.do(cmd.Context(), "GET", "repositories", q, nil, &list); err != nil {
					return err
				}
				if c.json {
					return printJSON(c.out, list)
				}
				t := newTable(c.out, "REPOSITORY", "LAST PUSHED", "PULLS", "SIZE", "CREATED")
				for _, it := range list.Items {
					pulls := "-"
					if it.Pulls != nil {
						pulls = strconv.FormatInt(*it.Pulls, 10)
					}
					t.row(it.Name, fmtOptTime(it.LastPushed, "never"), pulls, config.ByteSize(it.SizeBytes).Human(), fmtTime(it.CreatedTime))
				}
				if err := t.flush(); err != nil {
					return err
				}
				total := 0
				if list.Total != nil {
					total = *list.Total
				}
				fmt.Fprintf(c.errOut, "%d repositories; page %d of %d\n", total, list.Page, list.Pages)
				return nil
			}
			repos := []string{}
			q := url.Values{"n": {"1000"}}
			for {
				var page api.RepositoryList
				if err := c.do(cmd.Context(), "GET", "repositories", q, nil, &page); err != nil {
					return err
				}
				repos = append(repos, page.Repositories...)
				if page.Next == "" {
					break
				}
				q.Set("last", page.Next)
			}
			if c.json {
				return printJSON(c.out, repos)
			}
			t := newTable(c.out, "REPOSITORY")
			for _, r := range repos {
				t.row(r)
			}
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&sortBy, "sort", "name", "order: name, lastPushed (newest first) or created (newest first)")
	f.IntVar(&page, "page", 1, "the page to show, from 1")
	f.IntVar(&pageSize, "page-size", 50, "repositories per page: 25, 50, 100 or 200")
	return cmd
}

func newRepositoryShowCmd(g *globals) *cobra.Command {
	var target repoTarget
	cmd := &cobra.Command{
		Use:   "show (-n NAME | --image NAME:TAG | --image NAME@DIGEST)",
		Short: "Show a repository or an image, with its attributes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, ref, err := target.parse()
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			c.withScopes(repoScope(repo, "metadata_read"))
			if ref == "" {
				var r api.Repository
				if err := c.do(cmd.Context(), "GET", "repositories/"+repo, nil, nil, &r); err != nil {
					return err
				}
				return printRepository(c, r)
			}
			var m api.ManifestInfo
			if err := c.do(cmd.Context(), "GET", "repositories/"+repo+"/_manifests/"+ref, nil, nil, &m); err != nil {
				return err
			}
			return printManifest(c, m)
		},
	}
	target.addFlags(cmd, "an image, as NAME:TAG or NAME@DIGEST")
	return cmd
}

func newRepositoryShowTagsCmd(g *globals) *cobra.Command {
	var target repoTarget
	cmd := &cobra.Command{
		Use:   "show-tags -n NAME",
		Short: "List a repository's tags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, _, err := target.parse()
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			c.withScopes(repoScope(repo, "metadata_read"))
			tags := []api.Tag{}
			q := url.Values{"n": {"1000"}}
			for {
				var page api.TagList
				if err := c.do(cmd.Context(), "GET", "repositories/"+repo+"/_tags", q, nil, &page); err != nil {
					return err
				}
				tags = append(tags, page.Tags...)
				if page.Next == "" {
					break
				}
				q.Set("last", page.Next)
			}
			if c.json {
				return printJSON(c.out, tags)
			}
			t := newTable(c.out, "TAG", "DIGEST", "CREATED", "READ", "WRITE", "DELETE", "LIST")
			for _, tag := range tags {
				a := tag.ChangeableAttributes
				t.row(tag.Name, string(tag.Digest), fmtTime(tag.CreatedTime), strconv.FormatBool(a.ReadEnabled),
					strconv.FormatBool(a.WriteEnabled), strconv.FormatBool(a.DeleteEnabled), strconv.FormatBool(a.ListEnabled))
			}
			return t.flush()
		},
	}
	target.addFlags(cmd, "")
	return cmd
}

func newRepositoryUpdateCmd(g *globals) *cobra.Command {
	var target repoTarget
	var read, write, del, list optBool
	cmd := &cobra.Command{
		Use:   "update (-n NAME | --image NAME:TAG) [--read-enabled true|false] [--write-enabled true|false] [--delete-enabled true|false] [--list-enabled true|false]",
		Short: "Lock or unlock a repository or an image",
		Long: `Change the attributes of a repository or of one image. With
--write-enabled false an image cannot be overwritten or deleted, and a
repository cannot be pushed to; with --delete-enabled false nothing can be
deleted. The admin user is bound by them too.`,
		Example: `  berth repository update --image team/app:v1 --write-enabled false --delete-enabled false`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, ref, err := target.parse()
			if err != nil {
				return err
			}
			patch := api.AttributesPatch{ReadEnabled: read.ptr(), WriteEnabled: write.ptr(), DeleteEnabled: del.ptr(), ListEnabled: list.ptr()}
			if patch == (api.AttributesPatch{}) {
				return errors.New("nothing to change: give --read-enabled, --write-enabled, --delete-enabled or --list-enabled")
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			c.withScopes(repoScope(repo, "metadata_read", "metadata_write"))
			if ref == "" {
				var r api.Repository
				if err := c.do(cmd.Context(), "PATCH", "repositories/"+repo, nil, patch, &r); err != nil {
					return err
				}
				return printRepository(c, r)
			}
			var m api.ManifestInfo
			if err := c.do(cmd.Context(), "PATCH", "repositories/"+repo+"/_manifests/"+ref, nil, patch, &m); err != nil {
				return err
			}
			return printManifest(c, m)
		},
	}
	target.addFlags(cmd, "an image, as NAME:TAG or NAME@DIGEST")
	cmd.Flags().Var(&read, "read-enabled", "allow pulling")
	cmd.Flags().Var(&write, "write-enabled", "allow pushing and overwriting")
	cmd.Flags().Var(&del, "delete-enabled", "allow deleting")
	cmd.Flags().Var(&list, "list-enabled", "show in listings")
	return cmd
}

func newRepositoryUntagCmd(g *globals) *cobra.Command {
	var image string
	cmd := &cobra.Command{
		Use:   "untag --image NAME:TAG",
		Short: "Remove a tag; the image stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, tag, err := parseImage(image)
			if err != nil {
				return err
			}
			if strings.Contains(tag, ":") {
				return fmt.Errorf("invalid --image %q: untag needs NAME:TAG, not a digest", image)
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			// Untagging takes metadata/write or content/delete (the
			// operation table): ask for both, the token gets what is allowed.
			c.withScopes(repoScope(repo, "metadata_write", "delete"))
			if err := c.do(cmd.Context(), "DELETE", "repositories/"+repo+"/_tags/"+tag, nil, nil, nil); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, map[string]string{"untagged": repo + ":" + tag})
			}
			fmt.Fprintf(c.out, "Untagged %s:%s.\n", repo, tag)
			return nil
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "the tag to remove, as NAME:TAG")
	cmd.MarkFlagRequired("image")
	return cmd
}

func newRepositoryDeleteCmd(g *globals) *cobra.Command {
	var target repoTarget
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete (-n NAME | --image NAME:TAG | --image NAME@DIGEST) [--yes]",
		Short: "Delete a repository, or one image and all its tags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, ref, err := target.parse()
			if err != nil {
				return err
			}
			c, err := g.client(cmd)
			if err != nil {
				return err
			}
			c.withScopes(repoScope(repo, "delete"))
			what, path := "repository "+repo+" with all its images and tags", "repositories/"+repo
			if ref != "" {
				sep := ":"
				if strings.Contains(ref, ":") {
					sep = "@"
				}
				what, path = "image "+repo+sep+ref+" and every tag that points to it", "repositories/"+repo+"/_manifests/"+ref
			}
			if err := confirm(cmd, g.env, yes, what); err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", path, nil, nil, nil); err != nil {
				return err
			}
			if c.json {
				return printJSON(c.out, map[string]string{"deleted": strings.TrimPrefix(path, "repositories/")})
			}
			fmt.Fprintf(c.out, "Deleted %s.\n", what)
			return nil
		},
	}
	target.addFlags(cmd, "delete one image (and its tags), as NAME:TAG or NAME@DIGEST")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func printRepository(c *client, r api.Repository) error {
	if c.json {
		return printJSON(c.out, r)
	}
	a := r.ChangeableAttributes
	return fields(c.out, "Repository", r.ImageName, "Registry", r.Registry, "Created", fmtTime(r.CreatedTime), "Tags", strconv.Itoa(r.TagCount),
		"Read enabled", strconv.FormatBool(a.ReadEnabled), "Write enabled", strconv.FormatBool(a.WriteEnabled),
		"Delete enabled", strconv.FormatBool(a.DeleteEnabled), "List enabled", strconv.FormatBool(a.ListEnabled))
}

func printManifest(c *client, m api.ManifestInfo) error {
	if c.json {
		return printJSON(c.out, m)
	}
	man := m.Manifest
	a := man.ChangeableAttributes
	kv := []string{"Repository", m.ImageName, "Digest", string(man.Digest), "Media type", man.MediaType}
	if man.ArtifactType != "" {
		kv = append(kv, "Artifact type", man.ArtifactType)
	}
	if man.Subject != "" {
		kv = append(kv, "Subject", string(man.Subject))
	}
	if len(man.Platforms) > 0 {
		kv = append(kv, "Platforms", strings.Join(man.Platforms, ", "))
	}
	kv = append(kv, "Size", strconv.FormatInt(man.ImageSize, 10), "Created", fmtTime(man.CreatedTime),
		"Read enabled", strconv.FormatBool(a.ReadEnabled), "Write enabled", strconv.FormatBool(a.WriteEnabled),
		"Delete enabled", strconv.FormatBool(a.DeleteEnabled), "List enabled", strconv.FormatBool(a.ListEnabled))
	return fields(c.out, kv...)
}
