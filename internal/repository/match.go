package repository

import (
	"context"

	"github.com/berth-registry/berth/internal/auth"
)

// MatchResult is how many repositories a scope-map pattern matches, of
// those the caller may see, with the first few names.
type MatchResult struct {
	Pattern string   `json:"pattern"`
	Count   int      `json:"count"`
	First   []string `json:"first"`
	// Partial says the count stopped at the scan limit: at least Count.
	Partial bool `json:"partial,omitempty"`
}

// matchScan bounds how many repository names one preview looks at.
const matchScan = 100000

// Match counts the repositories pattern matches among those id may see
// (as List shows them, hidden ones too for management roles), with up to
// first of their names: the scope map editor's live preview. The pattern
// is checked as a scope map checks it.
func (s *Service) Match(ctx context.Context, id auth.Identity, pattern string, first int) (MatchResult, error) {
	p, err := auth.ParsePattern(pattern)
	if err != nil {
		return MatchResult{}, err
	}
	out := MatchResult{Pattern: p.String(), First: []string{}}
	page, err := s.List(ctx, id, ListQuery{N: matchScan, IncludeHidden: true, ScanLimit: matchScan})
	if err != nil {
		return MatchResult{}, err
	}
	for _, n := range page.Names {
		if p.Matches(n) {
			out.Count++
			if len(out.First) < first {
				out.First = append(out.First, n)
			}
		}
	}
	out.Partial = page.Next != ""
	return out, nil
}
