// Package publicurl works out the URL clients use to reach berth, for
// challenges, Location headers and printed login commands.
package publicurl

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver gives a request's base URL: the configured one, or one derived
// from the request, believing X-Forwarded-Proto/-Host only from trusted proxies.
type Resolver struct {
	fixed   string
	trusted []netip.Prefix
}

// New returns a Resolver. fixed may be empty; trusted holds IPs or CIDRs.
func New(fixed string, trusted []string) (*Resolver, error) {
	r := &Resolver{fixed: strings.TrimSuffix(fixed, "/")}
	for _, t := range trusted {
		if p, err := netip.ParsePrefix(t); err == nil {
			r.trusted = append(r.trusted, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(t)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or CIDR", t)
		}
		r.trusted = append(r.trusted, netip.PrefixFrom(a, a.BitLen()))
	}
	return r, nil
}

// Fixed returns the configured public URL, or "".
func (r *Resolver) Fixed() string { return r.fixed }

// Base returns the scheme and host clients used for req, without a trailing slash.
func (r *Resolver) Base(req *http.Request) string {
	if r.fixed != "" {
		return r.fixed
	}
	scheme, host := "http", req.Host
	if req.TLS != nil {
		scheme = "https"
	}
	if r.fromTrustedProxy(req) {
		if p := firstValue(req.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(req.Header.Get("X-Forwarded-Host")); h != "" && validHost(h) {
			host = h
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + host
}

// Host returns the host[:port] part of Base, as `docker login` wants it.
func (r *Resolver) Host(req *http.Request) string {
	b := r.Base(req)
	if i := strings.Index(b, "://"); i >= 0 {
		b = b[i+3:]
	}
	return b
}

func (r *Resolver) fromTrustedProxy(req *http.Request) bool {
	return r.trustedAddr(peer(req.RemoteAddr))
}

func (r *Resolver) trustedAddr(s string) bool {
	if len(r.trusted) == 0 {
		return false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peer(remoteAddr string) string {
	h, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return h
}

// ClientIP is the address of the client behind req: the peer, or, when the
// peer is a trusted proxy, the right-most X-Forwarded-For entry that is not
// itself a trusted proxy. Entries further left were written by the client
// and prove nothing. Brute-force limits and audit records use it.
func (r *Resolver) ClientIP(req *http.Request) string {
	ip := peer(req.RemoteAddr)
	if !r.trustedAddr(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		a, err := netip.ParseAddr(h)
		if err != nil {
			break // garbage: stop at the last address we could trust
		}
		ip = a.Unmap().String()
		if !r.trustedAddr(ip) {
			return ip
		}
	}
	return ip
}

func firstValue(s string) string {
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// validHost keeps header injection and odd characters out of URLs we print.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]_", c)) {
			return false
		}
	}
	return true
}
