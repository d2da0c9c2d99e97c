package repository

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// Tag rules (scope maps whose rules are limited to tag patterns) apply here
// as on /v2/, with the same decision (auth.TagCheck) and the same meaning
// of "reachable from a tag" (meta.Store.Reachable): a caller that may see
// only some tags lists, counts and reads only those, and the manifests
// reachable from them.

// visibleTags filters tags to those id may see.
func visibleTags(check func(string) error, tags []string) []string {
	out := tags[:0]
	for _, t := range tags {
		if check(t) == nil {
			out = append(out, t)
		}
	}
	return out
}

// filledTags lists up to n tags after last that check allows (n < 0: all),
// reading on until the page is full so that filtering never ends a page
// early.
func (s *Service) filledTags(ctx context.Context, name string, check func(string) error, last string, n int) ([]string, error) {
	if n < 0 {
		tags, err := s.meta.Tags(ctx, name, last, -1)
		if err != nil {
			return nil, err
		}
		return visibleTags(check, tags), nil
	}
	out := []string{}
	batch := max(n, 1000)
	for len(out) < n {
		tags, err := s.meta.Tags(ctx, name, last, batch)
		if err != nil {
			return nil, err
		}
		for _, t := range tags {
			if len(out) < n && check(t) == nil {
				out = append(out, t)
			}
		}
		if len(tags) < batch {
			break
		}
		last = tags[len(tags)-1]
	}
	return out, nil
}

// filledTagManifests is filledTags for TagManifests.
func (s *Service) filledTagManifests(ctx context.Context, name string, check func(string) error, last string, n int) ([]meta.TaggedManifest, error) {
	var out []meta.TaggedManifest
	batch := n
	if n < 0 || n < 1000 {
		batch = 1000
	}
	for n < 0 || len(out) < n {
		page, err := s.meta.TagManifests(ctx, name, last, batch)
		if err != nil {
			return nil, err
		}
		for _, t := range page {
			if (n < 0 || len(out) < n) && check(t.Tag) == nil {
				out = append(out, t)
			}
		}
		if len(page) < batch {
			break
		}
		last = page[len(page)-1].Tag
	}
	return out, nil
}

// reachableBy reports whether manifest d is reachable from a tag check
// allows.
func (s *Service) reachableBy(ctx context.Context, name string, check func(string) error, d digest.Digest) (bool, error) {
	ok, err := s.meta.Reachable(ctx, name, func(t string) bool { return check(t) == nil }, d)
	if errors.Is(err, meta.ErrReachLimit) {
		return false, nil // undecided: not readable
	}
	return ok, err
}

// readableManifest enforces a tag-limited metadata/read on manifest m,
// named by ref.
func (s *Service) readableManifest(ctx context.Context, id auth.Identity, name, ref string, d digest.Digest) error {
	check := auth.TagCheck(id, name, auth.OpReadMetadata)
	if check == nil {
		return nil
	}
	if ref != d.String() {
		return check(ref)
	}
	ok, err := s.reachableBy(ctx, name, check, d)
	if err != nil {
		return err
	}
	if !ok {
		return auth.ReachDenied(id, name, auth.OpReadMetadata, d.String())
	}
	return nil
}

// deletableManifest enforces a tag-limited content/delete on deleting
// manifest d: no tag the caller may not delete may reach it.
func (s *Service) deletableManifest(ctx context.Context, id auth.Identity, name string, d digest.Digest) error {
	check := auth.TagCheck(id, name, auth.OpDeleteManifest)
	if check == nil {
		return nil
	}
	reached, err := s.meta.Reachable(ctx, name, func(t string) bool { return check(t) != nil }, d)
	if errors.Is(err, meta.ErrReachLimit) {
		reached, err = true, nil // undecided: refuse
	}
	if err != nil {
		return err
	}
	if reached {
		return auth.ReachDenied(id, name, auth.OpDeleteManifest, d.String())
	}
	return nil
}

// visibleInList is the catalog's filter: VisibleInCatalog, and for a
// caller that may read only some tags, a tag it may read.
func (s *Service) visibleInList(ctx context.Context, id auth.Identity, name string) (bool, error) {
	if !auth.VisibleInCatalog(id, name) {
		return false, nil
	}
	f := auth.CatalogTagFilter(id, name)
	if f == nil {
		return true, nil
	}
	return s.meta.AnyTag(ctx, name, f)
}
