package identity

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/meta"
)

// txGate holds changes inside their transactions while it is closed.
type txGate struct {
	mu      sync.Mutex
	entered chan struct{} // closed when a transaction reaches the gate
	release chan struct{} // closed to let it commit
}

func (g *txGate) close() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *txGate) wait() {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered, g.release = nil, nil // one transaction per closing
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
}

func openService(t *testing.T, dir string, clk *clock, inTx func()) *Service {
	t.Helper()
	store, err := meta.OpenSQLite(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), store.Database(), Options{OwnerPassword: "owner-password-1", Now: clk.now, Console: io.Discard, inTx: inTx})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); store.Close() })
	return s
}

// TestRequestsDoNotWaitForChanges holds each kind of change inside its
// database transaction and checks that logins, access-token checks and
// listings complete meanwhile, and that the change is seen by the first
// request after its call returns.
func TestRequestsDoNotWaitForChanges(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	gate := &txGate{}
	s := openService(t, t.TempDir(), clk, gate.wait)

	_, creds, err := s.CreateToken(ctx, owner, TokenSpec{Name: "puller", Actions: grants(t, "app", "content/read"), Passwords: []string{SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	pullerPw := creds.Passwords[0].Value
	login, err := s.Authenticate("puller", pullerPw)
	if err != nil {
		t.Fatal(err)
	}
	_, claims, err := s.Signer().IssueAccess(login.Subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, creds, err = s.CreateToken(ctx, owner, TokenSpec{Name: "ci-bot", Actions: grants(t, "ci/*", "content/read", "content/write"), Passwords: []string{SlotPassword1, SlotPassword2}})
	if err != nil {
		t.Fatal(err)
	}
	ciPw1, ciPw2 := creds.Passwords[0].Value, creds.Passwords[1].Value

	// Requests that must not wait for a change.
	requests := func() error {
		if _, err := s.Authenticate("puller", pullerPw); err != nil {
			return fmt.Errorf("token login: %w", err)
		}
		if _, err := s.Authenticate("owner", "owner-password-1"); err != nil {
			return fmt.Errorf("user login: %w", err)
		}
		if _, err := s.ResolveClaims(claims); err != nil {
			return fmt.Errorf("access token: %w", err)
		}
		if _, err := s.ListTokens(owner); err != nil {
			return fmt.Errorf("list tokens: %w", err)
		}
		if _, err := s.ListScopeMaps(owner); err != nil {
			return fmt.Errorf("list scope maps: %w", err)
		}
		return nil
	}

	shrink := grants(t, "ci/*", "content/read")
	disabled := StatusDisabled
	for _, tc := range []struct {
		name   string
		change func() error
		seen   func() error // nil when the change shows
	}{
		{"disable a token",
			func() error {
				_, err := s.UpdateToken(ctx, owner, "ci-bot", TokenUpdate{Status: &disabled})
				return err
			},
			func() error {
				if _, err := s.Authenticate("ci-bot", ciPw2); err == nil {
					return fmt.Errorf("disabled token still logs in")
				}
				return nil
			}},
		{"delete a password",
			func() error { _, err := s.DeletePassword(ctx, owner, "ci-bot", SlotPassword1); return err },
			func() error {
				if _, err := s.Authenticate("ci-bot", ciPw1); err == nil || err.Error() != "wrong password" {
					return fmt.Errorf("deleted password: %v, want wrong password", err)
				}
				return nil
			}},
		{"shrink a scope map",
			func() error {
				_, err := s.UpdateScopeMap(ctx, owner, "ci-bot-scope-map", ScopeMapUpdate{Actions: shrink})
				return err
			},
			func() error {
				m, err := s.GetScopeMap(owner, "ci-bot-scope-map")
				if err != nil || len(m.Actions) != 1 {
					return fmt.Errorf("scope map after the change: %v %v", m.Actions, err)
				}
				return nil
			}},
		{"create a token",
			func() error {
				_, _, err := s.CreateToken(ctx, owner, TokenSpec{Name: "new-token", ScopeMap: auth.ScopeMapPull})
				return err
			},
			func() error { _, err := s.GetToken(owner, "new-token"); return err }},
		{"create a user",
			func() error {
				_, err := s.CreateUser(ctx, owner, UserSpec{Name: "reader", Role: "reader", Password: "reader-password-1"})
				return err
			},
			func() error { _, err := s.GetUser(owner, "reader"); return err }},
		{"enable the admin user",
			func() error { _, _, err := s.SetAdminEnabled(ctx, owner, true); return err },
			func() error {
				if a, err := s.GetAdmin(owner); err != nil || !a.Enabled || len(a.Passwords) != 2 {
					return fmt.Errorf("admin after enabling: %+v %v", a, err)
				}
				return nil
			}},
		{"delete a token",
			func() error { return s.DeleteToken(ctx, owner, "ci-bot") },
			func() error {
				if _, err := s.Authenticate("ci-bot", ciPw2); err == nil || err.Error() != "unknown username" {
					return fmt.Errorf("deleted token: %v, want unknown username", err)
				}
				return nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered, release := gate.close()
			changed := make(chan error, 1)
			go func() { changed <- tc.change() }()
			select {
			case <-entered: // the change is inside its transaction, not committed
			case err := <-changed:
				t.Fatalf("the change did not run in a transaction: %v", err)
			}

			served := make(chan error, 1)
			go func() { served <- requests() }()
			select {
			case err := <-served:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(time.Minute): // a deadlock guard, not a speed limit
				close(release)
				<-changed
				t.Fatal("requests waited for a change's transaction")
			}
			select {
			case err := <-changed:
				t.Fatalf("the change returned before its transaction committed: %v", err)
			default:
			}
			close(release)
			if err := <-changed; err != nil {
				t.Fatal(err)
			}
			if err := tc.seen(); err != nil {
				t.Error(err)
			}
		})
	}
}
