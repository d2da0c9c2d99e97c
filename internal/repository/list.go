package repository

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// Sort orders of ListDetailed.
const (
	SortName       = "name"
	SortLastPushed = "lastPushed" // newest first
	SortCreated    = "created"    // newest first
)

// PageSizes are the page sizes a detailed list offers.
var PageSizes = []int{25, 50, 100, 200}

// DetailQuery selects a page of the detailed repository list.
type DetailQuery struct {
	Sort     string // SortName (default), SortLastPushed or SortCreated
	Page     int    // from 1
	PageSize int    // one of PageSizes; 50 by default
	Contains string
	// IncludeHidden, as in ListQuery.
	IncludeHidden bool
}

// DetailRow is a repository with its stats and, where the audit log can
// count them, its pulls.
type DetailRow struct {
	meta.RepositoryStats
	// Pulls counts the manifest pulls the audit log holds (within its
	// retention); -1 when there is no audit log to count them.
	Pulls int64
}

// DetailPage is a page of the detailed list.
type DetailPage struct {
	Rows  []DetailRow
	Total int // repositories matching, on every page
	Page  int
	Pages int
}

// statsStore is what ListDetailed needs beyond Metadata (*meta.Store
// has it).
type statsStore interface {
	AllRepositoryStats(ctx context.Context) ([]meta.RepositoryStats, error)
}

// pullCounter is what ListDetailed needs of the audit log to count pulls
// (*audit.Log has it).
type pullCounter interface {
	Count(ctx context.Context, f audit.Filter) (int64, error)
}

// ErrNoStats says the metadata store cannot list repository stats.
var ErrNoStats = errors.New("this metadata store keeps no repository statistics")

// ParseSort checks a sort order.
func ParseSort(s string) (string, error) {
	switch s {
	case "", SortName:
		return SortName, nil
	case SortLastPushed, SortCreated:
		return s, nil
	}
	return "", fmt.Errorf("invalid sort %q: use name, lastPushed or created", s)
}

// ListDetailed lists the repositories id may see (as List does), with
// their creation and last push times, size and pulls, sorted and paged,
// with the total count.
func (s *Service) ListDetailed(ctx context.Context, id auth.Identity, q DetailQuery) (DetailPage, error) {
	if !auth.CanListCatalog(id) {
		return DetailPage{}, &CatalogDeniedError{Identity: id}
	}
	st, ok := s.meta.(statsStore)
	if !ok {
		return DetailPage{}, ErrNoStats
	}
	sortBy, err := ParseSort(q.Sort)
	if err != nil {
		return DetailPage{}, err
	}
	if !slices.Contains(PageSizes, q.PageSize) {
		q.PageSize = 50
	}
	all, err := st.AllRepositoryStats(ctx)
	if err != nil {
		return DetailPage{}, err
	}
	hidden := q.IncludeHidden && auth.CanManage(id, auth.ViewManagement)
	contains := strings.ToLower(q.Contains)
	rows := all[:0]
	for _, r := range all {
		if !(r.Listed || hidden) || !strings.Contains(r.Name, contains) {
			continue
		}
		// As List: a reader of some tags only sees where it can read one.
		ok, err := s.visibleInList(ctx, id, r.Name)
		if err != nil {
			return DetailPage{}, err
		}
		if ok {
			rows = append(rows, r)
		}
	}
	newest := func(a, b time.Time, an, bn string) int {
		if c := b.Compare(a); c != 0 {
			return c
		}
		return strings.Compare(an, bn)
	}
	switch sortBy {
	case SortLastPushed:
		slices.SortStableFunc(rows, func(a, b meta.RepositoryStats) int { return newest(a.LastPushed, b.LastPushed, a.Name, b.Name) })
	case SortCreated:
		slices.SortStableFunc(rows, func(a, b meta.RepositoryStats) int { return newest(a.CreatedAt, b.CreatedAt, a.Name, b.Name) })
	}
	p := DetailPage{Total: len(rows), Pages: max(1, (len(rows)+q.PageSize-1)/q.PageSize), Page: max(1, q.Page)}
	p.Page = min(p.Page, p.Pages)
	start := (p.Page - 1) * q.PageSize
	end := min(start+q.PageSize, len(rows))
	pc, counts := s.audit.(pullCounter)
	for _, r := range rows[start:end] {
		row := DetailRow{RepositoryStats: r, Pulls: -1}
		if counts {
			if row.Pulls, err = pc.Count(ctx, audit.Filter{Kind: audit.KindPull, Result: audit.ResultSuccess, Repository: r.Name}); err != nil {
				return DetailPage{}, err
			}
		}
		p.Rows = append(p.Rows, row)
	}
	return p, nil
}
