package ratelimit

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/identity"
	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/sqldb"
	"github.com/berth-registry/berth/internal/testutil"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBucket(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bucket
	type step struct {
		at   time.Duration
		ok   bool
		wait time.Duration
	}
	// rate 2/s, burst 3: three at once, then one per half second.
	steps := []step{
		{0, true, 0}, {0, true, 0}, {0, true, 0},
		{0, false, 500 * time.Millisecond},
		{250 * time.Millisecond, false, 250 * time.Millisecond},
		{500 * time.Millisecond, true, 0},
		{500 * time.Millisecond, false, 500 * time.Millisecond},
		{10 * time.Second, true, 0}, {10 * time.Second, true, 0}, {10 * time.Second, true, 0}, // refilled to the burst, no more
		{10 * time.Second, false, 500 * time.Millisecond},
	}
	for i, s := range steps {
		ok, wait := b.take(t0.Add(s.at), 2, 3)
		if ok != s.ok || wait != s.wait {
			t.Fatalf("step %d (at %v): got ok=%v wait=%v, want ok=%v wait=%v", i, s.at, ok, wait, s.ok, s.wait)
		}
	}
}

func TestBucketGrant(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bucket
	if n, _ := b.grant(t0, 10, 5, 3); n != 3 {
		t.Fatalf("first lease: %d, want 3", n)
	}
	if n, _ := b.grant(t0, 10, 5, 3); n != 2 {
		t.Fatalf("second lease: %d, want the 2 left", n)
	}
	if n, wait := b.grant(t0, 10, 5, 3); n != 0 || wait != 100*time.Millisecond {
		t.Fatalf("empty bucket: %d, wait %v; want 0 and 100ms", n, wait)
	}
	if got := leaseSize(50, 100); got != 5 {
		t.Fatalf("lease of 50/s: %d, want 5", got)
	}
	if got := leaseSize(0.5, 1); got != 1 {
		t.Fatalf("lease of 0.5/s: %d, want 1", got)
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name     string
		own, inh Limits
		want     Effective
	}{
		{"none", Limits{}, Limits{}, Effective{}},
		{"inherited", Limits{}, Limits{RatePerSecond: 5, PullBytesPerDay: 100},
			Effective{Rate: 5, Burst: 5, RateFrom: FromScopeMap, PullBytes: 100, PullFrom: FromScopeMap}},
		{"own overrides", Limits{RatePerSecond: 50, Burst: 100}, Limits{RatePerSecond: 5, Burst: 7, PushBytesPerDay: 9},
			Effective{Rate: 50, Burst: 100, RateFrom: FromToken, PushBytes: 9, PushFrom: FromScopeMap}},
		{"own rate takes its own default burst", Limits{RatePerSecond: 2.5}, Limits{RatePerSecond: 5, Burst: 70},
			Effective{Rate: 2.5, Burst: 3, RateFrom: FromToken}},
		{"unlimited lifts", Limits{RatePerSecond: Unlimited, PullBytesPerDay: Unlimited}, Limits{RatePerSecond: 5, PullBytesPerDay: 100},
			Effective{}},
		{"slow rate has burst 1", Limits{RatePerSecond: 0.01}, Limits{}, Effective{Rate: 0.01, Burst: 1, RateFrom: FromToken}},
	}
	for _, c := range cases {
		if got := Resolve(c.own, c.inh); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	rates := []struct {
		in   string
		want float64
		err  string
	}{
		{"50/s", 50, ""}, {"50", 50, ""}, {"600/m", 10, ""}, {"36/h", 0.01, ""}, {"unlimited", Unlimited, ""}, {"none", 0, ""}, {"", 0, ""},
		{"0", 0, "positive"}, {"-5/s", 0, "positive"}, {"5/d", 0, "the unit after /"}, {"fast", 0, "positive"}, {"1/h", 0, "0.001"},
	}
	for _, c := range rates {
		got, err := ParseRate(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRate(%q): error %v, want one saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	sizes := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"200GiB", 200 << 30, true}, {"10GB", 10e9, true}, {"1MiB/day", 1 << 20, true}, {"unlimited", Unlimited, true}, {"none", 0, true},
		{"0", 0, false}, {"lots", 0, false}, {"-1GiB", 0, false},
	}
	for _, c := range sizes {
		got, err := ParseBytes(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseBytes(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
	if err := (Limits{Burst: 5}).Validate(); err == nil {
		t.Error("a burst without a rate was accepted")
	}
}

var owner = auth.Identity{Kind: auth.KindUser, Name: "owner", Role: auth.RoleOwner}

// env is a registry database with token "ci-bot" on scope map "ci-map", and a
// limiter on it.
type env struct {
	db  *sqldb.DB
	ids *identity.Service
	clk *clock
	l   *Limiter
	set *Settings
	pol *auth.Policy
	// refusals are the limits of the refusals reported.
	mu       sync.Mutex
	refusals []string
}

type engine struct {
	name string
	// start starts the engine for the test; its function returns a new
	// database's setting ("" for SQLite in a new directory).
	start func(t *testing.T) func() string
}

func engines() []engine {
	e := []engine{{"SQLite", func(*testing.T) func() string { return func() string { return "" } }}}
	if !testing.Short() {
		e = append(e, engine{"PostgreSQL", func(t *testing.T) func() string {
			return testutil.StartPostgres(t).NewDatabase
		}})
	}
	return e
}

func openDB(t *testing.T, setting, dir string) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, setting, dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := meta.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

// newEnv opens a node; a second call with the same setting and dir is a
// second node of the same registry.
func newEnv(t *testing.T, setting, dir string, clk *clock, shared bool) *env {
	t.Helper()
	ctx := context.Background()
	db := openDB(t, setting, dir)
	ids, err := identity.Open(ctx, db, identity.Options{OwnerPassword: "owner-password-1", Now: clk.now, Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ids.Close)
	if _, err := ids.GetScopeMap(owner, "ci-map"); err != nil {
		if _, err := ids.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "ci-map", Actions: []string{"repositories/app/content/read", "repositories/app/content/write"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-bot", ScopeMap: "ci-map"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, ids: ids, clk: clk, pol: auth.MustCompile(auth.ScopeMap{Name: "ci-map", Actions: []string{"repositories/app/content/read"}})}
	e.l, err = Open(ctx, Options{DB: db, Shared: shared, Now: clk.now, SyncInterval: -1,
		Identify: func(c registry.Caller) (auth.Identity, bool) { return c.(fakeCaller).id, true },
		OnRefusal: func(r Refusal) {
			e.mu.Lock()
			e.refusals = append(e.refusals, r.Limit)
			e.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.l.Close)
	e.set = NewSettings(e.l, ids, nil)
	return e
}

// fakeCaller is a registry caller of identity id; the limiter asks it
// nothing but its identity (the embedded interface is nil).
type fakeCaller struct {
	registry.Caller
	id auth.Identity
}

func (c fakeCaller) Name() string                    { return c.id.Name }
func (c fakeCaller) Can(string, auth.Operation) bool { return true }
func (c fakeCaller) CanSee(string) bool              { return true }

func (e *env) caller() registry.Caller {
	return fakeCaller{id: auth.Identity{Kind: auth.KindToken, Name: "ci-bot", Policy: e.pol}}
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

// do serves one request of token ci through the limiter: handler writes
// the answer; it returns the response.
func (e *env) do(t *testing.T, method string, body io.Reader, handler func(w http.ResponseWriter, r *http.Request)) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, "/v2/app/blobs/sha256:x", body)
	rec := httptest.NewRecorder()
	w, done, err := e.l.Admit(rec, r, e.caller())
	if err != nil {
		registry.WriteError(rec, err.(*registry.Error))
		return rec.Result()
	}
	if handler != nil {
		handler(w, r)
	}
	if done != nil {
		done()
	}
	return rec.Result()
}

func errorMessage(t *testing.T, res *http.Response) string {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("status %d: not one OCI error (%v)", res.StatusCode, err)
	}
	if body.Errors[0].Code != "TOOMANYREQUESTS" {
		t.Fatalf("code %s, want TOOMANYREQUESTS", body.Errors[0].Code)
	}
	return body.Errors[0].Message
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func TestLimits(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.name, func(t *testing.T) {
			newDB := eng.start(t)
			for _, c := range []struct {
				name string
				test func(*testing.T, func(clk *clock, shared bool) *env)
			}{
				{"RateLimit", testRateLimit},
				{"Inheritance", testInheritance},
				{"PullBytes", testPullBytes},
				{"PushBytes", testPushBytes},
				{"SharedAcrossNodes", testSharedAcrossNodes},
				{"DeletedTokenForgetsLimits", testDeletedTokenForgetsLimits},
			} {
				t.Run(c.name, func(t *testing.T) {
					setting, dir := newDB(), t.TempDir()
					c.test(t, func(clk *clock, shared bool) *env { return newEnv(t, setting, dir, clk, shared) })
				})
			}
		})
	}
}

func t0() *clock { return &clock{t: time.Date(2030, 1, 1, 23, 0, 0, 0, time.UTC)} }

func testRateLimit(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	clk := t0()
	e := node(clk, false)
	if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
		t.Fatalf("without limits: %d", res.StatusCode)
	}
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(2), Burst: i64(3)}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, res.StatusCode)
		}
	}
	res := e.do(t, "GET", nil, ok)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d, Retry-After %q; want 429 and 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
	want := `token "ci-bot" is over its rate limit of 2 requests/s (burst 3); retry after 1 s`
	if msg := errorMessage(t, res); msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
	clk.add(500 * time.Millisecond)
	if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
		t.Fatalf("after half a second: %d", res.StatusCode)
	}
	if res := e.do(t, "GET", nil, ok); res.StatusCode != 429 {
		t.Fatalf("again at once: %d", res.StatusCode)
	}
	tl, err := e.set.Token(ctx, owner, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Effective.Rate != 2 || tl.Usage.RequestsAvailable == nil || *tl.Usage.RequestsAvailable != 0 {
		t.Fatalf("token view: %+v usage %+v", tl.Effective, tl.Usage)
	}
	if len(e.refusals) != 2 || e.refusals[0] != LimitRate {
		t.Fatalf("refusals reported: %v", e.refusals)
	}
	// Clearing the limit frees the token at once.
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(0)}); err != nil {
		t.Fatal(err)
	}
	if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
		t.Fatalf("after clearing: %d", res.StatusCode)
	}
	// Only owners and contributors change limits.
	reader := auth.Identity{Kind: auth.KindUser, Name: "r", Role: auth.RoleReader}
	if _, err := e.set.SetToken(ctx, reader, "ci-bot", Update{RatePerSecond: f64(1)}); err == nil {
		t.Fatal("a reader set a limit")
	}
	if _, err := e.set.SetToken(ctx, owner, "nope", Update{RatePerSecond: f64(1)}); err == nil {
		t.Fatal("limits set on a missing token")
	}
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{Burst: i64(4)}); err == nil {
		t.Fatal("a burst without a rate was accepted")
	}
}

func testInheritance(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	e := node(t0(), false)
	if _, err := e.set.SetScopeMap(ctx, owner, "ci-map", Update{RatePerSecond: f64(1)}); err != nil {
		t.Fatal(err)
	}
	if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
		t.Fatalf("first: %d", res.StatusCode)
	}
	res := e.do(t, "GET", nil, ok)
	if res.StatusCode != 429 || !strings.Contains(errorMessage(t, res), "rate limit of 1 requests/s (burst 1)") {
		t.Fatalf("the scope map's limit did not apply: %d", res.StatusCode)
	}
	// The token's own limit overrides the scope map's.
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(Unlimited)}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
			t.Fatalf("unlimited token: %d", res.StatusCode)
		}
	}
	tl, err := e.set.Token(ctx, owner, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Inherited.RatePerSecond != 1 || tl.Own.RatePerSecond != Unlimited || tl.Effective.Rate != 0 {
		t.Fatalf("view: %+v", tl)
	}
}

// blob answers a GET with n bytes of known size, of which it sends only
// send (a client that went away).
func blob(n, send int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", itoa(n))
		w.Header().Set("Docker-Content-Digest", "sha256:x")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(strings.Repeat("x", send)))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func testPullBytes(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	clk := t0()
	e := node(clk, false)
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{PullBytesPerDay: i64(100)}); err != nil {
		t.Fatal(err)
	}
	if res := e.do(t, "GET", nil, blob(60, 60)); res.StatusCode != 200 {
		t.Fatalf("60 of 100: %d", res.StatusCode)
	}
	// 60 more do not fit in the 40 left: refused before the first byte.
	res := e.do(t, "GET", nil, blob(60, 60))
	if res.StatusCode != 429 || res.Header.Get("Docker-Content-Digest") != "" {
		t.Fatalf("60 more: %d, digest header %q", res.StatusCode, res.Header.Get("Docker-Content-Digest"))
	}
	if msg := errorMessage(t, res); !strings.Contains(msg, `token "ci-bot" is allowed to pull 40 B more today (UTC), less than the 60 B of this request`) || !strings.Contains(msg, "retry after 1 h") {
		t.Fatalf("message %q", msg)
	}
	if got := res.Header.Get("Retry-After"); got != "3600" {
		t.Fatalf("Retry-After %q, want the 3600 s to midnight UTC", got)
	}
	// A pull stopped halfway counts what was sent.
	if res := e.do(t, "GET", nil, blob(30, 10)); res.StatusCode != 200 {
		t.Fatalf("30 of 40: %d", res.StatusCode)
	}
	tl, err := e.set.Token(ctx, owner, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Usage.PulledBytes != 70 {
		t.Fatalf("pulled %d, want 70 (60 + the 10 sent)", tl.Usage.PulledBytes)
	}
	// Counts survive a restart (they are written at every sync).
	if err := e.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	e2 := node(clk, false)
	if res := e2.do(t, "GET", nil, blob(31, 31)); res.StatusCode != 429 {
		t.Fatalf("31 more after a restart: %d, want 429", res.StatusCode)
	}
	if res := e2.do(t, "GET", nil, blob(30, 30)); res.StatusCode != 200 {
		t.Fatalf("the last 30: %d", res.StatusCode)
	}
	if res := e2.do(t, "GET", nil, blob(1, 1)); res.StatusCode != 429 || !strings.Contains(errorMessage(t, res), "over its limit of 100 B pulled per day (UTC)") {
		t.Fatalf("at the limit: %d", res.StatusCode)
	}
	// HEAD sends nothing and is not refused.
	if res := e2.do(t, "HEAD", nil, ok); res.StatusCode != 200 {
		t.Fatalf("HEAD at the limit: %d", res.StatusCode)
	}
	// The next UTC day starts again.
	clk.add(time.Hour)
	if res := e2.do(t, "GET", nil, blob(100, 100)); res.StatusCode != 200 {
		t.Fatalf("next day: %d", res.StatusCode)
	}
}

func testPushBytes(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	e := node(t0(), false)
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{PushBytesPerDay: i64(100)}); err != nil {
		t.Fatal(err)
	}
	read := func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			registry.WriteError(w, err.(*registry.Error))
			return
		}
		w.Header().Set("X-Read", itoa(int(n)))
		w.WriteHeader(http.StatusAccepted)
	}
	// A body of known size that does not fit is refused before it is read.
	res := e.do(t, "PUT", strings.NewReader(strings.Repeat("y", 101)), read)
	if res.StatusCode != 429 {
		t.Fatalf("101 of 100: %d", res.StatusCode)
	}
	if res := e.do(t, "PUT", strings.NewReader(strings.Repeat("y", 70)), read); res.StatusCode != 202 {
		t.Fatalf("70: %d", res.StatusCode)
	}
	// A body of unknown size is cut where it crosses the limit.
	chunked := io.MultiReader(strings.NewReader(strings.Repeat("z", 50)))
	res = e.do(t, "PATCH", chunked, func(w http.ResponseWriter, r *http.Request) {
		r.ContentLength = -1
		read(w, r)
	})
	if res.StatusCode != 429 {
		t.Fatalf("50 more of unknown size: %d", res.StatusCode)
	}
	tl, err := e.set.Token(ctx, owner, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Usage.PushedBytes != 100 {
		t.Fatalf("pushed %d, want 100 (70 and the 30 read before the cut)", tl.Usage.PushedBytes)
	}
}

// testSharedAcrossNodes runs two nodes of one registry: they share one
// request bucket and one day's byte count.
func testSharedAcrossNodes(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	clk := t0()
	a := node(clk, true)
	b := node(clk, true)
	if _, err := a.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(10), Burst: i64(10), PullBytesPerDay: i64(1000)}); err != nil {
		t.Fatal(err)
	}
	// b learns of the change at its next sync.
	if err := b.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for i := range 30 {
		n := a
		if i%2 == 1 {
			n = b
		}
		if res := n.do(t, "GET", nil, ok); res.StatusCode == 200 {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("two nodes admitted %d requests at once, want the burst of 10", admitted)
	}
	clk.add(time.Second)
	if _, err := a.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(Unlimited)}); err != nil {
		t.Fatal(err)
	}
	if err := b.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if res := a.do(t, "GET", nil, blob(600, 600)); res.StatusCode != 200 {
		t.Fatalf("600 on a: %d", res.StatusCode)
	}
	if err := a.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if res := b.do(t, "GET", nil, blob(600, 600)); res.StatusCode != 429 {
		t.Fatalf("600 more on b: %d, want 429", res.StatusCode)
	}
	tl, err := b.set.Token(ctx, owner, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Usage.PulledBytes != 600 {
		t.Fatalf("b sees %d bytes pulled, want a's 600", tl.Usage.PulledBytes)
	}
}

func testDeletedTokenForgetsLimits(t *testing.T, node func(*clock, bool) *env) {
	ctx := context.Background()
	e := node(t0(), false)
	if _, err := e.set.SetToken(ctx, owner, "ci-bot", Update{RatePerSecond: f64(1)}); err != nil {
		t.Fatal(err)
	}
	if err := e.ids.DeleteToken(ctx, owner, "ci-bot"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "ci-bot", ScopeMap: "ci-map"}); err != nil {
		t.Fatal(err)
	}
	if err := e.l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res := e.do(t, "GET", nil, ok); res.StatusCode != 200 {
			t.Fatalf("a new token of the old name kept its limit: %d", res.StatusCode)
		}
	}
}

// TestDelegatedLimits: a token-admin of team-a/* sets the limits of the
// tokens and scope maps inside their patterns, and of nothing else.
func TestDelegatedLimits(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "", t.TempDir(), t0(), false)
	if _, err := e.ids.CreateScopeMap(ctx, owner, identity.ScopeMapSpec{Name: "team-a-map", Actions: []string{"repositories/team-a/*/content/read"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ids.CreateToken(ctx, owner, identity.TokenSpec{Name: "team-a-bot", ScopeMap: "team-a-map"}); err != nil {
		t.Fatal(err)
	}
	as, err := auth.ParseAssignment("token-admin", "team-a/*")
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Identity{Kind: auth.KindUser, Name: "alice", Assignments: []auth.Assignment{as}}
	if _, err := e.set.SetToken(ctx, alice, "team-a-bot", Update{RatePerSecond: f64(5)}); err != nil {
		t.Fatalf("token inside the patterns: %v", err)
	}
	if _, err := e.set.SetScopeMap(ctx, alice, "team-a-map", Update{PullBytesPerDay: i64(1 << 30)}); err != nil {
		t.Fatalf("scope map inside the patterns: %v", err)
	}
	if _, err := e.set.SetToken(ctx, alice, "ci-bot", Update{RatePerSecond: f64(Unlimited)}); err == nil {
		t.Fatal("a token outside the patterns was changed")
	}
	if _, err := e.set.SetScopeMap(ctx, alice, "ci-map", Update{RatePerSecond: f64(1)}); err == nil {
		t.Fatal("a scope map outside the patterns was changed")
	}
	if _, err := e.set.SetScopeMap(ctx, alice, "_repositories_admin", Update{RatePerSecond: f64(1)}); err == nil {
		t.Fatal("a built-in scope map was changed by a delegated admin")
	}
}

func TestFormatRate(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{
		{50, "50 requests/s"}, {1.5, "1.5 requests/s"}, {0.5, "30 requests/min"}, {4.0 / 3600, "4 requests/h"}, {0.001, "3.6 requests/h"},
	} {
		if got := FormatRate(c.rate); got != c.want {
			t.Errorf("FormatRate(%v) = %q, want %q", c.rate, got, c.want)
		}
	}
	// The stored form keeps such rates (millionths of a request per second).
	l := fromRow(toRow(Limits{RatePerSecond: 4.0 / 3600}))
	if got := FormatRate(l.RatePerSecond); got != "4 requests/h" {
		t.Errorf("4/h stored and read back: %s", got)
	}
}

// BenchmarkAdmitUnlimited measures what the limiter adds to a request of a
// token without limits while another token has some (the registry-wide
// path when no limit is set anywhere is cheaper still).
func BenchmarkAdmitUnlimited(b *testing.B) {
	l := &Limiter{tokens: map[string]*tokenState{}, now: time.Now,
		identify: func(c registry.Caller) (auth.Identity, bool) { return c.(fakeCaller).id, true }}
	l.snap.Store(&snapshot{tokens: map[string]Limits{"other-bot": {RatePerSecond: 5}}, scopeMaps: map[string]Limits{}})
	var c registry.Caller = fakeCaller{id: auth.Identity{Kind: auth.KindToken, Name: "ci-bot", Policy: auth.MustCompile(auth.ScopeMap{Name: "ci-map"})}}
	r := httptest.NewRequest("GET", "/v2/app/manifests/v1", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if _, done, err := l.Admit(w, r, c); err != nil || done != nil {
			b.Fatal(err)
		}
	}
}
