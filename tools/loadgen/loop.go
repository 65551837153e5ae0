package loadgen

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Op performs operation i of a run. Its error is tallied by message, so an
// op should return errors that name a kind ("status 503"), not an instance.
type Op func(ctx context.Context, i int) error

// Config describes one run.
type Config struct {
	// Name labels the run in progress lines and reports.
	Name string
	// Rate > 0 makes the run open loop: operation i is due at start + i/Rate
	// whether or not earlier ones have answered, and its latency counts
	// from then, so a server that stalls is charged for every request it
	// kept waiting (no coordinated omission). Rate 0 makes it closed loop:
	// each worker sends the next operation as soon as its previous one
	// answered, which finds the maximum throughput.
	Rate float64
	// Concurrency is the number of workers. In an open-loop run it bounds
	// the operations in flight: one that falls due while all are busy
	// waits, and the wait is part of its latency.
	Concurrency int
	// Duration is how long operations are started for.
	Duration time.Duration
	// MaxOps ends the run after this many operations (0: no limit).
	MaxOps int
	// Drain bounds how long an open-loop run waits after Duration for
	// operations that fell due but have not started; those are never sent
	// and count as Unsent (default 10 s).
	Drain time.Duration
	// Progress receives a status line every second; nil for none.
	Progress io.Writer
}

// Result is what one run measured.
type Result struct {
	Name        string    `json:"name"`
	Mode        string    `json:"mode"` // "open" or "closed"
	Rate        float64   `json:"offeredPerSec,omitempty"`
	Concurrency int       `json:"concurrency"`
	Started     time.Time `json:"started"`
	ElapsedSec  float64   `json:"elapsedSec"`
	Sent        int64     `json:"sent"`
	OK          int64     `json:"ok"`
	Failed      int64     `json:"failed"`
	Unsent      int64     `json:"unsent,omitempty"`
	// Throughput is successful operations per second of the run.
	Throughput float64 `json:"okPerSec"`
	// Latency counts from when an operation was due (open loop) or sent
	// (closed loop) to its answer.
	Latency Summary `json:"latency"`
	// Service counts from when an operation was actually sent; it differs
	// from Latency only in an open-loop run that fell behind.
	Service Summary          `json:"service"`
	Errors  map[string]int64 `json:"errors,omitempty"`

	latency, service *Histogram
}

// LatencyHistogram returns the histogram behind Latency.
func (r *Result) LatencyHistogram() *Histogram { return r.latency }

// maxErrorKinds bounds the error tally: past it, errors count as "other".
const maxErrorKinds = 20

type tally struct {
	sent, ok, failed, unsent atomic.Int64
	mu                       sync.Mutex
	errors                   map[string]int64
}

func (t *tally) fail(err error) {
	t.failed.Add(1)
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.errors[msg]; !ok && len(t.errors) >= maxErrorKinds {
		msg = "other"
	}
	t.errors[msg]++
}

// Run performs one run and returns what it measured; it stops early when
// ctx ends.
func Run(ctx context.Context, cfg Config, op Op) *Result {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	r := &Result{Name: cfg.Name, Mode: "closed", Rate: cfg.Rate, Concurrency: cfg.Concurrency,
		latency: NewHistogram(), service: NewHistogram()}
	if cfg.Rate > 0 {
		r.Mode = "open"
	}
	t := &tally{errors: map[string]int64{}}
	var last atomic.Int64 // unix ns of the latest answer
	record := func(due, sent time.Time, err error) {
		now := time.Now()
		r.latency.Record(now.Sub(due))
		r.service.Record(now.Sub(sent))
		if err != nil {
			t.fail(err)
		} else {
			t.ok.Add(1)
		}
		for cur := last.Load(); now.UnixNano() > cur; cur = last.Load() {
			if last.CompareAndSwap(cur, now.UnixNano()) {
				break
			}
		}
	}

	start := time.Now()
	r.Started = start
	stopProgress := progress(cfg, r, t, start)
	if r.Mode == "open" {
		runOpen(ctx, cfg, op, start, t, record)
	} else {
		runClosed(ctx, cfg, op, start, t, record)
	}
	stopProgress()

	end := time.Unix(0, last.Load())
	if end.Before(start) {
		end = time.Now()
	}
	r.finish(t, end.Sub(start))
	return r
}

// finish fills in r's figures from the tally of a run that took elapsed.
func (r *Result) finish(t *tally, elapsed time.Duration) {
	r.ElapsedSec = elapsed.Seconds()
	r.Sent, r.OK, r.Failed, r.Unsent = t.sent.Load(), t.ok.Load(), t.failed.Load(), t.unsent.Load()
	if r.ElapsedSec > 0 {
		r.Throughput = float64(r.OK) / r.ElapsedSec
	}
	r.Latency, r.Service = r.latency.Summary(), r.service.Summary()
	if len(t.errors) > 0 {
		r.Errors = t.errors
	}
}

// dueAt is when operation i of an open-loop run falls due.
func dueAt(start time.Time, rate float64, i int) time.Time {
	return start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
}

func runOpen(ctx context.Context, cfg Config, op Op, start time.Time, t *tally, record func(due, sent time.Time, err error)) {
	total := int(cfg.Rate * cfg.Duration.Seconds())
	if cfg.MaxOps > 0 {
		total = min(total, cfg.MaxOps)
	}
	// Buffered for the whole run, so the schedule never waits on a worker.
	due := make(chan int, min(max(total, 1), 1<<20))
	var expired atomic.Bool
	stop := time.AfterFunc(time.Until(start.Add(cfg.Duration+cfg.Drain)), func() { expired.Store(true) })
	defer stop.Stop()

	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range due {
				if expired.Load() || ctx.Err() != nil {
					t.unsent.Add(1)
					continue
				}
				sent := time.Now()
				t.sent.Add(1)
				err := op(ctx, i)
				record(dueAt(start, cfg.Rate, i), sent, err)
			}
		}()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
schedule:
	for i := range total {
		// Sleeping for less than a timer's granularity would only add
		// jitter; a slightly early send is charged from its due time anyway.
		if wait := time.Until(dueAt(start, cfg.Rate, i)); wait > 200*time.Microsecond {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				t.unsent.Add(int64(total - i))
				break schedule
			case <-timer.C:
			}
		}
		due <- i
	}
	close(due)
	wg.Wait()
}

func runClosed(ctx context.Context, cfg Config, op Op, start time.Time, t *tally, record func(due, sent time.Time, err error)) {
	deadline := start.Add(cfg.Duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent := time.Now()
				if !sent.Before(deadline) {
					return
				}
				i := int(next.Add(1) - 1)
				if cfg.MaxOps > 0 && i >= cfg.MaxOps {
					return
				}
				t.sent.Add(1)
				err := op(ctx, i)
				record(sent, sent, err)
			}
		}()
	}
	wg.Wait()
}

// progress prints a status line every second until the returned function
// is called.
func progress(cfg Config, r *Result, t *tally, start time.Time) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prevOK int64
		prev := start
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				ok := t.ok.Load()
				rate := float64(ok-prevOK) / now.Sub(prev).Seconds()
				prevOK, prev = ok, now
				fmt.Fprintf(cfg.Progress, "  %-12s %5.1fs  ok %8d  failed %6d  in flight %5d  %8.0f/s  p50 %7.2fms  p99 %8.2fms\n",
					cfg.Name, now.Sub(start).Seconds(), ok, t.failed.Load(), t.sent.Load()-ok-t.failed.Load(), rate,
					ms(r.latency.Quantile(0.5)), ms(r.latency.Quantile(0.99)))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// ErrorKinds lists a result's error messages, most frequent first.
func (r *Result) ErrorKinds() []string {
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if r.Errors[kinds[i]] != r.Errors[kinds[j]] {
			return r.Errors[kinds[i]] > r.Errors[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	return kinds
}

// Measure runs op n times, one after another, and records the duration
// each call reports, so that an op can leave its setup and cleanup out of
// what is timed. A call that fails counts as failed and is not recorded.
func Measure(ctx context.Context, name string, n int, op func(ctx context.Context, i int) (time.Duration, error)) *Result {
	r := &Result{Name: name, Mode: "closed", Concurrency: 1, latency: NewHistogram(), service: NewHistogram()}
	t := &tally{errors: map[string]int64{}}
	r.Started = time.Now()
	var busy time.Duration
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t.sent.Add(1)
		d, err := op(ctx, i)
		if err != nil {
			t.fail(err)
			continue
		}
		t.ok.Add(1)
		busy += d
		r.latency.Record(d)
		r.service.Record(d)
	}
	r.finish(t, busy)
	return r
}
