package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec describes one closed-loop load run: concurrency workers, each
// sending its next request as soon as the previous one is answered, until
// the duration is over or maxRequests have been sent, whichever comes first.
type loadSpec struct {
	concurrency int
	duration    time.Duration
	maxRequests int64
	// newRequest builds a worker's request. Each worker reuses its own
	// request for every round, as a request may be sent again once its
	// response body is closed.
	newRequest func(ctx context.Context) (*http.Request, error)
	// auth, when not nil, gives the Authorization value of each request.
	auth func() string
	// check judges a response, given the number of body bytes read.
	check func(resp *http.Response, bodyBytes int64) error
	// pid is the server process whose CPU time is measured; 0 for none.
	pid int
}

// loadResult is what one run measured.
type loadResult struct {
	requests  int64 // answered as expected
	errors    int64 // failed or answered otherwise
	firstErr  string
	elapsed   time.Duration
	p50, p99  time.Duration
	serverCPU float64 // average number of cores the server process used
	clientCPU float64 // average number of cores this process used
	otherCPU  float64 // average number of cores every other process of the machine used
}

// rate is the successful requests per second.
func (r loadResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// runLoad runs spec with hc. The client's own time goes into every latency:
// building the request, the round trip and reading the body.
func runLoad(ctx context.Context, hc *http.Client, spec loadSpec) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, spec.duration+time.Minute)
	defer cancel()
	reqs := make([]*http.Request, spec.concurrency)
	for i := range reqs {
		r, err := spec.newRequest(ctx)
		if err != nil {
			return loadResult{}, err
		}
		reqs[i] = r
	}

	var (
		issued   atomic.Int64
		errCount atomic.Int64
		errOnce  sync.Once
		firstErr string
		wg       sync.WaitGroup
	)
	fail := func(msg string) {
		errCount.Add(1)
		errOnce.Do(func() { firstErr = msg })
	}
	latencies := make([][]time.Duration, spec.concurrency)
	start := make(chan struct{})
	var deadline time.Time
	for w := range spec.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := reqs[w]
			lat := make([]time.Duration, 0, 1<<14)
			<-start
			for issued.Add(1) <= spec.maxRequests && time.Now().Before(deadline) && ctx.Err() == nil {
				if spec.auth != nil {
					req.Header["Authorization"] = []string{spec.auth()}
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					fail(err.Error())
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if err == nil {
					err = spec.check(resp, n)
				}
				if err != nil {
					fail(err.Error())
					continue
				}
				lat = append(lat, d)
			}
			latencies[w] = lat
		}()
	}

	cpu0, scpu0, mcpu0 := selfCPU(), serverCPU(spec.pid), machineCPU()
	t0 := time.Now()
	deadline = t0.Add(spec.duration)
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	cpu1, scpu1, mcpu1 := selfCPU(), serverCPU(spec.pid), machineCPU()

	all := slices.Concat(latencies...)
	slices.Sort(all)
	res := loadResult{
		requests:  int64(len(all)),
		errors:    errCount.Load(),
		firstErr:  firstErr,
		elapsed:   elapsed,
		p50:       percentile(all, 50),
		p99:       percentile(all, 99),
		clientCPU: (cpu1 - cpu0).Seconds() / elapsed.Seconds(),
		serverCPU: (scpu1 - scpu0).Seconds() / elapsed.Seconds(),
	}
	// Clamped: the three clocks tick at different moments.
	res.otherCPU = max(0, (mcpu1-mcpu0).Seconds()/elapsed.Seconds()-res.clientCPU-res.serverCPU)
	if res.requests == 0 {
		return res, fmt.Errorf("no request succeeded: %s", firstErr)
	}
	return res, nil
}

func serverCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := processCPU(pid)
	return d
}

// expectStatus returns a check that wants status and, unless wantBytes is
// negative, a body of exactly wantBytes bytes.
func expectStatus(status int, wantBytes int64) func(*http.Response, int64) error {
	return func(resp *http.Response, n int64) error {
		if resp.StatusCode != status {
			return fmt.Errorf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
		}
		if wantBytes >= 0 && n != wantBytes {
			return fmt.Errorf("%s %s: %d body bytes, want %d", resp.Request.Method, resp.Request.URL.Path, n, wantBytes)
		}
		return nil
	}
}
