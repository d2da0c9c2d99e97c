package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// loginProbes is how many logins of each kind failedLogins times per
// repetition.
const loginProbes = 15

// loginCosts are the median times of single logins at the token endpoint,
// one at a time, by kind.
type loginCosts struct {
	unknown, tokenWrong, userWrong, tokenRight time.Duration
}

// failedLogins times failed logins of each kind (an unknown name, a
// token's wrong password, a user's wrong password) and, for comparison, a
// token's right password: a failure must cost the same whatever the name,
// or the time tells which names exist. Each probe is one request, alone,
// from its own loopback address and, for the failures, for a name nobody
// failed for before: the brute-force limiter, which counts failures per
// name and per address, then neither refuses nor slows any of them.
func (b *bench) failedLogins(ctx context.Context, s *subject, rep int) (loginCosts, error) {
	c := s.token
	if c.scheme != "bearer" {
		return loginCosts{}, fmt.Errorf("%s has no token endpoint", s.f.label)
	}
	tokens := make([]string, loginProbes)
	users := make([]string, loginProbes)
	for i := range loginProbes {
		var err error
		if tokens[i], _, err = createNamedToken(ctx, b.small, s.auth, fmt.Sprintf("probe-%d-%d", rep, i)); err != nil {
			return loginCosts{}, err
		}
		users[i] = fmt.Sprintf("probe-user-%d-%d", rep, i)
		if err := createUser(ctx, b.small, s.auth, users[i]); err != nil {
			return loginCosts{}, err
		}
	}
	u := c.tokenURL("")
	var unknown, tokenWrong, userWrong, tokenRight []time.Duration
	for i := range loginProbes {
		for k, p := range []struct {
			into       *[]time.Duration
			user, pass string
			status     int
		}{
			{&unknown, fmt.Sprintf("nobody-%d-%d", rep, i), "a-wrong-password", http.StatusUnauthorized},
			{&tokenWrong, tokens[i], "a-wrong-password", http.StatusUnauthorized},
			{&userWrong, users[i], "a-wrong-password", http.StatusUnauthorized},
			{&tokenRight, c.user, c.pass, http.StatusOK},
		} {
			from := net.IPv4(127, 77, byte(rep), byte(4*i+k+1))
			d, err := timeLogin(ctx, from, u, p.user, p.pass, p.status)
			if err != nil {
				return loginCosts{}, err
			}
			*p.into = append(*p.into, d)
		}
	}
	med := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	return loginCosts{med(unknown), med(tokenWrong), med(userWrong), med(tokenRight)}, nil
}

// timeLogin sends one token request with Basic credentials from the
// loopback address from, on a new connection, and returns how long the
// answer took.
func timeLogin(ctx context.Context, from net.IP, u, user, pass string, status int) (time.Duration, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(user, pass)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	err = expect(resp, status, "login as "+user)
	return time.Since(start), err
}

// createUser creates a user with the pull role through the REST API.
func createUser(ctx context.Context, hc *http.Client, in *instance, name string) error {
	body := `{"properties": {"role": "pull", "password": "probe-password-` + name + `"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, in.url+"/api/v1/users/"+name, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(in.user, in.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	return expect(resp, http.StatusCreated, "create user "+name)
}
