package main

import "testing"

// TestSaveKeepsTheCurrentServer saves logins as `berth login` does and as a
// renewed refresh token does: renewing must not make the server stop being
// the current one.
func TestSaveKeepsTheCurrentServer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current string
		server  string
		makeCur bool
		want    string
	}{
		{"login makes its server current", "https://a.example", "https://b.example", true, "https://b.example"},
		{"renewal keeps the current server", "https://a.example", "https://a.example", false, "https://a.example"},
		{"renewal of another server changes nothing", "https://a.example", "https://b.example", false, "https://a.example"},
		{"renewal with no current server", "", "https://a.example", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := loginFile{Current: tc.current, Logins: []savedLogin{{Server: "https://a.example", RefreshToken: "old"}, {Server: "https://b.example", RefreshToken: "old"}}}
			f.save(savedLogin{Server: tc.server, RefreshToken: "new"}, tc.makeCur)
			if f.Current != tc.want {
				t.Errorf("current %q, want %q", f.Current, tc.want)
			}
			if l := f.login(tc.server); l == nil || l.RefreshToken != "new" || len(f.Logins) != 2 {
				t.Errorf("logins %+v", f.Logins)
			}
		})
	}
}
