package identity

import "github.com/berth-registry/berth/internal/auth"

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
	if c.Kind != auth.KindUser {
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
