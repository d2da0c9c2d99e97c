package api

import (
	"time"

	"github.com/berth-registry/berth/internal/identity"
)

func (h *Handler) listTokens(c *call) error {
	f, err := identity.ParseTokenFilter(c.r.URL.Query())
	if err != nil {
		return err
	}
	tokens, err := h.ids.ListTokens(c.id)
	if err != nil {
		return err
	}
	tokens = identity.FilterTokens(tokens, f, time.Now())
	out := List[Token]{Value: make([]Token, 0, len(tokens))}
	for _, t := range tokens {
		out.Value = append(out.Value, tokenJSON(t, nil))
	}
	return c.ok(out)
}

func (h *Handler) getToken(c *call) error {
	t, err := h.ids.GetToken(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(tokenJSON(t, nil))
}

// createToken creates a token bound to an existing scope map, or (berth's
// extension) to a new one made from scopeMapActions, and generates the
// passwords asked for, all in one transaction.
func (h *Handler) createToken(c *call) error {
	var req TokenCreate
	if err := c.decode(&req); err != nil {
		return err
	}
	p := req.Properties
	spec := identity.TokenSpec{Name: c.r.PathValue("name"), Actions: p.ScopeMapActions, Tags: p.ScopeMapTags, Status: p.Status}
	if p.ScopeMapID != "" {
		name, err := resourceName(TypeScopeMaps, "scopeMapId", p.ScopeMapID)
		if err != nil {
			return err
		}
		spec.ScopeMap = name
	}
	var expiry *time.Time
	for i, pw := range p.Credentials.Passwords {
		spec.Passwords = append(spec.Passwords, pw.Name)
		if i > 0 && !sameTime(expiry, pw.Expiry) {
			return badRequest("the passwords generated with a new token share one expiry; generate them one at a time with POST %sgenerateCredentials to give them different ones", Prefix)
		}
		expiry = pw.Expiry
	}
	if expiry != nil {
		spec.Expiry = *expiry
	}
	t, creds, err := h.ids.CreateToken(c.ctx(), c.id, spec)
	if err != nil {
		return err
	}
	return c.created(tokenJSON(t, creds))
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func (h *Handler) updateToken(c *call) error {
	var req TokenPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	u := identity.TokenUpdate{Status: req.Properties.Status}
	if req.Properties.ScopeMapID != nil {
		name, err := resourceName(TypeScopeMaps, "scopeMapId", *req.Properties.ScopeMapID)
		if err != nil {
			return err
		}
		u.ScopeMap = &name
	}
	t, err := h.ids.UpdateToken(c.ctx(), c.id, c.r.PathValue("name"), u)
	if err != nil {
		return err
	}
	return c.ok(tokenJSON(t, nil))
}

func (h *Handler) deleteToken(c *call) error {
	if err := h.ids.DeleteToken(c.ctx(), c.id, c.r.PathValue("name")); err != nil {
		return err
	}
	return c.noContent()
}

func (h *Handler) deletePassword(c *call) error {
	t, err := h.ids.DeletePassword(c.ctx(), c.id, c.r.PathValue("name"), c.r.PathValue("password"))
	if err != nil {
		return err
	}
	return c.ok(tokenJSON(t, nil))
}

func (h *Handler) generateCredentials(c *call) error {
	var req GenerateCredentialsRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.TokenID == "" {
		return badRequest("tokenId is required: name the token as \"/tokens/NAME\" or \"NAME\"")
	}
	name, err := resourceName(TypeTokens, "tokenId", req.TokenID)
	if err != nil {
		return err
	}
	var slots []string
	if req.Name != "" {
		slots = []string{req.Name}
	}
	var expiry time.Time
	if req.Expiry != nil {
		expiry = *req.Expiry
	}
	creds, err := h.ids.GenerateCredentials(c.ctx(), c.id, name, slots, expiry)
	if err != nil {
		return err
	}
	return c.ok(credentialsJSON(creds))
}
