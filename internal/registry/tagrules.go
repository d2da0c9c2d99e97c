package registry

import (
	"context"
	"errors"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// Tag rules: a scope map may limit its rules to tag patterns, which the
// Docker token grammar cannot carry, so the registry asks the caller
// (Caller.TagCheck, which is auth's decision) on every manifest and tag
// request, against the scope map as it is now.

// tagCheck is the caller's check of op on the tags of the request's
// repository, or nil when op is allowed on every tag.
func (req *request) tagCheck(op auth.Operation) func(string) error {
	if req.caller == nil {
		return nil
	}
	return req.caller.TagCheck(req.rt.name, op)
}

// tagDenied is the 403 of a tag rule.
func tagDenied(err error) *Error {
	return &Error{Code: CodeDenied, Message: "requested access to the resource is denied: " + err.Error()}
}

// denialRecorder is a Caller that records refusals in the audit log.
type denialRecorder interface {
	RecordDenial(r *http.Request, err error)
}

// refuse is the 403 of a tag rule, recorded as a denial.
func (req *request) refuse(err error) *Error {
	if dr, ok := req.caller.(denialRecorder); ok {
		dr.RecordDenial(req.r, err)
	}
	return tagDenied(err)
}

// allowedFrom turns a tag check into the set of tags it allows.
func allowedFrom(check func(string) error) func(string) bool {
	return func(tag string) bool { return check(tag) == nil }
}

// deniedFrom is the set of tags a check refuses.
func deniedFrom(check func(string) error) func(string) bool {
	return func(tag string) bool { return check(tag) != nil }
}

// readableDigest enforces a tag-limited content/read on a manifest asked
// for by digest: it must be reachable from a tag the caller may pull
// (meta.Store.Reachable says what reachable means).
func (rg *Registry) readableDigest(ctx context.Context, req *request, d digest.Digest) error {
	check := req.tagCheck(auth.OpPull)
	if check == nil {
		return nil
	}
	ok, err := rg.meta.Reachable(ctx, req.rt.name, allowedFrom(check), d)
	if err != nil && !errors.Is(err, meta.ErrReachLimit) {
		return err
	}
	if !ok {
		return req.refuse(denial(req, auth.OpPull, d))
	}
	return nil
}

// deletableDigest enforces a tag-limited content/delete on deleting a
// manifest by digest: no tag the caller may not delete may reach it, so
// that deleting never takes an image, a platform image or a signature away
// from a tag the scope map does not cover.
func (rg *Registry) deletableDigest(ctx context.Context, req *request, d digest.Digest) error {
	check := req.tagCheck(auth.OpDeleteManifest)
	if check == nil {
		return nil
	}
	reached, err := rg.meta.Reachable(ctx, req.rt.name, deniedFrom(check), d)
	if errors.Is(err, meta.ErrReachLimit) {
		reached, err = true, nil // undecided: refuse
	}
	if err != nil {
		return err
	}
	if reached {
		return req.refuse(denial(req, auth.OpDeleteManifest, d))
	}
	return nil
}

// filterTags keeps the tags check allows.
func filterTags(tags []string, check func(string) error) []string {
	out := tags[:0]
	for _, t := range tags {
		if check(t) == nil {
			out = append(out, t)
		}
	}
	return out
}

// denial is auth's message for op refused on manifest d by tag rules,
// naming the caller as auth does where the caller is auth's.
func denial(req *request, op auth.Operation, d digest.Digest) error {
	if ider, ok := req.caller.(interface{ Identity() auth.Identity }); ok {
		return auth.ReachDenied(ider.Identity(), req.rt.name, op, d.String())
	}
	return auth.ReachDenied(auth.Identity{Kind: auth.KindToken, Name: req.caller.Name()}, req.rt.name, op, d.String())
}
