package identity

import (
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// ResolveRefresh resolves the claims of a verified refresh token as
// ResolveClaims does, against the identity's current state, and returns
// the subject for the tokens the refresh issues: the same identity and
// password, with that password's current expiry, so that a renewed refresh
// token does not outlive it.
func (s *Service) ResolveRefresh(c *auth.Claims) (Login, error) {
	id, err := s.ResolveClaims(c)
	if err != nil {
		return Login{}, err
	}
	sub := auth.Subject{Kind: c.Kind, Name: c.Subject, Slot: c.Slot, Generation: c.Generation, SlotSerial: c.SlotSerial}
	if strings.HasPrefix(c.Slot, FederatedSlotPrefix) {
		// A federated login's refresh tokens are never renewed past the
		// first one's expiry, which is the JWT's: the workload proves
		// itself again with a new JWT.
		if c.ExpiresAt > 0 {
			sub.Expiry = time.Unix(c.ExpiresAt, 0)
		}
	} else if c.Kind != auth.KindUser {
		s.mu.RLock()
		p := s.tokens[c.Subject]
		if c.Kind == auth.KindAdmin {
			p = s.admin
		}
		var sl *slot
		if p != nil {
			sl = p.slots[c.Slot]
		}
		if sl == nil || sl.serial != c.SlotSerial {
			// Changed since ResolveClaims looked: as if it had seen it.
			s.mu.RUnlock()
			return Login{}, authErr(c.Slot + " regenerated or deleted")
		}
		sub.Expiry = sl.expiresAt
		s.mu.RUnlock()
	}
	return Login{Identity: id, Subject: sub}, nil
}
