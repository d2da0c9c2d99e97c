package publicurl

import (
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	r, err := New("", []string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		peer, xff, want string
	}{
		{"203.0.113.9:1234", "", "203.0.113.9"},
		{"203.0.113.9:1234", "198.51.100.1", "203.0.113.9"}, // untrusted peer: header ignored
		{"10.1.2.3:80", "198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:80", "6.6.6.6, 198.51.100.1", "198.51.100.1"},   // left part is the client's word
		{"10.1.2.3:80", "198.51.100.1, 192.0.2.1", "198.51.100.1"}, // skip trusted hops
		{"10.1.2.3:80", "not-an-ip, 198.51.100.1", "198.51.100.1"}, // garbage further left is ignored
		{"10.1.2.3:80", "198.51.100.1, not-an-ip", "10.1.2.3"},     // garbage at the right: keep the proxy
		{"10.1.2.3:80", "", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:80", "2001:db8::1", "2001:db8::1"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tt.peer
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := r.ClientIP(req); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}

func TestBase(t *testing.T) {
	r, _ := New("", []string{"10.0.0.0/8"})
	req := httptest.NewRequest("GET", "/v2/", nil)
	req.Host = "registry.example:5000"
	req.RemoteAddr = "203.0.113.9:1"
	req.Header.Set("X-Forwarded-Proto", "https")
	if got := r.Base(req); got != "http://registry.example:5000" {
		t.Errorf("untrusted forwarded proto believed: %s", got)
	}
	req.RemoteAddr = "10.0.0.1:1"
	req.Header.Set("X-Forwarded-Host", "public.example")
	if got := r.Base(req); got != "https://public.example" {
		t.Errorf("trusted proxy: %s", got)
	}
	req.Host = "evil\r\nx"
	req.Header.Del("X-Forwarded-Host")
	if got := r.Base(req); got != "https://localhost" {
		t.Errorf("bad host: %s", got)
	}
}
