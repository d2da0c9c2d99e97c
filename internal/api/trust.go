package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/trust"
)

// TypeTrustPolicies is the resource type of signature policies.
const TypeTrustPolicies = "trustPolicies"

// TrustPolicy is a signature policy resource.
type TrustPolicy struct {
	ID         string                `json:"id"`
	Name       string                `json:"name"`
	Type       string                `json:"type"`
	Properties TrustPolicyProperties `json:"properties"`
}

// TrustPolicyProperties are a signature policy's settings.
type TrustPolicyProperties struct {
	// Repository is a repository pattern: "team/app", "team/*" or "*".
	Repository string `json:"repository"`
	// Require is cosign, notation or any.
	Require string `json:"require"`
	// Mode is enforce (refuse unsigned pulls) or audit (serve and record).
	Mode string `json:"mode"`
	// Keys are PEM public keys (cosign).
	Keys []string `json:"keys"`
	// Certificates are PEM certificates (Notation's trust store; roots of
	// cosign certificates).
	Certificates []string `json:"certificates"`
	// TrustedIdentities are Notation trusted identities; empty means any.
	TrustedIdentities []string  `json:"trustedIdentities"`
	Version           int64     `json:"version"`
	CreationDate      time.Time `json:"creationDate"`
	LastUpdateDate    time.Time `json:"lastUpdateDate"`
}

// TrustPolicyCreate is the body of PUT /api/v1/trustPolicies/{name}.
type TrustPolicyCreate struct {
	Properties struct {
		Repository        string   `json:"repository"`
		Require           string   `json:"require"`
		Mode              string   `json:"mode"`
		Keys              []string `json:"keys"`
		Certificates      []string `json:"certificates"`
		TrustedIdentities []string `json:"trustedIdentities"`
	} `json:"properties"`
}

// TrustPolicyPatch is the body of PATCH /api/v1/trustPolicies/{name};
// absent fields are left alone, lists are replaced whole.
type TrustPolicyPatch struct {
	Properties struct {
		Repository        *string   `json:"repository"`
		Require           *string   `json:"require"`
		Mode              *string   `json:"mode"`
		Keys              *[]string `json:"keys"`
		Certificates      *[]string `json:"certificates"`
		TrustedIdentities *[]string `json:"trustedIdentities"`
	} `json:"properties"`
}

func trustPolicyJSON(p trust.Policy) TrustPolicy {
	nonNil := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return TrustPolicy{ID: "/" + TypeTrustPolicies + "/" + p.Name, Name: p.Name, Type: TypeTrustPolicies, Properties: TrustPolicyProperties{
		Repository: p.Repository, Require: string(p.Require), Mode: string(p.Mode), Keys: nonNil(p.Keys), Certificates: nonNil(p.Certificates),
		TrustedIdentities: nonNil(p.TrustedIdentities), Version: p.Version, CreationDate: p.CreatedAt, LastUpdateDate: p.UpdatedAt,
	}}
}

// trustError maps the trust service's errors to API errors.
func trustError(err error) error {
	switch {
	case errors.Is(err, trust.ErrInvalid):
		return badRequest("%v", err)
	case errors.Is(err, trust.ErrNotFound):
		return notFound("%v", err)
	case errors.Is(err, trust.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error() + ": change it with PATCH, or delete it first"}
	case errors.Is(err, trust.ErrForbidden):
		return forbidden("%v", err)
	}
	return err
}

func (h *Handler) trustService() (*trust.Service, error) {
	if h.trust == nil {
		return nil, notFound("signature policies are not served here")
	}
	return h.trust, nil
}

func (h *Handler) listTrustPolicies(c *call) error {
	t, err := h.trustService()
	if err != nil {
		return err
	}
	ps, err := t.List(c.ctx(), c.id)
	if err != nil {
		return trustError(err)
	}
	out := List[TrustPolicy]{Value: make([]TrustPolicy, 0, len(ps))}
	for _, p := range ps {
		out.Value = append(out.Value, trustPolicyJSON(p))
	}
	return c.ok(out)
}

func (h *Handler) getTrustPolicy(c *call) error {
	t, err := h.trustService()
	if err != nil {
		return err
	}
	p, err := t.Get(c.ctx(), c.id, c.r.PathValue("name"))
	if err != nil {
		return trustError(err)
	}
	return c.ok(trustPolicyJSON(p))
}

func (h *Handler) createTrustPolicy(c *call) error {
	t, err := h.trustService()
	if err != nil {
		return err
	}
	var req TrustPolicyCreate
	if err := c.decode(&req); err != nil {
		return err
	}
	q := req.Properties
	p, err := t.Create(c.ctx(), c.id, trust.Policy{Name: c.r.PathValue("name"), Repository: q.Repository, Require: trust.Require(q.Require), Mode: trust.Mode(q.Mode),
		Keys: q.Keys, Certificates: q.Certificates, TrustedIdentities: q.TrustedIdentities})
	if err != nil {
		return trustError(err)
	}
	return c.created(trustPolicyJSON(p))
}

func (h *Handler) updateTrustPolicy(c *call) error {
	t, err := h.trustService()
	if err != nil {
		return err
	}
	var req TrustPolicyPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	p, err := t.Get(c.ctx(), c.id, c.r.PathValue("name"))
	if err != nil {
		return trustError(err)
	}
	q := req.Properties
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Repository, q.Repository)
	if q.Require != nil {
		p.Require = trust.Require(*q.Require)
	}
	if q.Mode != nil {
		p.Mode = trust.Mode(*q.Mode)
	}
	if q.Keys != nil {
		p.Keys = *q.Keys
	}
	if q.Certificates != nil {
		p.Certificates = *q.Certificates
	}
	if q.TrustedIdentities != nil {
		p.TrustedIdentities = *q.TrustedIdentities
	}
	created := p.CreatedAt
	p, err = t.Update(c.ctx(), c.id, p)
	if err != nil {
		return trustError(err)
	}
	p.CreatedAt = created
	return c.ok(trustPolicyJSON(p))
}

func (h *Handler) deleteTrustPolicy(c *call) error {
	t, err := h.trustService()
	if err != nil {
		return err
	}
	if err := t.Delete(c.ctx(), c.id, c.r.PathValue("name")); err != nil {
		return trustError(err)
	}
	return c.noContent()
}
