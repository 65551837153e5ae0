package bench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fabrikam/dronedelivery/tools/loadgen"
)

// targets sets the report's target table from the runs of this session.
func (b *benchRun) targets() {
	find := func(prefix string) *loadgen.Result {
		for _, r := range b.rep.Runs {
			if strings.HasPrefix(r.Name, prefix) {
				return r
			}
		}
		return nil
	}
	named := func(name string) *loadgen.Result {
		for _, r := range b.rep.Runs {
			if r.Name == name {
				return r
			}
		}
		return nil
	}
	completion := func(name string) *loadgen.Completion {
		for i := range b.rep.Completions {
			if b.rep.Completions[i].Name == name {
				return &b.rep.Completions[i]
			}
		}
		return nil
	}
	// againstBaseline1000 sets a p99 target's baseline: bare net/http's p99
	// under the same rate.
	againstBaseline1000 := func(tg *loadgen.Target) {
		if b.base1000 != nil {
			tg.Baseline, tg.BaselineValue = fmt.Sprintf("bare net/http p99 %.2f ms", b.base1000.Latency.P99Ms), b.base1000.Latency.P99Ms
		}
	}
	var t []loadgen.Target

	through := loadgen.Target{Name: "deliveries/s accepted and carried to Scheduled", Goal: "≥ 5,000/s", Limit: 5000, HigherIsBetter: true, Unit: "/s",
		Reference: "1,100/s (35 workflow replicas on AKS)"}
	if c := completion("e2e-max"); c != nil {
		through.Measured, through.Value = true, c.Throughput
	}
	if b.baseMax != nil {
		through.Baseline, through.BaselineValue = fmt.Sprintf("bare net/http %.0f req/s", b.baseMax.Throughput), b.baseMax.Throughput
	}
	t = append(t, through)

	e2eName := fmt.Sprintf("e2e-%g/s", b.o.e2eRate)
	ingest := loadgen.Target{Name: fmt.Sprintf("ingest p99 at %g/s", b.o.e2eRate), Goal: "≤ 10 ms", Limit: 10, Unit: "ms",
		Reference: "2,540 ms (ingestion p99, 10 replicas)"}
	if r := find(e2eName); r != nil && r.OK > 0 {
		ingest.Measured, ingest.Value = true, r.Latency.P99Ms
	}
	againstBaseline1000(&ingest)
	t = append(t, ingest)

	sched := loadgen.Target{Name: fmt.Sprintf("accept → Scheduled p99 at %g/s", b.o.e2eRate), Goal: "≤ 100 ms", Limit: 100, Unit: "ms",
		Reference: "2,540 ms (workflow p99)"}
	if c := completion(e2eName); c != nil && c.Completed > 0 {
		sched.Measured, sched.Value = true, c.Latency.P99Ms
	}
	againstBaseline1000(&sched)
	t = append(t, sched)

	t = append(t, b.denseTargets(completion)...)

	for _, shape := range dispatchShapes {
		tag := dispatchTag(b.o.dispatchFleet, shape)
		disp := loadgen.Target{Name: "dispatch p99 per assignment, " + tag, Goal: "≤ 1 ms", Limit: 1, Unit: "ms",
			Reference: "none: a stub returning a random id"}
		// The step as the runtime runs it on the embedded backend.
		if r := named("dispatch ScheduleDrone in a unit of work, " + tag); r != nil && r.OK > 0 {
			disp.Measured, disp.Value = true, r.Latency.P99Ms
		}
		if r := named("dispatch search, linear scan, " + tag); r != nil && r.OK > 0 {
			disp.Baseline, disp.BaselineValue = fmt.Sprintf("linear-scan search p99 %.2f ms", r.Latency.P99Ms), r.Latency.P99Ms
		}
		t = append(t, disp)
	}

	for _, name := range []string{"dronedelivery serve", "dronedelivery as custom handler"} {
		st := loadgen.Target{Name: "start-up to first 200, " + strings.TrimPrefix(name, "dronedelivery "), Goal: "≤ 50 ms", Limit: 50, Unit: "ms", Reference: "not published"}
		for _, s := range b.rep.Startups {
			if s.Name == name && s.Runs > 0 {
				st.Measured, st.Value = true, s.MedianMs
			}
		}
		if b.baseStartMs > 0 {
			st.Baseline, st.BaselineValue = fmt.Sprintf("bare net/http %.1f ms", b.baseStartMs), b.baseStartMs
		}
		t = append(t, st)
	}

	for _, ep := range []string{"summary", "utilization"} {
		small, large := named(analyticsRunName(ep, 1000)), named(analyticsRunName(ep, b.o.analyticsLarge))
		lat := loadgen.Target{Name: fmt.Sprintf("%s p99 at %d deliveries in the month", ep, b.o.analyticsLarge), Goal: "< 5 ms", Limit: 5, Unit: "ms",
			Reference: "313 ms at 11,000 (issue 20, before the aggregates)"}
		ratio := loadgen.Target{Name: fmt.Sprintf("%s p50 at %d over p50 at 1,000 deliveries", ep, b.o.analyticsLarge), Goal: "≤ 1.5", Limit: 1.5, Unit: "×",
			Reference: "linear in the month before the aggregates"}
		if small != nil && large != nil && small.OK > 0 && large.OK > 0 {
			lat.Measured, lat.Value = true, large.Latency.P99Ms
			lat.Baseline, lat.BaselineValue = fmt.Sprintf("p99 at 1,000: %.2f ms", small.Latency.P99Ms), small.Latency.P99Ms
			ratio.Measured, ratio.Value = true, large.Latency.P50Ms/small.Latency.P50Ms
			ratio.Baseline = fmt.Sprintf("p50 %.2f ms at 1,000, %.2f ms at %d", small.Latency.P50Ms, large.Latency.P50Ms, b.o.analyticsLarge)
		}
		t = append(t, lat, ratio)
	}

	mem := loadgen.Target{Name: fmt.Sprintf("resident memory at %g deliveries/s", b.o.e2eRate), Goal: "≤ 60 MB", Limit: 60, Unit: "MB", Reference: "not published"}
	for _, m := range b.rep.Memory {
		if m.Process == "dronedelivery serve" && strings.HasPrefix(m.When, "under") {
			mem.Measured, mem.Value = true, m.RSSMB
		}
	}
	if b.baseRSS > 0 {
		mem.Baseline, mem.BaselineValue = fmt.Sprintf("bare net/http %.1f MB", b.baseRSS), b.baseRSS
	}
	t = append(t, mem)
	b.rep.Targets = t
	if !slices.ContainsFunc(t, func(x loadgen.Target) bool { return x.Measured }) {
		b.note("No target was measured in this session.")
	}
}
