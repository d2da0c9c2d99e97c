package ui

import (
	"fmt"
	"testing"
	"time"
)

// TestSessionsOfOneUserCannotEvictOthers: a user who signs in over and over
// ends only their own oldest sessions, and filling the store as a whole
// ends sessions of whoever holds the most, not of a user with one.
func TestSessionsOfOneUserCannotEvictOthers(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 8, 0, 0, 0, time.UTC)
	tick := 0
	clock := func() time.Time { tick++; return t0.Add(time.Duration(tick) * time.Millisecond) }
	s := newSessions(12*time.Hour, time.Hour, clock)
	victim, _, _ := s.create("victim", 1)

	var flood []string
	for range 10_001 {
		id, _, _ := s.create("flooder", 1)
		flood = append(flood, id)
	}
	if _, err := s.get(victim); err != nil {
		t.Fatalf("after another user signed in 10,001 times, the victim's session: %v", err)
	}
	if n := len(s.byUser["flooder"]); n != maxUserSessions {
		t.Errorf("the flooder holds %d sessions, want %d", n, maxUserSessions)
	}
	for i, id := range flood[len(flood)-maxUserSessions:] {
		if _, err := s.get(id); err != nil {
			t.Fatalf("the flooder's %d-th newest session was ended: %v", maxUserSessions-i, err)
		}
	}
	if _, err := s.get(flood[0]); err == nil {
		t.Error("the flooder's oldest session outlived the per-user cap")
	}

	// Many users together filling the store push out sessions of the one
	// holding the most, not the victim's only one.
	for i := 0; s.count() < maxSessions; i++ {
		s.create(fmt.Sprintf("user-%d", i), 1)
	}
	for i := range maxUserSessions - 1 {
		s.create(fmt.Sprintf("late-%d", i), 1)
		if s.count() > maxSessions {
			t.Fatalf("%d sessions, the bound is %d", s.count(), maxSessions)
		}
	}
	if _, err := s.get(victim); err != nil {
		t.Errorf("with the store full, the victim's session: %v", err)
	}
	if n := len(s.byUser["flooder"]); n != 1 {
		t.Errorf("with the store full the flooder holds %d sessions, want 1", n)
	}
	// The index by user stays in step with the store.
	total := 0
	for _, m := range s.byUser {
		total += len(m)
	}
	if total != s.count() {
		t.Errorf("%d sessions by user, %d in all", total, s.count())
	}
}
