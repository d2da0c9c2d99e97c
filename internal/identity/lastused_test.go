package identity

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestLastUsedSurvivesAFailedFlush makes the write of last-used times fail
// once and checks that the next flush writes them: a failed write must not
// forget which times are still to be written.
func TestLastUsedSurvivesAFailedFlush(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, t.TempDir(), clk)
	_, creds, err := s.CreateToken(ctx, owner, TokenSpec{Name: "puller", Actions: grants(t, "app", "content/read"), Passwords: []string{SlotPassword1}})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	if _, err := s.Authenticate("puller", creds.Passwords[0].Value); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("owner", "owner-password-1"); err != nil {
		t.Fatal(err)
	}
	// Every last-used write fails while the trigger exists.
	for _, table := range []string{"tokens", "users", "passwords"} {
		if _, err := s.db.W().ExecContext(context.Background(), `CREATE TRIGGER fail_`+table+` BEFORE UPDATE OF last_used ON `+table+` BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
			t.Fatal(err)
		}
	}
	s.FlushLastUsed()
	for _, table := range []string{"tokens", "users", "passwords"} {
		if _, err := s.db.W().ExecContext(context.Background(), `DROP TRIGGER fail_`+table); err != nil {
			t.Fatal(err)
		}
	}
	s.FlushLastUsed()

	want := clk.now().UnixMilli()
	for _, q := range []string{
		`SELECT last_used FROM tokens WHERE name = 'puller'`,
		`SELECT last_used FROM passwords WHERE owner_kind = 'token' AND owner = 'puller' AND slot = 'password1'`,
		`SELECT last_used FROM users WHERE name = 'owner'`,
	} {
		var got sql.NullInt64
		if err := s.db.W().QueryRowContext(context.Background(), q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got.Int64 != want {
			t.Errorf("%s: %v, want %d", q, got, want)
		}
	}
}
