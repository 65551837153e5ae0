package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// baseline measures a bare net/http server decoding and re-encoding the
// same delivery requests, in a process of its own like the server under
// test, with the same client: the yardstick for every HTTP figure.
func (b *benchRun) baseline(ctx context.Context) error {
	p, err := loadgen.Start(ctx, loadgen.StartOptions{Path: b.o.self, Args: []string{"bench", "-serve-baseline", "127.0.0.1:0"},
		Env: b.childEnv(), ReadyMsg: "baseline listening"})
	if err != nil {
		return err
	}
	defer p.Stop(5 * time.Second)
	c := loadgen.NewClient(p.Base, loadgen.ClientOptions{Connections: b.o.connections, Owner: "bench"})
	defer c.Close()
	peak := p.SampleMemory(250 * time.Millisecond)
	cpu0, _ := p.CPUTime()
	b.baseMax = loadgen.Run(ctx, loadgen.Config{Name: "baseline-max", Concurrency: b.o.connections, Duration: b.o.baselineDur, Progress: b.progress},
		ingestOp(c, benchPickupRadiusKm, nil))
	if cpu1, err := p.CPUTime(); err == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("bare net/http baseline", b.baseMax.Name, cpu1-cpu0, int(b.baseMax.OK), "requests"))
	}
	b.base1000 = loadgen.Run(ctx, loadgen.Config{Name: fmt.Sprintf("baseline-%g/s", b.o.e2eRate), Rate: b.o.e2eRate, Concurrency: b.o.connections,
		Duration: b.o.baselineDur, Progress: b.progress}, ingestOp(c, benchPickupRadiusKm, nil))
	b.baseRSS = peak()
	b.rep.Runs = append(b.rep.Runs, b.baseMax, b.base1000)
	b.rep.Memory = append(b.rep.Memory, loadgen.MemoryRow{Process: "bare net/http baseline", When: "under its load runs", RSSMB: b.baseRSS, PeakMB: b.baseRSS})
	return nil
}

// ingest measures accepting deliveries as fast as the server answers,
// with the chain consuming behind it as it always does.
func (b *benchRun) ingest(ctx context.Context) error {
	s, err := b.startServer(ctx, "ingest", b.large)
	if err != nil {
		return err
	}
	defer s.stop()
	_, large := b.fleetSizes()
	cpu0, _ := s.p.CPUTime()
	r := loadgen.Run(ctx, loadgen.Config{Name: "ingest-max", Concurrency: b.o.connections, Duration: b.o.ingestDur,
		MaxOps: large * 9 / 10, Progress: b.progress}, ingestOp(s.client, benchPickupRadiusKm, nil))
	if cpu1, err := s.p.CPUTime(); err == nil {
		b.rep.CPU = append(b.rep.CPU, loadgen.NewCPURow("dronedelivery serve", "ingest-max, the chain running behind", cpu1-cpu0, int(r.OK), "requests"))
	}
	b.rep.Runs = append(b.rep.Runs, r)
	return nil
}
