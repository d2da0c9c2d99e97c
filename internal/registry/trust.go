package registry

import (
	"context"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// CheckPull decides a manifest pull under the signature policies (package
// trust): refusal, when set, is the message of a 403 DENIED; findings are
// audit-mode policies the manifest fails, which are recorded while the
// manifest is served.
type CheckPull func(ctx context.Context, repo string, m meta.Manifest) (refusal string, findings []string, err error)

// signingTool reports whether the request comes from cosign or Notation,
// which read a manifest to sign it.
func signingTool(userAgent string) bool {
	return strings.HasPrefix(userAgent, "cosign/") || strings.HasPrefix(userAgent, "notation/")
}

// trusted applies the signature policies to a manifest GET or HEAD that
// the authorizer already allowed. A signing tool run by an identity that
// may push to the repository (it must, to attach the signature) reads the
// unsigned manifest it is about to sign; every other pull is held to the
// policies.
func (rg *Registry) trusted(req *request, m *meta.Manifest) error {
	if rg.checkPull == nil {
		return nil
	}
	if req.caller != nil && signingTool(req.r.UserAgent()) && req.caller.Can(req.rt.name, auth.OpPush) {
		return nil
	}
	refusal, findings, err := rg.checkPull(req.r.Context(), req.rt.name, *m)
	if err != nil {
		return err
	}
	tag := ""
	if !isDigest(req.rt.ref) {
		tag = req.rt.ref
	}
	for _, f := range findings {
		rg.emitTrust(req, tag, m, f, false)
	}
	if refusal != "" {
		rg.emitTrust(req, tag, m, refusal, true)
		return newError(CodeDenied, "%s", refusal)
	}
	return nil
}

// emitTrust records a signature policy's finding; a refused pull is a
// failure, an audit-mode finding a success (the pull was served).
func (rg *Registry) emitTrust(req *request, tag string, m *meta.Manifest, reason string, refused bool) {
	_ = rg.events(Event{Kind: EventTrust, Repository: req.rt.name, Tag: tag, Digest: m.Digest, Caller: req.caller, Request: req.r, Reason: reason, Refused: refused})
}

// EventTrust is the kind of the event of a signature policy's finding.
const EventTrust = "trust"
