package netrule

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"10.1.0.0/16", "10.1.0.0/16", false},
		{"10.1.2.3/16", "10.1.0.0/16", false},
		{"192.0.2.7", "192.0.2.7/32", false},
		{" 192.0.2.7 ", "192.0.2.7/32", false},
		{"2001:db8::1", "2001:db8::1/128", false},
		{"2001:db8::/32", "2001:db8::/32", false},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", false},
		{"::ffff:192.0.2.7", "192.0.2.7/32", false},
		{"0.0.0.0/0", "0.0.0.0/0", false},
		{"::/0", "::/0", false},
		{"::ffff:0.0.0.0/90", "", true},
		{"fe80::1%eth0", "", true},
		{"10.0.0.0/33", "", true},
		{"example.com", "", true},
		{"", "", true},
		{"10.0.0.0/8/8", "", true},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParsePrefix(%q) = %v, want an error", tt.in, p)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

func mustSet(t testing.TB, rules ...string) *Set {
	var ps []netip.Prefix
	for _, r := range rules {
		p, err := ParsePrefix(r)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return NewSet(ps)
}

func TestSetContains(t *testing.T) {
	s := mustSet(t, "10.1.0.0/16", "192.0.2.7", "10.1.5.0/24", "10.2.0.0/16", "10.3.0.0/16",
		"2001:db8::/32", "2001:db9::1", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124")
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.0.0", true}, {"10.1.255.255", true}, {"10.0.255.255", false}, {"10.2.128.1", true},
		{"10.3.255.255", true}, {"10.4.0.0", false}, {"192.0.2.7", true}, {"192.0.2.6", false},
		{"192.0.2.8", false}, {"::ffff:192.0.2.7", true}, {"::ffff:10.1.2.3", true},
		{"2001:db8:ffff::1", true}, {"2001:db9::1", true}, {"2001:db9::2", false}, {"2001:db7::", false},
		{"255.255.255.255", true}, {"255.255.255.254", false}, {"0.0.0.0", false},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"::", false}, {"127.0.0.1", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		if got := s.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	// 10.1/16 swallows 10.1.5/24; 10.1, 10.2 and 10.3 are adjacent: one range.
	if n := len(s.v4); n != 3 {
		t.Errorf("v4 ranges %v, want 3 merged", s.v4)
	}
	if all := mustSet(t, "0.0.0.0/0", "::/0"); !all.Contains(netip.MustParseAddr("203.0.113.9")) || !all.Contains(netip.MustParseAddr("2001:db8::9")) {
		t.Error("/0 must contain everything")
	}
	var empty *Set
	if empty.Contains(netip.MustParseAddr("127.0.0.1")) || NewSet(nil).Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty set contains nothing")
	}
}

// TestSetAgainstLinearScan checks the binary search against the obvious
// answer for random rules and addresses.
func TestSetAgainstLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ps []netip.Prefix
	for range 2000 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.IntN(4)) // a small space, so rules overlap
		}
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(b), 24+r.IntN(9)).Masked())
		var b6 [16]byte
		b6[0], b6[15] = 0x20, byte(r.IntN(256))
		b6[14] = byte(r.IntN(4))
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b6), 112+r.IntN(17)).Masked())
	}
	s := NewSet(ps)
	for range 20000 {
		var a netip.Addr
		if r.IntN(2) == 0 {
			var b [4]byte
			for i := range b {
				b[i] = byte(r.IntN(4))
			}
			a = netip.AddrFrom4(b)
		} else {
			var b6 [16]byte
			b6[0], b6[15], b6[14] = 0x20, byte(r.IntN(256)), byte(r.IntN(5))
			a = netip.AddrFrom16(b6)
		}
		want := false
		for _, p := range ps {
			if p.Contains(a) {
				want = true
				break
			}
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("Contains(%s) = %v, linear scan says %v", a, got, want)
		}
	}
}

// BenchmarkContains looks addresses up in sets of 10 and 10,000 rules:
// the cost grows with the logarithm of the ranges, not with the rules.
func BenchmarkContains(b *testing.B) {
	for _, n := range []int{10, 10000} {
		r := rand.New(rand.NewPCG(3, 4))
		var ps []netip.Prefix
		for range n {
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), 0}), 24))
		}
		s := NewSet(ps)
		addrs := make([]netip.Addr, 1024)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				s.Contains(addrs[i%len(addrs)])
			}
		})
	}
}
