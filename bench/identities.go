package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// identitiesTimeout bounds creating the tokens of workload 7, one
// transaction each.
const identitiesTimeout = 20 * time.Minute

// identityWorkload runs workload 7 on berth's authenticated instance: it
// creates cfg.identities tokens, each with its own scope map, through the
// REST API, then times full listings of the tokens and of the scope maps.
// Distribution has no tokens, so only berth has figures.
func (b *bench) identityWorkload(ctx context.Context) error {
	cfg := b.cfg
	n := thousands(cfg.identities)
	t := b.res.table("Identities at scale (workload 7)", fmt.Sprintf("berth only (Distribution has no tokens), authenticated instance, as its owner user: "+
		"%s tokens, each created with its own scope map by one PUT /api/v1/tokens/{name} with scopeMapActions, %d requests at a time; "+
		"then full listings of the tokens and of the scope maps, each one GET of the REST API read to the end.", n, cfg.populateConcurrency))
	create := t.row(fmt.Sprintf("create %s tokens with their scope maps", n), "s", lower)
	listTokens := t.row(fmt.Sprintf("list %s tokens (GET /api/v1/tokens)", n), "s", lower)
	listMaps := t.row(fmt.Sprintf("list %s scope maps (GET /api/v1/scopeMaps)", n), "s", lower)
	for _, s := range b.subjects {
		if s.f.key != keyBerth {
			for _, r := range []*row{create, listTokens, listMaps} {
				r.notes[s.f.key] = "no tokens"
			}
		}
	}
	s := b.subjects[0]
	if err := alive(s); err != nil {
		return err
	}
	logf("creating %d tokens with their scope maps on berth", cfg.identities)
	d, err := b.createTokens(ctx, s.auth, cfg.identities)
	if err != nil {
		logf("create tokens on berth: %v", err)
		create.fail(keyBerth, err)
		return nil
	}
	logf("created %d tokens on berth in %.1f s", cfg.identities, d.Seconds())
	create.add(keyBerth, d.Seconds())
	for range cfg.reps {
		for _, l := range []struct {
			r    *row
			path string
		}{{listTokens, "/api/v1/tokens"}, {listMaps, "/api/v1/scopeMaps"}} {
			d, got, err := b.listAPI(ctx, s.auth, l.path)
			if err == nil && got < cfg.identities {
				err = fmt.Errorf("listed %d entries, want at least %d", got, cfg.identities)
			}
			if err != nil {
				logf("%s on berth: %v", l.r.label, err)
				l.r.fail(keyBerth, err)
				continue
			}
			logf("%s on berth: %.3f s", l.r.label, d.Seconds())
			l.r.add(keyBerth, d.Seconds())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// createTokens creates tokens bench-id-NNNNNN, each with a scope map of
// its own, and returns how long that took.
func (b *bench) createTokens(ctx context.Context, in *instance, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, identitiesTimeout)
	defer cancel()
	start := time.Now()
	err := parallel(b.cfg.populateConcurrency, n, func(i int) error {
		name := fmt.Sprintf("bench-id-%06d", i)
		body := fmt.Sprintf(`{"properties": {"scopeMapActions": ["repositories/bench/id%d/content/read"]}}`, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, in.url+"/api/v1/tokens/"+name, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.SetBasicAuth(in.user, in.pass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.small.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return expect(resp, http.StatusCreated, "create token "+name)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create %d tokens: %v", n, err)
	}
	return time.Since(start), nil
}

// listAPI times one GET of a REST API listing, read and decoded to the
// end, and returns how many entries it had.
func (b *bench) listAPI(ctx context.Context, in *instance, path string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+path, nil)
	if err != nil {
		return 0, 0, err
	}
	req.SetBasicAuth(in.user, in.pass)
	start := time.Now()
	resp, err := b.small.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, expect(resp, http.StatusOK, "GET "+path)
	}
	var list struct {
		Value []json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, 0, fmt.Errorf("GET %s: %v", path, err)
	}
	return time.Since(start), len(list.Value), nil
}
