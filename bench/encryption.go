package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/berth-registry/berth/internal/encryption"
)

// Columns of the encryption table.
const (
	colPlain     = "plain"
	colEncrypted = "encrypted"
)

// encryptionWorkload is workload 10: berth on the defaults against berth on
// the defaults with --encryption-key (a key file), on the same machine:
// bulk push and pull, and the cost of small requests (the manifest, kept in
// the database and never encrypted, and the config blob, which is).
func (b *bench) encryptionWorkload(ctx context.Context) error {
	cfg := b.cfg
	blob := formatSize(int64(cfg.blobSize))
	image := fmt.Sprintf("%d × %s", cfg.layers, formatSize(int64(cfg.layerSize)))
	cols := []column{{colPlain, "berth, defaults"}, {colEncrypted, "berth, --encryption-key file:"}}
	t := b.res.table("Encryption at rest (workload 10)", fmt.Sprintf("Two authenticated berth instances on the defaults (SQLite, filesystem), "+
		"one with --encryption-key (a key file: every blob's content sealed with AES-256-GCM in 64 KiB segments under a data key of its own). "+
		"Push and pull as in workloads 1 and 2 (the image with %d jobs); small requests as in workload 3 (%d clients, %v per run, the scoped "+
		"token's access token): the manifest (in the database, not encrypted) and the image's config blob (%d bytes, encrypted; every blob up "+
		"to 1 MiB is also hashed on every read).", cfg.jobs, cfg.concurrency, cfg.duration, len(b.tiny.config)))
	t.columns = cols
	pushBlob := t.row(blob+" blob, monolithic push", "MB/s", higher)
	pullBlob := t.row(blob+" blob, pull", "MB/s", higher)
	pushImage := t.row("image of "+image+", push", "MB/s", higher)
	pullImage := t.row("image of "+image+", pull", "MB/s", higher)
	getManifest := t.row("manifest GET, authenticated", "req/s", higher)
	getManifestP99 := t.row("manifest GET, authenticated, p99", "ms", lower)
	getConfig := t.row(fmt.Sprintf("config blob GET (%d bytes), authenticated", len(b.tiny.config)), "req/s", higher)
	getConfigP50 := t.row("config blob GET, p50", "ms", lower)
	getConfigP99 := t.row("config blob GET, p99", "ms", lower)
	getConfigCPU := t.row("config blob GET, registry CPU", "cores", info)
	ratios := b.res.table("Encryption against plain (workload 10)", "Medians of the table above, encrypted / plain. "+
		"Target: encrypted push and pull at least 50 % of plain.")
	ratios.columns = []column{{colEncrypted, "berth, --encryption-key file:"}}
	fracRows := []struct {
		r   *row
		src *row
	}{
		{ratios.row("blob push", "%", higher), pushBlob},
		{ratios.row("blob pull", "%", higher), pullBlob},
		{ratios.row("image push", "%", higher), pushImage},
		{ratios.row("image pull", "%", higher), pullImage},
		{ratios.row("manifest GET", "%", higher), getManifest},
		{ratios.row("config blob GET", "%", higher), getConfig},
	}

	keyFile := filepath.Join(b.work, "kek")
	if err := encryption.GenerateKeyFile(keyFile); err != nil {
		return err
	}
	opt := instanceOptions{workDir: b.work, requestLogs: cfg.requestLogs, bcryptCost: cfg.bcryptCost}
	berth := b.res.flavours[0]
	encOpt := opt
	encOpt.args = []string{"--encryption-key", "file:" + keyFile}
	subjects := []*scaleSubject{
		b.startScaleSubject(ctx, cols[0], berth, opt),
		b.startScaleSubject(ctx, cols[1], berth, encOpt),
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
			b.notRun("workload 10, "+ss.col.label, append(t.rows, ratios.rows...), ss.col.key, ss.err)
			continue
		}
		ready = append(ready, ss)
	}
	record := func(r *row, key, what string, v float64, err error) bool {
		if err != nil {
			logf("%s, %s: %v", what, key, err)
			r.fail(key, err)
			return false
		}
		logf("%s, %s: %.1f %s", what, key, v, r.unit)
		r.add(key, v)
		return true
	}
	for rep := range cfg.reps {
		logf("workload 10, repetition %d of %d: hashing new content", rep+1, cfg.reps)
		b.content.refresh()
		tag := fmt.Sprintf("e%d", rep)
		for _, ss := range rotateScale(ready, rep) {
			v, err := b.pushBlob(ctx, ss.s)
			if record(pushBlob, ss.col.key, "push "+blob+" blob", v, err) {
				v, err = b.pullBlob(ctx, ss.s)
				record(pullBlob, ss.col.key, "pull "+blob+" blob", v, err)
			}
			v, err = b.pushImage(ctx, ss.s, tag)
			if record(pushImage, ss.col.key, "push image "+image, v, err) {
				v, err = b.pullImage(ctx, ss.s, tag)
				record(pullImage, ss.col.key, "pull image "+image, v, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	for rep := range cfg.reps {
		for _, ss := range rotateScale(ready, rep) {
			res, err := b.smallRequests(ctx, ss.s, smallVariants[0])
			if record(getManifest, ss.col.key, "manifest GET", res.rate(), err) {
				getManifestP99.add(ss.col.key, ms(res.p99))
			}
			res, err = b.configRequests(ctx, ss.s)
			if record(getConfig, ss.col.key, "config blob GET", res.rate(), err) {
				b.noteErrors("workload 10 config blob GET", ss.s, res)
				getConfigP50.add(ss.col.key, ms(res.p50))
				getConfigP99.add(ss.col.key, ms(res.p99))
				getConfigCPU.add(ss.col.key, res.serverCPU)
			}
		}
	}
	for _, f := range fracRows {
		n, ok1 := f.src.median(colEncrypted)
		d, ok2 := f.src.median(colPlain)
		if ok1 && ok2 && d > 0 {
			f.r.add(colEncrypted, 100*n/d)
		}
	}
	return nil
}

// configRequests GETs the tiny image's config blob from bench/app at
// cfg.concurrency, closed loop, with the scoped token's access token.
func (b *bench) configRequests(ctx context.Context, s *subject) (loadResult, error) {
	in, c := s.auth, s.token
	spec := loadSpec{
		concurrency: b.cfg.concurrency, duration: b.cfg.duration, maxRequests: b.cfg.maxRequests,
		newRequest: func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/v2/"+smallRepo+"/blobs/"+b.tiny.configDigest, nil)
		},
		check: expectStatus(http.StatusOK, int64(len(b.tiny.config))),
		pid:   in.pid(),
	}
	h, err := c.headerSource(ctx, pullScope(smallRepo))
	if err != nil {
		return loadResult{}, err
	}
	spec.auth = h
	if err := warmUp(ctx, b.small, spec); err != nil {
		return loadResult{}, err
	}
	return runLoad(ctx, b.small, spec)
}
