package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fabrikam/dronedelivery/shared/domain"
	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// endToEnd offers deliveries at a constant rate and then reads every
// accepted delivery's createdAt and scheduledAt: the ingest latency at that
// rate, the accept → Scheduled latency, and the memory under that load.
func (b *benchRun) endToEnd(ctx context.Context) error {
	s, err := b.startServer(ctx, "e2e", b.small)
	if err != nil {
		return err
	}
	defer s.stop()
	name := fmt.Sprintf("e2e-%g/s", b.o.e2eRate)
	if m, err := s.p.ReadMemory(); err == nil {
		small, _ := b.fleetSizes()
		b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: fmt.Sprintf("idle, %d drones loaded", small), RSSMB: m.RSSMB, PeakMB: m.PeakMB})
	}
	total := int(b.o.e2eRate * b.o.e2eDur.Seconds())
	accepted := make([]string, total)
	peak := s.p.SampleMemory(250 * time.Millisecond)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: name, Rate: b.o.e2eRate, Concurrency: b.o.connections, Duration: b.o.e2eDur,
		Progress: b.progress}, ingestOp(s.client, benchPickupRadiusKm, accepted))
	loadEnd := time.Now()
	// Sampled while the load ran, not during the read-back that follows,
	// which loads the server far harder than the rate under test.
	rss := peak()
	m, _ := s.p.ReadMemory()
	b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: fmt.Sprintf("under %g deliveries/s (largest sample)", b.o.e2eRate), RSSMB: rss, PeakMB: m.PeakMB})
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, name, accepted, loadEnd, cpu0)
	if m, merr := s.p.ReadMemory(); merr == nil {
		b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "dronedelivery serve", When: "after reading every delivery back at full speed", RSSMB: m.RSSMB, PeakMB: m.PeakMB})
	}
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// endToEndMax accepts deliveries as fast as the server answers, up to
// -max-deliveries, and reports how fast they were carried to Scheduled.
func (b *benchRun) endToEndMax(ctx context.Context) error {
	s, err := b.startServer(ctx, "e2e-max", b.large)
	if err != nil {
		return err
	}
	defer s.stop()
	accepted := make([]string, b.o.maxDeliveries)
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: "e2e-max", Concurrency: b.o.connections, Duration: b.o.maxDur,
		MaxOps: b.o.maxDeliveries, Progress: b.progress}, ingestOp(s.client, benchPickupRadiusKm, accepted))
	loadEnd := time.Now()
	b.rep.Runs = append(b.rep.Runs, r)
	c, err := b.finish(ctx, s, "e2e-max", accepted, loadEnd, cpu0)
	if err != nil {
		return err
	}
	b.rep.Completions = append(b.rep.Completions, c)
	return nil
}

// finish waits for the chain to drain, records the server's CPU time per
// delivery up to then, and reads the deliveries back.
func (b *benchRun) finish(ctx context.Context, s *server, name string, accepted []string, loadEnd time.Time, cpu0 time.Duration) (loadgen.Completion, error) {
	ids := acceptedIDs(accepted)
	if len(ids) == 0 {
		return loadgen.Completion{}, errors.New("no delivery was accepted")
	}
	b.waitDrain(ctx, s, ids, loadEnd)
	cpu1, cerr := s.p.CPUTime()
	c, err := b.readBack(ctx, s, name, ids, loadEnd)
	if err == nil && cerr == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("dronedelivery serve", name+", ingest through Scheduled", cpu1-cpu0, c.Completed, "deliveries"))
	}
	return c, err
}

// deliveryTimes is what the read-back needs of GET /api/deliveries/{id}.
type deliveryTimes struct {
	Stage       domain.Stage `json:"stage"`
	CreatedAt   time.Time    `json:"createdAt"`
	ScheduledAt *time.Time   `json:"scheduledAt"`
}

// acceptedIDs lists the ids of the deliveries a run had accepted, in the
// order they were requested.
func acceptedIDs(accepted []string) []string {
	var ids []string
	for _, id := range accepted {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// waitDrain waits until the last deliveries accepted have left the chain,
// watching only those few so that the server is not loaded by polling.
func (b *benchRun) waitDrain(ctx context.Context, s *server, ids []string, loadEnd time.Time) {
	deadline := loadEnd.Add(b.o.drain)
	last := ids[max(0, len(ids)-16):]
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := 0
		for _, id := range last {
			if t, err := fetchTimes(ctx, s.client, id); err == nil && (t.Stage == domain.StageScheduled || t.Stage == domain.StageFailed) {
				done++
			}
		}
		if done == len(last) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.say("   chain drained %.1fs after the load", time.Since(loadEnd).Seconds())
}

// readBack reads each accepted delivery's own timestamps, reading again
// those still in the chain until the drain time is up.
func (b *benchRun) readBack(ctx context.Context, s *server, name string, ids []string, loadEnd time.Time) (loadgen.Completion, error) {
	deadline := loadEnd.Add(b.o.drain)
	spans := make([]loadgen.Span, len(ids))
	final := make([]bool, len(ids))
	for pass := 0; ; pass++ {
		var todo []int
		for i := range ids {
			if !final[i] {
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 || (pass > 0 && !time.Now().Before(deadline)) || ctx.Err() != nil {
			break
		}
		if pass > 0 {
			time.Sleep(time.Second)
		}
		r := loadgen.Run(ctx, loadgen.Config{Name: name + " read-back", Concurrency: b.o.connections, Duration: time.Hour, MaxOps: len(todo)},
			func(ctx context.Context, k int) error {
				i := todo[k]
				t, err := fetchTimes(ctx, s.client, ids[i])
				if err != nil {
					return err
				}
				spans[i] = loadgen.Span{Start: t.CreatedAt, Failed: t.Stage == domain.StageFailed}
				if t.ScheduledAt != nil && t.Stage != domain.StageFailed {
					spans[i].End = *t.ScheduledAt
				}
				final[i] = t.Stage == domain.StageFailed || t.ScheduledAt != nil
				return nil
			})
		if pass == 0 {
			b.rep.Runs = append(b.rep.Runs, r)
		}
		if r.Failed > 0 {
			return loadgen.Completion{}, fmt.Errorf("read-back: %d of %d reads failed: %v", r.Failed, len(todo), r.ErrorKinds())
		}
	}
	c := loadgen.Summarise(name, spans, loadEnd)
	b.say("   %d scheduled, %d failed, %d pending; %.0f/s over %.1fs; accept→Scheduled p50 %.1f ms p99 %.1f ms",
		c.Completed, c.Failed, c.Pending, c.Throughput, c.SpanSec, c.Latency.P50Ms, c.Latency.P99Ms)
	return c, nil
}

func fetchTimes(ctx context.Context, c *loadgen.Client, id string) (*deliveryTimes, error) {
	status, body, err := c.Do(ctx, http.MethodGet, "/api/deliveries/"+id, nil, true)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET delivery: status %d", status)
	}
	var t deliveryTimes
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("GET delivery: %w", err)
	}
	return &t, nil
}

// --- dispatch -----------------------------------------------------------
