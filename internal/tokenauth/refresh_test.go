package tokenauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/publicurl"
	"github.com/berth-registry/berth/internal/testutil"
	"github.com/berth-registry/berth/internal/tokenauth"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

const (
	ownerPassword = "owner-password-1"
	refreshTTL    = 2 * time.Minute
	day           = 24 * time.Hour
)

type endpoint struct {
	t   *testing.T
	clk *clock
	id  *identity.Service
	h   http.Handler
}

// newEndpoint serves the token endpoint of a fresh identity service on a
// clock the test moves, with a refresh-token lifetime of refreshTTL.
func newEndpoint(t *testing.T) *endpoint {
	t.Helper()
	clk := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	ids := testutil.NewStores(t, ownerPassword, func(o *identity.Options) {
		o.RegistryName, o.OwnerUsername = "berth", "owner"
		o.AccessTTL, o.RefreshTTL, o.Now = time.Minute, refreshTTL, clk.now
	}).Identity
	urls, err := publicurl.New("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &endpoint{t: t, clk: clk, id: ids, h: tokenauth.New(tokenauth.Options{Identity: ids, URLs: urls, Now: clk.now})}
}

type grant struct {
	status       int
	body         string
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (e *endpoint) post(form url.Values) grant {
	e.t.Helper()
	form.Set("service", "berth")
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	g := grant{status: rec.Code, body: rec.Body.String()}
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &g); err != nil {
			e.t.Fatal(err)
		}
	}
	return g
}

// login is docker login: a password grant with offline access.
func (e *endpoint) login(user, password string) string {
	e.t.Helper()
	g := e.post(url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}, "access_type": {"offline"}, "client_id": {"docker"}})
	if g.status != http.StatusOK || g.RefreshToken == "" {
		e.t.Fatalf("login as %s: %d %s", user, g.status, g.body)
	}
	return g.RefreshToken
}

// refresh is what docker does before each push or pull with its identity token.
func (e *endpoint) refresh(rt string) grant {
	e.t.Helper()
	return e.post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"docker"}, "scope": {"repository:team/app:pull"}})
}

func (e *endpoint) expiry(rt string) int64 {
	e.t.Helper()
	c, err := e.id.Verifier().VerifyRefresh(rt)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.ExpiresAt
}

// TestLoginOutlivesRefreshTTL: the refresh token of a login (what docker
// keeps as its identity token, never replacing it) works for as long as the
// credential behind it is valid, past the refresh-token lifetime, and is
// checked against the credential's current state on every use.
func TestLoginOutlivesRefreshTTL(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		user bool          // log in as a user rather than with a token's password1
		exp  time.Duration // password1's expiry from now; 0: none
		wait time.Duration // after the login, before the change
		// change is made after the wait; nil: none.
		change func(e *endpoint) error
		// refused is what the refresh is refused for; "" if it must work.
		refused string
	}{
		{name: "token password without expiry, a year later", wait: 365 * day},
		{name: "token password expiring in 90 days, 89 days later", exp: 90 * day, wait: 89 * day},
		{name: "user, a year later", user: true, wait: 365 * day},
		{name: "token password expired", exp: 90 * day, wait: 90 * day, refused: "password1 expired"},
		{name: "token disabled", wait: day, refused: "token disabled", change: func(e *endpoint) error {
			st := identity.StatusDisabled
			_, err := e.id.UpdateToken(ctx, owner, "ci-agent", identity.TokenUpdate{Status: &st})
			return err
		}},
		{name: "token deleted", wait: day, refused: "token deleted", change: func(e *endpoint) error {
			return e.id.DeleteToken(ctx, owner, "ci-agent")
		}},
		{name: "password deleted", wait: day, refused: "password1 deleted", change: func(e *endpoint) error {
			_, err := e.id.DeletePassword(ctx, owner, "ci-agent", identity.SlotPassword1)
			return err
		}},
		{name: "password regenerated", wait: day, refused: "password1 regenerated", change: func(e *endpoint) error {
			_, err := e.id.GenerateCredentials(ctx, owner, "ci-agent", []string{identity.SlotPassword1}, time.Time{})
			return err
		}},
		{name: "the other password deleted", wait: day, change: func(e *endpoint) error {
			_, err := e.id.DeletePassword(ctx, owner, "ci-agent", identity.SlotPassword2)
			return err
		}},
		{name: "scope map changed", wait: day, change: func(e *endpoint) error {
			m := auth.ScopeMapPull
			_, err := e.id.UpdateToken(ctx, owner, "ci-agent", identity.TokenUpdate{ScopeMap: &m})
			return err
		}},
		{name: "user disabled", user: true, wait: day, refused: "user disabled", change: func(e *endpoint) error {
			st := identity.StatusDisabled
			_, err := e.id.UpdateUser(ctx, owner, "alice", identity.UserUpdate{Status: &st})
			return err
		}},
		{name: "user's password changed", user: true, wait: day, refused: "user credentials changed", change: func(e *endpoint) error {
			pw := "another long password"
			_, err := e.id.UpdateUser(ctx, owner, "alice", identity.UserUpdate{Password: &pw})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			var expiry time.Time
			if tt.exp != 0 {
				expiry = e.clk.now().Add(tt.exp)
			}
			_, creds, err := e.id.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-agent", ScopeMap: auth.ScopeMapPushMetadataWrite,
				Passwords: []string{identity.SlotPassword1, identity.SlotPassword2}, Expiry: expiry})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.id.CreateUser(ctx, owner, identity.UserSpec{Name: "alice", Role: "contributor", Password: "alice's long password"}); err != nil {
				t.Fatal(err)
			}
			rt := e.login("ci-agent", creds.Passwords[0].Value)
			if tt.user {
				rt = e.login("alice", "alice's long password")
			}
			if got := e.expiry(rt); got != unixOrZero(expiry) {
				t.Errorf("the login's refresh token expires at %d, want the password's expiry %d", got, unixOrZero(expiry))
			}
			e.clk.add(tt.wait)
			if tt.change != nil {
				if err := tt.change(e); err != nil {
					t.Fatal(err)
				}
			}
			g := e.refresh(rt)
			if tt.refused != "" {
				if g.status != http.StatusUnauthorized || !strings.Contains(g.body, `"invalid_grant"`) || !strings.Contains(g.body, tt.refused) {
					t.Fatalf("refresh: %d %s, want 401 invalid_grant saying %q", g.status, g.body, tt.refused)
				}
				return
			}
			if g.status != http.StatusOK || g.AccessToken == "" {
				t.Fatalf("refresh: %d %s, want 200 with an access token", g.status, g.body)
			}
			// A refresh returns a new refresh token of its own, valid for
			// refreshTTL and never past the password's expiry; the one
			// presented keeps working (another process may be using it).
			if g.RefreshToken == "" || g.RefreshToken == rt {
				t.Fatalf("refresh returned refresh token %q, want a new one", g.RefreshToken)
			}
			want := e.clk.now().Add(refreshTTL).Unix()
			if !expiry.IsZero() && expiry.Unix() < want {
				want = expiry.Unix()
			}
			if got := e.expiry(g.RefreshToken); got != want {
				t.Errorf("renewed refresh token expires at %d, want %d", got, want)
			}
			if again := e.refresh(rt); again.status != http.StatusOK {
				t.Errorf("the login's refresh token after a refresh: %d %s", again.status, again.body)
			}
			e.clk.add(refreshTTL + time.Minute)
			if again := e.refresh(g.RefreshToken); again.status != http.StatusUnauthorized {
				t.Errorf("renewed refresh token past its lifetime: %d %s, want 401", again.status, again.body)
			}
		})
	}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// TestRenewedRefreshTokenIsCheckedToo: a renewed refresh token is refused
// like the login's when the credential behind it is gone, and a renewal
// close to the password's expiry ends with it.
func TestRenewedRefreshTokenIsCheckedToo(t *testing.T) {
	ctx := context.Background()
	e := newEndpoint(t)
	expiry := e.clk.now().Add(time.Hour)
	_, creds, err := e.id.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-agent", ScopeMap: auth.ScopeMapPull,
		Passwords: []string{identity.SlotPassword1}, Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	rt := e.login("ci-agent", creds.Passwords[0].Value)
	e.clk.add(time.Hour - time.Minute)
	g := e.refresh(rt)
	if g.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", g.status, g.body)
	}
	if got := e.expiry(g.RefreshToken); got != expiry.Unix() {
		t.Errorf("renewed a minute before the password expires: exp %d, want the password's %d", got, expiry.Unix())
	}
	st := identity.StatusDisabled
	if _, err := e.id.UpdateToken(ctx, owner, "ci-agent", identity.TokenUpdate{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if again := e.refresh(g.RefreshToken); again.status != http.StatusUnauthorized || !strings.Contains(again.body, "token disabled") {
		t.Errorf("renewed refresh token of a disabled token: %d %s, want 401 saying token disabled", again.status, again.body)
	}
}
