// Package netrule holds berth's network rules: registry-wide rules with a
// default action (after ACR's network rule set), and the addresses each
// token may be used from. Rules are prefixes (CIDRs, or single addresses);
// looking an address up costs a binary search, so thousands of rules cost
// what a few do.
package netrule

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ParsePrefix parses a rule: a CIDR or a single address, IPv4 or IPv6. An
// IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) is the IPv4 prefix it
// maps, host bits are cleared and zones are refused, so that equal rules
// have one spelling.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR range (e.g. 10.1.0.0/16, 192.0.2.7, 2001:db8::/32)", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR range (e.g. 10.1.0.0/16, 192.0.2.7, 2001:db8::/32)", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped range needs at least 96 bits", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Normalize returns the address as rules see it: IPv4-mapped IPv6
// addresses as IPv4, without a zone.
func Normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

type range4 struct{ first, last uint32 }
type range6 struct{ first, last u128 }

// Set is a set of prefixes as sorted, disjoint, merged address ranges per
// address family; Contains is a binary search. It is immutable.
type Set struct {
	v4 []range4
	v6 []range6
}

// NewSet returns the set of addresses the prefixes cover.
func NewSet(prefixes []netip.Prefix) *Set {
	s := &Set{}
	for _, p := range prefixes {
		p = p.Masked()
		a := p.Addr()
		if a.Is4() {
			first := binary.BigEndian.Uint32(a.AsSlice())
			last := first | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, range4{first, last})
			continue
		}
		first := u128Of(a)
		host := 128 - p.Bits()
		last := first
		switch {
		case host >= 64:
			last.lo = ^uint64(0)
			last.hi |= uint64(1)<<(host-64) - 1
			if host == 128 {
				last.hi = ^uint64(0)
			}
		default:
			last.lo |= uint64(1)<<host - 1
		}
		s.v6 = append(s.v6, range6{first, last})
	}
	slices.SortFunc(s.v4, func(a, b range4) int { return cmp.Compare(a.first, b.first) })
	s.v4 = merge4(s.v4)
	slices.SortFunc(s.v6, func(a, b range6) int { return a.first.cmp(b.first) })
	s.v6 = merge6(s.v6)
	return s
}

func merge4(rs []range4) []range4 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].last == ^uint32(0) || r.first <= out[n-1].last+1) {
			out[n-1].last = max(out[n-1].last, r.last)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []range6) []range6 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			nx, ok := out[n-1].last.next()
			if !ok || r.first.cmp(nx) <= 0 {
				if r.last.cmp(out[n-1].last) > 0 {
					out[n-1].last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// Contains reports whether a (normalised first) is in the set.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil || !a.IsValid() {
		return false
	}
	a = Normalize(a)
	if a.Is4() {
		v := binary.BigEndian.Uint32(a.AsSlice())
		// The first range starting after v; the one before may hold v.
		i, _ := slices.BinarySearchFunc(s.v4, v, func(r range4, v uint32) int {
			if r.first <= v {
				return -1
			}
			return 1
		})
		return i > 0 && v <= s.v4[i-1].last
	}
	v := u128Of(a)
	i, _ := slices.BinarySearchFunc(s.v6, v, func(r range6, v u128) int {
		if r.first.cmp(v) <= 0 {
			return -1
		}
		return 1
	})
	return i > 0 && v.cmp(s.v6[i-1].last) <= 0
}

// Ranges is how many disjoint ranges the set holds.
func (s *Set) Ranges() int {
	if s == nil {
		return 0
	}
	return len(s.v4) + len(s.v6)
}
