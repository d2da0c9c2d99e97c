package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Columns of the scale-out table.
const (
	colPGS3     = "pg+s3"
	colSQLiteS3 = "sqlite+s3"
	colDefaults = "defaults"
	colV3S3     = "v3+s3"
	colS3Direct = "s3"
)

// scaleServices are the PostgreSQL cluster and the S3 gateway that the
// scale-out workloads share, started by the first that needs them.
type scaleServices struct {
	dir string
	pg  *pgServer
	s3  *s3Server
	err error
}

func (b *bench) services(ctx context.Context) (*scaleServices, error) {
	if b.scale != nil {
		return b.scale, b.scale.err
	}
	b.scale = &scaleServices{dir: filepath.Join(b.work, "services")}
	sv := b.scale
	if sv.err = os.Mkdir(sv.dir, 0o755); sv.err != nil {
		return sv, sv.err
	}
	logf("starting PostgreSQL and an S3 gateway (versitygw %s)", versitygwVersion)
	if sv.pg, sv.err = startPostgres(ctx); sv.err != nil {
		sv.err = fmt.Errorf("PostgreSQL: %w", sv.err)
		return sv, sv.err
	}
	if sv.s3, sv.err = startS3(ctx, sv.dir, b.cfg.install); sv.err != nil {
		sv.err = fmt.Errorf("S3 gateway: %w", sv.err)
	}
	return sv, sv.err
}

func (sv *scaleServices) stop() {
	if sv.s3 != nil {
		sv.s3.stop()
	}
	if sv.pg != nil {
		sv.pg.stop()
	}
}

// scaleSubject is one registry set-up of the scale-out workload.
type scaleSubject struct {
	col column
	s   *subject
	err error // why it could not start or be set up
}

// startScaleSubject starts f with opt as an authenticated instance, pushes
// the tiny image, and for berth creates the scoped token.
func (b *bench) startScaleSubject(ctx context.Context, col column, f *flavour, opt instanceOptions) *scaleSubject {
	ss := &scaleSubject{col: col}
	in, err := startInstance(ctx, f, roleAuth, opt)
	if err != nil {
		ss.err = err
		return ss
	}
	s := &subject{f: f, auth: in}
	ss.s = s
	if s.authAdmin, err = newRegClient(ctx, in.url, b.bulk, in.user, in.pass); err != nil {
		ss.err = err
		return ss
	}
	s.openAdmin = s.authAdmin // populate and list as the administrator
	if err := b.pushTiny(ctx, s.authAdmin, smallRepo, "v1"); err != nil {
		ss.err = err
		return ss
	}
	user, pass := in.user, in.pass
	if f.key == keyBerth {
		if user, pass, err = createToken(ctx, b.small, in); err != nil {
			ss.err = err
			return ss
		}
	}
	s.token, ss.err = newRegClient(ctx, in.url, b.small, user, pass)
	logf("started %s: %s", col.label, in.url)
	return ss
}

// scaleOutWorkload is workload 8: berth on PostgreSQL + S3 against berth on
// the defaults, Distribution with its S3 driver on the same S3 server, and
// the S3 server itself.
func (b *bench) scaleOutWorkload(ctx context.Context) error {
	cfg := b.cfg
	blob := formatSize(int64(cfg.blobSize))
	cols := []column{
		{colPGS3, "berth, PostgreSQL + S3"},
		{colSQLiteS3, "berth, SQLite + S3"},
		{colDefaults, "berth, defaults"},
		{colV3S3, distributionVersion + ", S3 driver"},
		{colS3Direct, "S3 directly"},
	}
	t := b.res.table("PostgreSQL and S3 (workload 8)", fmt.Sprintf("One S3 server (versitygw %s over the local disk) for every "+
		"set-up that keeps blobs on S3, each in a bucket of its own; PostgreSQL %s on the same machine. Authenticated instances as in "+
		"workloads 1 to 3 (berth's owner user and scoped token; Distribution's htpasswd). \"S3 directly\" is the benchmark's "+
		"HTTP client sending the same bytes as one signed PUT and one GET of an object (UNSIGNED-PAYLOAD, as berth's parts are sent): "+
		"the ceiling of a registry that stores blobs on this S3 server. Distribution serves blobs itself (redirect disabled; berth does not redirect by default either). The catalog is of repositories made as in workload 5.",
		versitygwVersion, postgresVersion()))
	t.columns = cols
	pushRow := t.row(blob+" blob, monolithic push", "MB/s", higher)
	pullRow := t.row(blob+" blob, pull", "MB/s", higher)
	getRow := t.row("manifest GET, authenticated", "req/s", higher)
	getP99 := t.row("manifest GET, authenticated, p99", "ms", lower)
	catRow := t.row(fmt.Sprintf("catalog of %s repositories, n=1000", thousands(cfg.repos)), "s", lower)
	ratios := b.res.table("PostgreSQL and S3 against their ceilings (workload 8)", "Medians of the table above. "+
		"Targets: push and pull through berth on PostgreSQL + S3 at least 80 % of S3 directly; its authenticated manifest GETs "+
		"at least 70 % of berth on the defaults (SQLite). The SQLite + S3 column shows the blob path alone.")
	ratios.columns = []column{{colPGS3, "berth, PostgreSQL + S3"}, {colSQLiteS3, "berth, SQLite + S3"}}
	pushFrac := ratios.row("push / S3 PUT", "%", higher)
	pullFrac := ratios.row("pull / S3 GET", "%", higher)
	getFrac := ratios.row("manifest GET / berth on the defaults", "%", higher)

	sv, err := b.services(ctx)
	if err != nil {
		for _, c := range cols {
			b.notRun("workload 8, "+c.label, t.rows, c.key, err)
		}
		return nil
	}
	for _, bucket := range []string{"berth-pg", "berth-sqlite", "distribution", "direct"} {
		if err := sv.s3.newBucket(ctx, bucket); err != nil {
			return fmt.Errorf("create bucket %s: %v", bucket, err)
		}
	}
	opt := instanceOptions{workDir: b.work, requestLogs: cfg.requestLogs, bcryptCost: cfg.bcryptCost}
	berth := b.res.flavours[0]
	var subjects []*scaleSubject
	pgOpt := opt
	db, err := sv.pg.newDatabase(ctx)
	if err != nil {
		return err
	}
	pgOpt.args = []string{"--database", db, "--storage", sv.s3.berthURL("berth-pg", "reg")}
	pgOpt.env = sv.s3.keys()
	subjects = append(subjects, b.startScaleSubject(ctx, cols[0], berth, pgOpt))
	sqOpt := opt
	sqOpt.args = []string{"--storage", sv.s3.berthURL("berth-sqlite", "reg")}
	sqOpt.env = sv.s3.keys()
	subjects = append(subjects, b.startScaleSubject(ctx, cols[1], berth, sqOpt))
	subjects = append(subjects, b.startScaleSubject(ctx, cols[2], berth, opt))
	if i := slices.IndexFunc(b.res.flavours, func(f *flavour) bool { return f.key == keyV3 }); i >= 0 {
		dOpt := opt
		dOpt.storage = sv.s3.distributionStorage("distribution")
		subjects = append(subjects, b.startScaleSubject(ctx, cols[3], b.res.flavours[i], dOpt))
	} else {
		for _, r := range t.rows {
			r.notes[colV3S3] = "not run"
		}
	}
	defer func() {
		for _, ss := range subjects {
			if ss.s != nil && ss.s.auth != nil {
				ss.s.auth.stop()
			}
		}
	}()
	var ready []*scaleSubject
	for _, ss := range subjects {
		if ss.err != nil {
			b.notRun("workload 8, "+ss.col.label, append(slices.Clip(t.rows), ratios.rows...), ss.col.key, ss.err)
			continue
		}
		ready = append(ready, ss)
	}

	record := func(r *row, key, what string, v float64, err error) {
		if err != nil {
			logf("%s, %s: %v", what, key, err)
			r.fail(key, err)
			return
		}
		logf("%s, %s: %.1f %s", what, key, v, r.unit)
		r.add(key, v)
	}
	for rep := range cfg.reps {
		logf("workload 8, repetition %d of %d: hashing new content", rep+1, cfg.reps)
		b.content.refresh()
		for _, ss := range rotateScale(ready, rep) {
			v, err := b.pushBlob(ctx, ss.s)
			record(pushRow, ss.col.key, "push "+blob+" blob", v, err)
			if err == nil {
				v, err = b.pullBlob(ctx, ss.s)
				record(pullRow, ss.col.key, "pull "+blob+" blob", v, err)
			}
		}
		put, get, err := b.directS3(ctx, sv.s3, "direct", fmt.Sprintf("blob-%d", rep))
		record(pushRow, colS3Direct, "S3 PUT of "+blob, put, err)
		if err == nil {
			record(pullRow, colS3Direct, "S3 GET of "+blob, get, nil)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for rep := range cfg.reps {
		for _, ss := range rotateScale(ready, rep) {
			res, err := b.smallRequests(ctx, ss.s, smallVariants[0])
			if err == nil {
				b.noteErrors("workload 8 manifest GET", ss.s, res)
				getP99.add(ss.col.key, ms(res.p99))
			}
			record(getRow, ss.col.key, "manifest GET, authenticated", res.rate(), err)
		}
	}
	l := b.listings()[0]
	for _, ss := range ready {
		logf("creating %d repositories on %s", cfg.repos, ss.col.label)
		if _, _, err := b.populate(ctx, ss.s); err != nil {
			catRow.fail(ss.col.key, err)
			continue
		}
		for range cfg.reps {
			d, _, err := b.list(ctx, ss.s, l)
			record(catRow, ss.col.key, l.label, d.Seconds(), err)
		}
	}
	for _, c := range ratios.columns {
		frac := func(r *row, num, den *row, numKey, denKey string) {
			n, ok1 := num.median(numKey)
			d, ok2 := den.median(denKey)
			if ok1 && ok2 && d > 0 {
				r.add(c.key, 100*n/d)
			}
		}
		frac(pushFrac, pushRow, pushRow, c.key, colS3Direct)
		frac(pullFrac, pullRow, pullRow, c.key, colS3Direct)
		frac(getFrac, getRow, getRow, c.key, colDefaults)
	}
	return nil
}

// notRun marks key's cells of rows as not run and says why in the notes.
func (b *bench) notRun(what string, rows []*row, key string, err error) {
	logf("%s: %v", what, err)
	for _, r := range rows {
		if _, ok := r.notes[key]; !ok {
			r.notes[key] = "not run (see the notes)"
		}
	}
	msg := oneLine(err.Error())
	if len(msg) > 400 {
		// The reason is at the end: a process's last words.
		msg = "…" + msg[len(msg)-400:]
	}
	b.res.notes = append(b.res.notes, what+" not run: "+msg)
}

func rotateScale(s []*scaleSubject, rep int) []*scaleSubject {
	out := make([]*scaleSubject, 0, len(s))
	for i := range s {
		out = append(out, s[(i+rep)%len(s)])
	}
	return out
}

// directS3 PUTs the big blob as one object of bucket and GETs it back into
// the pull buffer with the benchmark's bulk HTTP client, signed with
// Signature V4, and returns both rates.
func (b *bench) directS3(ctx context.Context, s *s3Server, bucket, key string) (put, get float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: s.access, SecretAccessKey: s.secret}
	u := s.endpoint + "/" + bucket + "/" + key
	do := func(method string, body []byte) (*http.Response, error) {
		var req *http.Request
		if body != nil {
			req, err = http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		} else {
			req, err = http.NewRequestWithContext(ctx, method, u, nil)
		}
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
		if err := signer.SignHTTP(ctx, creds, req, "UNSIGNED-PAYLOAD", "s3", s.region, time.Now()); err != nil {
			return nil, err
		}
		return b.bulk.Do(req)
	}
	data := b.content.blob()
	start := time.Now()
	resp, err := do(http.MethodPut, data)
	if err != nil {
		return 0, 0, err
	}
	if err := expect(resp, http.StatusOK, "S3 PUT"); err != nil {
		return 0, 0, err
	}
	put = mbps(int64(len(data)), time.Since(start))
	into := b.pullBuf[:len(data)]
	start = time.Now()
	resp, err = do(http.MethodGet, nil)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, expect(resp, http.StatusOK, "S3 GET")
	}
	n, err := io.ReadFull(resp.Body, into)
	resp.Body.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("S3 GET: %v", err)
	}
	get = mbps(int64(n), time.Since(start))
	if n != len(data) || sha256Digest(into) != b.content.blobDigest {
		return 0, 0, fmt.Errorf("S3 GET returned %d bytes that do not match what was PUT", n)
	}
	return put, get, nil
}

// postgresVersion is what the PostgreSQL binaries say they are.
func postgresVersion() string {
	bin, err := postgresBin()
	if err != nil {
		return "(not found)"
	}
	out, err := runCmd(context.Background(), os.TempDir(), os.Environ(), filepath.Join(bin, "postgres"), "--version")
	if err != nil {
		return "(unknown)"
	}
	return strings.TrimPrefix(strings.TrimSpace(out), "postgres (PostgreSQL) ")
}

// revocationWorkload is workload 9: three berth nodes on one PostgreSQL
// database and one bucket. A token is disabled through node 1; the time
// from sending the change (an upper bound of its commit) to the first refusal of
// the token's access token by node 2 or node 3 (in turn), which a client
// asks again and again from before the change, one request at a time.
// The token is then enabled again and the next change waits until both
// nodes accept it.
func (b *bench) revocationWorkload(ctx context.Context) error {
	cfg := b.cfg
	t := b.res.table("Revocation across nodes (workload 9)", fmt.Sprintf("Three berth nodes on one PostgreSQL database and one S3 bucket. "+
		"%d changes: a token (content/read on %s) is disabled through node 1 (PATCH /api/v1/tokens); from the moment the "+
		"request is sent (so the figure includes node 1's own work before the commit: an upper bound), the time until node 2 or node 3 "+
		"(in turn) first refuses a manifest GET with the access token it issued before the change, asked by one client in a loop "+
		"that started before the change. Node 1 answers once every live node has applied the change, so most refusals come before its answer.",
		cfg.changes, smallRepo))
	t.columns = []column{{colPGS3, "berth, 3 nodes on PostgreSQL + S3"}}
	p50 := t.row("change sent to node 1 to first refusal on another node, p50", "ms", lower)
	p99 := t.row("change sent to node 1 to first refusal on another node, p99", "ms", lower)
	worst := t.row("the same, slowest", "ms", lower)
	rtt := t.row("node 1's answer to the change, p50", "ms", info)
	early := t.row("changes refused by the other node before node 1 answered", "", info)
	early.count = true
	fail := func(err error) error {
		b.notRun("workload 9", t.rows, colPGS3, err)
		return nil
	}
	sv, err := b.services(ctx)
	if err != nil {
		return fail(err)
	}
	if err := sv.s3.newBucket(ctx, "berth-nodes"); err != nil {
		return fmt.Errorf("create bucket: %v", err)
	}
	db, err := sv.pg.newDatabase(ctx)
	if err != nil {
		return err
	}
	opt := instanceOptions{workDir: b.work, requestLogs: cfg.requestLogs, password: randomHex(16),
		args: []string{"--database", db, "--storage", sv.s3.berthURL("berth-nodes", "reg")}, env: sv.s3.keys()}
	var nodes []*instance
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for range 3 {
		in, err := startInstance(ctx, b.res.flavours[0], roleAuth, opt)
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, in)
	}
	logf("started three berth nodes on PostgreSQL + S3: %s, %s, %s", nodes[0].url, nodes[1].url, nodes[2].url)
	admin, err := newRegClient(ctx, nodes[0].url, b.small, nodes[0].user, nodes[0].pass)
	if err != nil {
		return fail(err)
	}
	if err := b.pushTiny(ctx, admin, smallRepo, "v1"); err != nil {
		return fail(err)
	}
	user, pass, err := createNamedToken(ctx, b.small, nodes[0], "revoked")
	if err != nil {
		return fail(err)
	}
	watchers := make([]*regClient, 2)
	for i := range watchers {
		if watchers[i], err = newRegClient(ctx, nodes[1+i].url, b.small, user, pass); err != nil {
			return fail(err)
		}
	}
	setStatus := func(status string) error {
		body := `{"properties": {"status": "` + status + `"}}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, nodes[0].url+"/api/v1/tokens/"+user, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.SetBasicAuth(nodes[0].user, nodes[0].pass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.small.Do(req)
		if err != nil {
			return err
		}
		return expect(resp, http.StatusOK, "PATCH token status "+status)
	}
	// get asks node i+1 for the manifest with header and returns the status.
	get := func(i int, header string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, nodes[1+i].url+"/v2/"+smallRepo+"/manifests/v1", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", ociManifest)
		req.Header.Set("Authorization", header)
		resp, err := b.small.Do(req)
		if err != nil {
			return 0, err
		}
		drain(resp)
		return resp.StatusCode, nil
	}
	var lat, answers []time.Duration
	before := 0
	for c := range cfg.changes {
		i := c % 2
		// A fresh access token from the watching node, as a client
		// holds one; fetched while the token is enabled.
		w := watchers[i]
		w.tokens = map[string]*bearer{}
		header, err := w.authorization(ctx, pullScope(smallRepo))
		if err != nil {
			return fail(fmt.Errorf("change %d: access token from node %d: %v", c, i+2, err))
		}
		if code, err := get(i, header); err != nil || code != http.StatusOK {
			return fail(fmt.Errorf("change %d: node %d before the change: %d, %v", c, i+2, code, err))
		}
		refused := make(chan time.Time, 1)
		watchErr := make(chan error, 1)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					watchErr <- nil
					return
				default:
				}
				code, err := get(i, header)
				now := time.Now()
				if err != nil {
					watchErr <- err
					return
				}
				if code == http.StatusUnauthorized || code == http.StatusForbidden {
					refused <- now
					watchErr <- nil
					return
				}
				if code != http.StatusOK {
					watchErr <- fmt.Errorf("node %d answered %d", i+2, code)
					return
				}
			}
		}()
		sent := time.Now()
		if err := setStatus("disabled"); err != nil {
			close(stop)
			return fail(err)
		}
		acked := time.Now()
		answers = append(answers, acked.Sub(sent))
		var at time.Time
		select {
		case at = <-refused:
		case <-time.After(30 * time.Second):
			close(stop)
			<-watchErr
			return fail(fmt.Errorf("change %d: node %d still accepted the disabled token 30 s after node 1 answered", c, i+2))
		case err := <-watchErr:
			if err != nil {
				return fail(fmt.Errorf("change %d: %v", c, err))
			}
			// The watcher sends the refusal before its nil error, and
			// select may take either first.
			at = <-refused
			watchErr <- nil
		}
		close(stop)
		if err := <-watchErr; err != nil {
			return fail(err)
		}
		if at.Before(acked) {
			before++
		}
		lat = append(lat, at.Sub(sent))
		if err := setStatus("enabled"); err != nil {
			return fail(err)
		}
		// Both watching nodes accept the token again before the next change.
		for j := range watchers {
			deadline := time.Now().Add(30 * time.Second)
			for {
				watchers[j].tokens = map[string]*bearer{}
				if h, err := watchers[j].authorization(ctx, pullScope(smallRepo)); err == nil {
					if code, err := get(j, h); err == nil && code == http.StatusOK {
						break
					}
				}
				if time.Now().After(deadline) {
					return fail(fmt.Errorf("change %d: node %d did not accept the token again within 30 s", c, j+2))
				}
				time.Sleep(time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	slices.Sort(lat)
	p50.add(colPGS3, ms(percentile(lat, 50)))
	p99.add(colPGS3, ms(percentile(lat, 99)))
	worst.add(colPGS3, ms(lat[len(lat)-1]))
	early.add(colPGS3, float64(before))
	slices.Sort(answers)
	rtt.add(colPGS3, ms(percentile(answers, 50)))
	logf("revocation over %d changes: p50 %.2f ms, p99 %.2f ms, slowest %.2f ms", len(lat), ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(lat[len(lat)-1]))
	return nil
}
