package main

import "testing"

func TestNextLink(t *testing.T) {
	tests := map[string]string{
		`</v2/_catalog?last=a&n=2>; rel="next"`:    "/v2/_catalog?last=a&n=2",
		`<http://h/v2/x/tags/list?n=1>;rel="next"`: "http://h/v2/x/tags/list?n=1",
		`</v2/_catalog?n=2>; rel="prev"`:           "",
		"":                                         "",
	}
	for in, want := range tests {
		if got := nextLink(in); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	scheme, p := parseChallenge(`Bearer realm="http://127.0.0.1:5000/oauth2/token",service="berth",scope="repository:a/b:pull,push"`)
	if scheme != "bearer" || p["realm"] != "http://127.0.0.1:5000/oauth2/token" || p["service"] != "berth" || p["scope"] != "repository:a/b:pull,push" {
		t.Errorf("parseChallenge = %q %v", scheme, p)
	}
	if scheme, _ := parseChallenge(`Basic realm="bench"`); scheme != "basic" {
		t.Errorf("scheme of a Basic challenge = %q", scheme)
	}
}
