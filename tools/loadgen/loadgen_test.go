package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/tools/apiclient"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	t.Parallel()
	prevEnd := uint64(0)
	for i := range nBuckets {
		low, width := bucketRange(i)
		require.Equal(t, prevEnd, low, "bucket %d starts where %d ended", i, i-1)
		require.Equal(t, i, bucketOf(low))
		require.Equal(t, i, bucketOf(low+width-1))
		prevEnd = low + width
	}
	require.Equal(t, uint64(maxValue)+1, prevEnd)
}

func TestQuantilesMatchSortedValues(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	var vals []time.Duration
	for range 100_000 {
		// Log-uniform from 1 µs to 10 s, the span of real latencies.
		d := time.Duration(1e3 * math.Pow(10, r.Float64()*7))
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		assert.GreaterOrEqual(t, got, exact, "p%g never understated", q*100)
		assert.InEpsilon(t, float64(exact), float64(got), 0.002, "p%g within 0.2%%", q*100)
	}
	assert.Equal(t, vals[0], h.Min())
	assert.Equal(t, vals[len(vals)-1], h.Max())
	assert.Equal(t, int64(len(vals)), h.Count())
}

func TestHistogramMergeAndConcurrentRecord(t *testing.T) {
	t.Parallel()
	a, b := NewHistogram(), NewHistogram()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				a.Record(time.Duration(w*1000+i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	b.Record(time.Hour)
	b.Merge(a)
	assert.Equal(t, int64(8001), b.Count())
	assert.Equal(t, time.Duration(0), b.Min())
	assert.Equal(t, time.Hour, b.Max())
	s := a.Summary()
	assert.Equal(t, int64(8000), s.Count)
	assert.InDelta(t, 4.0, s.P50Ms, 0.02)
	assert.InDelta(t, 7.92, s.P99Ms, 0.02)
}

func TestEmptyHistogram(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	assert.Equal(t, Summary{}, h.Summary())
	h.Record(-time.Second)
	assert.Equal(t, time.Duration(0), h.Quantile(0.99), "negative durations count as zero")
}

func TestOpenLoopSendsTheScheduleAndChargesWaiting(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	seen := make([]atomic.Bool, 200)
	// Drain only ends a hang: every due operation is sent, however late.
	r := Run(context.Background(), Config{Name: "open", Rate: 2000, Duration: 100 * time.Millisecond, Concurrency: 4, Drain: time.Minute},
		func(_ context.Context, i int) error {
			calls.Add(1)
			seen[i].Store(true)
			if i%10 == 0 {
				return errors.New("status 503")
			}
			return nil
		})
	assert.Equal(t, "open", r.Mode)
	assert.Equal(t, int64(200), r.Sent+r.Unsent, "every due operation is sent or counted unsent")
	assert.Equal(t, int64(200), calls.Load())
	for i := range seen {
		assert.True(t, seen[i].Load(), "operation %d", i)
	}
	assert.Equal(t, int64(20), r.Failed)
	assert.Equal(t, int64(180), r.OK)
	assert.Equal(t, map[string]int64{"status 503": 20}, r.Errors)
	assert.Equal(t, int64(200), r.Latency.Count)
	assert.GreaterOrEqual(t, r.Latency.P99Ms, r.Service.P99Ms, "latency from the due time includes the service time")
}

func TestClosedLoopStopsAtMaxOps(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	r := Run(context.Background(), Config{Name: "closed", Concurrency: 8, Duration: time.Minute, MaxOps: 500},
		func(context.Context, int) error { calls.Add(1); return nil })
	assert.Equal(t, "closed", r.Mode)
	assert.Equal(t, int64(500), calls.Load())
	assert.Equal(t, int64(500), r.OK)
	assert.Greater(t, r.Throughput, 0.0)
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	r := Run(ctx, Config{Concurrency: 2, Duration: time.Hour}, func(context.Context, int) error {
		if calls.Add(1) == 100 {
			cancel()
		}
		return nil
	})
	assert.GreaterOrEqual(t, r.OK, int64(100))
	assert.Less(t, r.OK, int64(200))
}

func TestSummariseCompletions(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var spans []Span
	for i := range 100 {
		start := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		spans = append(spans, Span{Start: start, End: start.Add(50 * time.Millisecond)})
	}
	spans = append(spans, Span{Start: t0, Failed: true}, Span{Start: t0})
	c := Summarise("e2e", spans, t0.Add(time.Second))
	assert.Equal(t, 102, c.Accepted)
	assert.Equal(t, 100, c.Completed)
	assert.Equal(t, 1, c.Failed)
	assert.Equal(t, 1, c.Pending)
	assert.InDelta(t, 50, c.Latency.P99Ms, 0.1)
	assert.InDelta(t, 100/1.04, c.Throughput, 0.01)
	assert.Equal(t, []int{95, 5}, c.PerSecond)
	assert.InDelta(t, 96, c.LoadedThroughput, 0.01)
}

func TestClientSignsUpOnceOn401(t *testing.T) {
	t.Parallel()
	var signUps atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/accounts":
			signUps.Add(1)
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"apiKey":"k1","accountId":"acct"}`))
		case strings.HasPrefix(r.URL.Path, "/api/drones"):
			if r.Header.Get("Authorization") != "Bearer op" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusOK)
		case r.Header.Get("Authorization") != "Bearer k1":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			var body struct{ OwnerID string }
			json.NewDecoder(r.Body).Decode(&body)
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(body.OwnerID))
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, ClientOptions{Connections: 4, OperatorKey: "op", OperatorPaths: []string{"/api/drones"}, Owner: "anon",
		SignUp: func(ctx context.Context, c *Client) (Credentials, error) {
			acct, err := c.API().SignUp(ctx, apiclient.Registration{Name: "Load Co", ContactEmail: "load@example.com"})
			return Credentials{Key: acct.APIKey, Owner: acct.AccountID}, err
		}})
	defer c.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := c.Do(context.Background(), http.MethodPost, "/api/deliveryrequests",
				func(owner string) []byte { return []byte(`{"ownerId":"` + owner + `"}`) }, true)
			assert.NoError(t, err)
			assert.Equal(t, http.StatusAccepted, status)
			assert.Equal(t, "acct", string(body), "the retry carries the signed-up owner")
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(1), signUps.Load())
	status, _, err := c.Do(context.Background(), http.MethodGet, "/api/drones", nil, false)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "fleet paths carry the operator key")
}

func TestReportWritesJSONAndMarkdown(t *testing.T) {
	t.Parallel()
	h := NewHistogram()
	h.Record(3 * time.Millisecond)
	rep := &Report{Title: "Bench", Started: time.Now(), Command: "dronedelivery bench", Machine: DescribeMachine(),
		Runs:     []*Result{{Name: "ingest", Mode: "closed", Concurrency: 32, OK: 10, Throughput: 12345.6, Latency: h.Summary()}},
		Startups: []Startup{NewStartup("serve", []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond})},
		Targets: []Target{
			{Name: "throughput", Goal: "≥ 5,000/s", Limit: 5000, HigherIsBetter: true, Unit: "/s", Measured: true, Value: 4000, BaselineValue: 40000, Baseline: "40,000/s"},
			{Name: "start-up", Goal: "≤ 50 ms", Limit: 50, Unit: "ms", Measured: true, Value: 20},
			{Name: "memory", Goal: "≤ 60 MB", Limit: 60},
		}}
	rep.Finish()
	dir := t.TempDir()
	md, err := rep.Write(dir)
	require.NoError(t, err)
	assert.Equal(t, "NOT MET", rep.Targets[0].Status)
	assert.InDelta(t, 0.1, rep.Targets[0].Ratio, 1e-9)
	assert.Equal(t, "met", rep.Targets[1].Status)
	assert.Equal(t, "not measured", rep.Targets[2].Status)
	assert.Equal(t, 20.0, rep.Startups[0].MedianMs)
	assert.Contains(t, md, "| throughput | ≥ 5,000/s | 4,000 /s | 40,000/s | 0.1× | — | NOT MET |")
	assert.Contains(t, md, "| ingest | closed | 32 | max | 12,346 | 10 |")
	fromDisk, err := os.ReadFile(filepath.Join(dir, "report.md"))
	require.NoError(t, err)
	assert.Equal(t, md, string(fromDisk))
	var back Report
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, "NOT MET", back.Targets[0].Status)
}

func TestMeasureRecordsWhatTheOpReports(t *testing.T) {
	t.Parallel()
	r := Measure(context.Background(), "m", 10, func(_ context.Context, i int) (time.Duration, error) {
		if i == 9 {
			return 0, errors.New("no drone")
		}
		return time.Duration(i+1) * time.Millisecond, nil
	})
	assert.Equal(t, int64(9), r.OK)
	assert.Equal(t, int64(1), r.Failed)
	assert.Equal(t, map[string]int64{"no drone": 1}, r.Errors)
	assert.InDelta(t, 9.0, r.Latency.MaxMs, 0.02)
	assert.InDelta(t, 1.0, r.Latency.MinMs, 0.002)
	assert.InDelta(t, 0.045, r.ElapsedSec, 1e-9, "the elapsed time is the sum of what was timed")
}
