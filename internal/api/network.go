package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/netrule"
)

// NetworkRules is what the API needs of the network rules (netrule.Service).
type NetworkRules interface {
	Settings(actor auth.Identity) (netrule.Settings, error)
	AddRules(ctx context.Context, actor auth.Identity, values []string) (netrule.Settings, error)
	RemoveRules(ctx context.Context, actor auth.Identity, values []string) (netrule.Settings, error)
	SetDefaultAction(ctx context.Context, actor auth.Identity, a netrule.Action) (netrule.Settings, error)
	TokenAddresses(actor auth.Identity, token string) ([]string, error)
	SetTokenAddresses(ctx context.Context, actor auth.Identity, token string, values []string) ([]string, error)
}

// NetworkRuleSetPatch changes the registry-wide default action.
type NetworkRuleSetPatch struct {
	DefaultAction netrule.Action `json:"defaultAction"`
}

// IPRuleList names registry-wide rules to add or remove.
type IPRuleList struct {
	IPRules []IPRule `json:"ipRules"`
}

// IPRule is one rule in a request: a CIDR or a single address.
type IPRule struct {
	IPAddressOrRange string `json:"ipAddressOrRange"`
	// Action may be omitted; it is always Allow, as in ACR.
	Action string `json:"action,omitempty"`
}

// AllowedAddresses are the addresses a token may be used from; an empty
// list lifts the restriction.
type AllowedAddresses struct {
	AllowedAddresses []string `json:"allowedAddresses"`
}

// allRoutes is the route table with the network rules' routes.
func (h *Handler) allRoutes() []route { return append(h.routes(), h.networkRoutes()...) }

func (h *Handler) networkRoutes() []route {
	rts := []route{
		{"GET /api/v1/networkRuleSet", h.getNetworkRuleSet, managementOnly},
		{"PATCH /api/v1/networkRuleSet", h.updateNetworkRuleSet, managementOnly},
		{"POST /api/v1/networkRuleSet/ipRules", h.addIPRules, managementOnly},
		{"POST /api/v1/networkRuleSet/ipRules/remove", h.removeIPRules, managementOnly},
		{"GET /api/v1/tokens/{name}/allowedAddresses", h.getAllowedAddresses, managementOnly},
		{"PUT /api/v1/tokens/{name}/allowedAddresses", h.setAllowedAddresses, managementOnly},
	}
	for i, rt := range rts {
		handle := rt.handle
		rts[i].handle = func(c *call) error {
			if h.network == nil {
				return notFound("this server keeps no network rules")
			}
			return handle(c)
		}
	}
	return rts
}

func (h *Handler) getNetworkRuleSet(c *call) error {
	s, err := h.network.Settings(c.id)
	if err != nil {
		return err
	}
	return c.ok(networkJSON(s))
}

func networkJSON(s netrule.Settings) netrule.Settings {
	if s.IPRules == nil {
		s.IPRules = []netrule.Rule{}
	}
	return s
}

func (h *Handler) updateNetworkRuleSet(c *call) error {
	var req NetworkRuleSetPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.DefaultAction == "" {
		return badRequest("defaultAction is required: Allow or Deny")
	}
	s, err := h.network.SetDefaultAction(c.ctx(), c.id, req.DefaultAction)
	if err != nil {
		return err
	}
	return c.ok(networkJSON(s))
}

func (l IPRuleList) values() ([]string, error) {
	var out []string
	for _, r := range l.IPRules {
		if r.Action != "" && r.Action != string(netrule.Allow) {
			return nil, badRequest("rule %q: action %q is not supported: rules allow (Allow), and the default action denies the rest", r.IPAddressOrRange, r.Action)
		}
		out = append(out, r.IPAddressOrRange)
	}
	return out, nil
}

func (h *Handler) addIPRules(c *call) error {
	var req IPRuleList
	if err := c.decode(&req); err != nil {
		return err
	}
	v, err := req.values()
	if err != nil {
		return err
	}
	s, err := h.network.AddRules(c.ctx(), c.id, v)
	if err != nil {
		return err
	}
	return c.ok(networkJSON(s))
}

// removeIPRules is a POST rather than a DELETE with a body, which
// proxies and clients are free to drop.
func (h *Handler) removeIPRules(c *call) error {
	var req IPRuleList
	if err := c.decode(&req); err != nil {
		return err
	}
	v, err := req.values()
	if err != nil {
		return err
	}
	s, err := h.network.RemoveRules(c.ctx(), c.id, v)
	if err != nil {
		return err
	}
	return c.ok(networkJSON(s))
}

func (h *Handler) getAllowedAddresses(c *call) error {
	a, err := h.network.TokenAddresses(c.id, c.r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.ok(AllowedAddresses{AllowedAddresses: nonNil(a)})
}

func (h *Handler) setAllowedAddresses(c *call) error {
	var req AllowedAddresses
	if err := c.decode(&req); err != nil {
		return err
	}
	a, err := h.network.SetTokenAddresses(c.ctx(), c.id, c.r.PathValue("name"), req.AllowedAddresses)
	if err != nil {
		return err
	}
	return c.ok(AllowedAddresses{AllowedAddresses: nonNil(a)})
}

func nonNil(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

// networkDenied answers a caller whose token may not be used from its
// address: 403, never 401, since the credentials are right.
func networkDenied(w http.ResponseWriter, err error) bool {
	var d *netrule.Denied
	if !errors.As(err, &d) {
		return false
	}
	writeJSONError(w, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: d.Error()})
	return true
}
