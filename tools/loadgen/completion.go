package loadgen

import (
	"slices"
	"time"
)

// Span is one item's passage through a pipeline as the system under test
// recorded it: when it was accepted and when it came out the other end
// (zero while it has not).
type Span struct {
	Start, End time.Time
	Failed     bool
}

// Completion summarises items carried through a pipeline, computed from the
// system's own timestamps rather than by watching it during the run.
type Completion struct {
	Name      string `json:"name"`
	Accepted  int    `json:"accepted"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	Pending   int    `json:"pending"`
	// SpanSec runs from the first acceptance to the last completion.
	SpanSec float64 `json:"spanSec"`
	// Throughput is completions per second over SpanSec, backlog included.
	Throughput float64 `json:"completedPerSec"`
	// LoadedThroughput counts only completions while load was offered, so
	// it is the rate the pipeline kept up with under that load.
	LoadedThroughput float64 `json:"completedPerSecWhileLoaded"`
	// PerSecond counts completions in each second from the first
	// acceptance, to show whether the rate was sustained.
	PerSecond []int `json:"completedEachSecond"`
	// Latency is each item's time from acceptance to completion.
	Latency Summary `json:"latency"`
}

// Summarise reduces spans to a Completion; loadEnd is when the load stopped.
func Summarise(name string, spans []Span, loadEnd time.Time) Completion {
	c := Completion{Name: name, Accepted: len(spans)}
	h := NewHistogram()
	var first, last time.Time
	for _, s := range spans {
		if first.IsZero() || s.Start.Before(first) {
			first = s.Start
		}
	}
	var loaded int
	for _, s := range spans {
		switch {
		case s.Failed:
			c.Failed++
		case s.End.IsZero():
			c.Pending++
		default:
			c.Completed++
			h.Record(s.End.Sub(s.Start))
			if s.End.After(last) {
				last = s.End
			}
			if !s.End.After(loadEnd) {
				loaded++
			}
			sec := int(s.End.Sub(first) / time.Second)
			for len(c.PerSecond) <= sec {
				c.PerSecond = append(c.PerSecond, 0)
			}
			c.PerSecond[sec]++
		}
	}
	if c.Completed > 0 {
		c.SpanSec = last.Sub(first).Seconds()
		if c.SpanSec > 0 {
			c.Throughput = float64(c.Completed) / c.SpanSec
		}
		if w := loadEnd.Sub(first).Seconds(); w > 0 {
			c.LoadedThroughput = float64(loaded) / w
		}
	}
	c.Latency = h.Summary()
	return c
}

// SustainedPerSec is the median of the per-second completion counts over
// the seconds while load was offered, leaving out the first and last
// (partial) ones: a figure that a burst at the start or a drain at the end
// cannot inflate.
func (c *Completion) SustainedPerSec(loadSeconds int) float64 {
	n := min(loadSeconds, len(c.PerSecond))
	if n < 3 {
		if n == 0 {
			return 0
		}
		return float64(c.PerSecond[0])
	}
	mid := slices.Clone(c.PerSecond[1 : n-1])
	slices.Sort(mid)
	return float64(mid[len(mid)/2])
}
