package audit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/sqldb"
)

// openDB returns berth's database, with the audit table, in a fresh
// directory.
func openDB(t *testing.T) *sqldb.DB {
	t.Helper()
	md, err := meta.OpenSQLite(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if err := Migrate(t.Context(), md.Database()); err != nil {
		t.Fatal(err)
	}
	return md.Database()
}

func rows(t *testing.T, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.W().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM audit`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func list(t *testing.T, l *Log, f Filter) []Event {
	t.Helper()
	f.Limit = 1000
	events, err := l.List(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

var t0 = time.Date(2030, 1, 2, 8, 0, 0, 0, time.UTC)

func rateLimited(ip string, at time.Time) Event {
	return Event{Time: at, Kind: KindLogin, Result: ResultFailure, Identity: "alice", Reason: "rate limited", CallerIP: ip, UserAgent: "curl/8"}
}

// A flood of identical refused logins from one source is one record whose
// count grows, across batches (each Flush ends one); another source, another
// reason, a success or the end of the fold window starts a new record.
func TestFoldRepeatedFailures(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	const flood = 3000
	for i := range flood {
		l.Record(rateLimited("192.0.2.1", t0.Add(time.Duration(i)*time.Millisecond)))
		if i%700 == 0 {
			l.Flush()
		}
	}
	l.Record(rateLimited("192.0.2.2", t0))
	other := rateLimited("192.0.2.1", t0)
	other.Reason = "wrong password"
	l.Record(other)
	ok := rateLimited("192.0.2.1", t0)
	ok.Result, ok.Reason = ResultSuccess, ""
	l.Record(ok)
	ok.Time = t0.Add(time.Second)
	l.Record(ok)
	l.Flush()
	l.Record(rateLimited("192.0.2.1", t0.Add(FoldWindow+time.Second)))

	got := map[string]int{}
	var flooded Event
	for _, e := range list(t, l, Filter{}) {
		k := fmt.Sprintf("%s %s %s %s", e.Result, e.CallerIP, e.Reason, e.Time.Format(time.RFC3339))
		if got[k] != 0 {
			t.Errorf("two records for %s", k)
		}
		got[k] = e.Count
		if e.CallerIP == "192.0.2.1" && e.Reason == "rate limited" && e.Time.Equal(t0) {
			flooded = e
		}
	}
	want := map[string]int{
		"failure 192.0.2.1 rate limited 2030-01-02T08:00:00Z":   flood,
		"failure 192.0.2.2 rate limited 2030-01-02T08:00:00Z":   1,
		"failure 192.0.2.1 wrong password 2030-01-02T08:00:00Z": 1,
		"success 192.0.2.1  2030-01-02T08:00:00Z":               1,
		"success 192.0.2.1  2030-01-02T08:00:01Z":               1,
		"failure 192.0.2.1 rate limited 2030-01-02T08:01:01Z":   1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: count %d, want %d", k, got[k], n)
		}
	}
	if n := rows(t, db); n != len(want) {
		t.Errorf("%d rows, want %d: %v", n, len(want), got)
	}
	if wantLast := t0.Add((flood - 1) * time.Millisecond); !flooded.LastTime.Equal(wantLast) {
		t.Errorf("folded record's last time %v, want %v", flooded.LastTime, wantLast)
	}
}

// Identical manifest pulls fold as failed logins do; pulls of different
// tags do not.
func TestFoldPulls(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	pull := func(tag string, at time.Time) Event {
		return Event{Time: at, Kind: KindPull, Result: ResultSuccess, Identity: "ci", Repository: "app", Tag: tag, Digest: "sha256:aa"}
	}
	for i := range 10 {
		l.Record(pull("v1", t0.Add(time.Duration(i)*time.Second)))
		l.Flush()
	}
	l.Record(pull("v2", t0))
	got := list(t, l, Filter{Kind: KindPull})
	if len(got) != 2 || got[0].Tag != "v2" || got[0].Count != 1 || got[1].Count != 10 {
		t.Errorf("pulls: %+v", got)
	}
}

// A record deleted by retention is not updated any more: the next
// identical event starts a new one.
func TestFoldAfterRetention(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	l.Record(rateLimited("192.0.2.1", t0))
	l.Flush()
	if _, err := db.W().ExecContext(t.Context(), `DELETE FROM audit`); err != nil {
		t.Fatal(err)
	}
	l.Record(rateLimited("192.0.2.1", t0.Add(time.Second)))
	got := list(t, l, Filter{})
	if len(got) != 1 || got[0].Count != 1 || !got[0].Time.Equal(t0.Add(time.Second)) {
		t.Errorf("after retention: %+v", got)
	}
}

func TestPrune(t *testing.T) {
	now := t0.Add(100 * 24 * time.Hour)
	tests := []struct {
		name       string
		maxAge     time.Duration
		maxRecords int64
		want       int // records left of 5000, one an hour up to now
	}{
		{"no limits", 0, 0, 5000},
		{"by age", 24 * time.Hour, 0, 24},
		{"by number", 0, 3000, 3000},
		{"both, age tighter", 24 * time.Hour, 3000, 24},
		{"both, number tighter", 1000 * time.Hour, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t)
			l := Open(db, Options{Now: func() time.Time { return now }})
			defer l.Close()
			for i := range 5000 {
				l.Record(Event{Time: now.Add(-time.Duration(5000-i)*time.Hour + time.Minute), Kind: KindPush, Result: ResultSuccess, Repository: fmt.Sprint(i)})
			}
			l.Flush()
			l.opts.MaxAge, l.opts.MaxRecords = tt.maxAge, tt.maxRecords
			n, err := l.Prune(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if left := rows(t, db); left != tt.want || n != int64(5000-tt.want) {
				t.Errorf("deleted %d, %d left, want %d left", n, left, tt.want)
			}
			// What is left is the newest.
			var oldest string
			if err := db.W().QueryRowContext(t.Context(), `SELECT repository FROM audit ORDER BY id LIMIT 1`).Scan(&oldest); err != nil {
				t.Fatal(err)
			}
			if oldest != fmt.Sprint(5000-tt.want) {
				t.Errorf("oldest record left is %s, want %d", oldest, 5000-tt.want)
			}
		})
	}
}

// Retention runs by itself when a limit is set: at start and then every
// PruneInterval.
func TestRetentionRunsPeriodically(t *testing.T) {
	db := openDB(t)
	w := New(db, nil)
	for range 50 {
		w.Record(Event{Kind: KindPush, Result: ResultSuccess})
	}
	w.Close()
	l := Open(db, Options{MaxRecords: 20, PruneInterval: 10 * time.Millisecond})
	defer l.Close()
	waitFor(t, "retention at start", func() bool { return rows(t, db) == 20 })
	for range 30 {
		if err := l.Write(t.Context(), Event{Kind: KindPush, Result: ResultSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "periodic retention", func() bool { return rows(t, db) == 20 })
}

// waitFor polls cond; the limit only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for limit := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatalf("%s: not within 30 s", what)
		}
	}
}

// Write returns only once the record is committed: another connection
// sees it at once, with no Flush.
func TestWriteIsCommittedOnReturn(t *testing.T) {
	dir := t.TempDir()
	md, err := meta.OpenSQLite(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	if err := Migrate(t.Context(), md.Database()); err != nil {
		t.Fatal(err)
	}
	l := New(md.Database(), nil)
	defer l.Close()
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			errs <- l.Write(t.Context(), Event{Kind: KindPush, Result: ResultSuccess, Repository: fmt.Sprint("repo-", i)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var n int
	if err := md.ReadDB().QueryRow(`SELECT COUNT(*) FROM audit WHERE kind = 'push'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != writers {
		t.Errorf("another connection sees %d of %d written records", n, writers)
	}
}

// InsertTx writes in the caller's transaction: rolled back, no record.
func TestInsertTx(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	for _, commit := range []bool{false, true} {
		tx, err := db.W().BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.InsertTx(t.Context(), tx, Event{Kind: KindPermission, Result: ResultSuccess, Target: fmt.Sprint("commit ", commit)}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	got := list(t, l, Filter{})
	if len(got) != 1 || got[0].Target != "commit true" || got[0].Time.IsZero() {
		t.Errorf("records: %+v", got)
	}
}

// Recording after Close (a request that outlives shutdown) neither panics
// nor loses the record: it is written at once. What was queued before is
// written by Close.
func TestRecordAfterClose(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	l.Record(Event{Kind: KindPull, Result: ResultSuccess, Repository: "before"})
	l.Close()
	l.Close()
	l.Record(Event{Kind: KindPull, Result: ResultSuccess, Repository: "record"})
	if err := l.Write(t.Context(), Event{Kind: KindPush, Result: ResultSuccess, Repository: "write"}); err != nil {
		t.Errorf("Write after Close: %v", err)
	}
	l.Flush()
	var got []string
	for _, e := range list(t, l, Filter{}) {
		got = append(got, e.Repository)
	}
	if strings.Join(got, " ") != "write record before" {
		t.Errorf("records %q, want write, record, before", got)
	}
}

// failures is a slog handler that reports each failed audit write.
type failures struct {
	slog.Handler
	c chan string
}

func (f failures) Enabled(context.Context, slog.Level) bool { return true }

func (f failures) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "audit write failed") {
		select {
		case f.c <- r.Message:
		default:
		}
	}
	return nil
}

// A batch that fails is retried, not dropped: with the table gone for a
// while, the records queued and written meanwhile all arrive once it is
// back.
func TestFailedBatchIsRetried(t *testing.T) {
	db := openDB(t)
	failed := make(chan string, 1)
	l := New(db, slog.New(failures{Handler: slog.DiscardHandler, c: failed}))
	defer l.Close()
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Kind: KindPull, Result: ResultSuccess, Repository: "queued"})
	wrote := make(chan error, 1)
	go func() {
		wrote <- l.Write(context.Background(), Event{Kind: KindPush, Result: ResultSuccess, Repository: "written"})
	}()
	<-failed
	l.Record(Event{Kind: KindPull, Result: ResultSuccess, Repository: "during"})
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit_away RENAME TO audit`); err != nil {
		t.Fatal(err)
	}
	err := <-wrote // nil, or the failure if the table came back late; either way retried
	l.Flush()
	var got []string
	for _, e := range list(t, l, Filter{}) {
		got = append(got, e.Repository)
	}
	if len(got) != 3 || !strings.Contains(strings.Join(got, " "), "queued") || !strings.Contains(strings.Join(got, " "), "written") || !strings.Contains(strings.Join(got, " "), "during") {
		t.Errorf("records after the failure %q (Write: %v), want queued, written and during", got, err)
	}
}

// A failure that lasts is reported to Write's callers, whose records stay
// queued and are written once the database is back.
func TestWriteReportsLastingFailure(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(t.Context(), Event{Kind: KindPush, Result: ResultSuccess, Repository: "late"}); err == nil {
		t.Fatal("Write succeeded without an audit table")
	}
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit_away RENAME TO audit`); err != nil {
		t.Fatal(err)
	}
	got := list(t, l, Filter{})
	if len(got) != 1 || got[0].Repository != "late" {
		t.Errorf("records once the table is back: %+v", got)
	}
}

// Write gives up waiting when its context ends; the record is still written.
func TestWriteContext(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := l.Write(ctx, Event{Kind: KindPush, Result: ResultSuccess})
	if err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Write with a cancelled context: %v", err)
	}
	l.Flush()
	if n := rows(t, db); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// While the database is down, records beyond what memory holds make
// Record wait instead of being dropped: every one arrives once it is back.
func TestNothingDroppedWhileTheDatabaseIsDown(t *testing.T) {
	db := openDB(t)
	failed := make(chan string, 1)
	l := New(db, slog.New(failures{Handler: slog.DiscardHandler, c: failed}))
	defer l.Close()
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit RENAME TO audit_away`); err != nil {
		t.Fatal(err)
	}
	const n = 3 * maxQueue
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			l.Record(Event{Kind: KindPush, Result: ResultSuccess, Repository: fmt.Sprint(i)})
		}
	}()
	<-failed
	if _, err := db.W().ExecContext(t.Context(), `ALTER TABLE audit_away RENAME TO audit`); err != nil {
		t.Fatal(err)
	}
	<-done
	l.Flush()
	if got := rows(t, db); got != n {
		t.Errorf("%d of %d records written", got, n)
	}
}

// Pulls a signature policy refused, or served in audit mode, come in floods
// as pulls do and are folded the same way: one record per identical
// finding and window.
func TestFoldTrustFindings(t *testing.T) {
	db := openDB(t)
	l := New(db, nil)
	defer l.Close()
	finding := func(result string, at time.Time) Event {
		return Event{Time: at, Kind: KindTrust, Result: result, Identity: "ci", Repository: "prod/app", Digest: "sha256:aa",
			Reason: `signature policy "prod" requires a valid cosign signature`}
	}
	for i := range 10 {
		l.Record(finding(ResultFailure, t0.Add(time.Duration(i)*time.Second)))
		l.Flush()
	}
	l.Record(finding(ResultSuccess, t0))
	got := list(t, l, Filter{Kind: KindTrust})
	if len(got) != 2 || got[0].Result != ResultSuccess || got[0].Count != 1 || got[1].Count != 10 {
		t.Errorf("trust findings: %+v", got)
	}
}
