// Package loadgen drives a service with open-loop (constant arrival rate) or
// closed-loop (as fast as it answers) load, records latencies in HDR-style
// histograms and renders what it measured as JSON and markdown.
package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear in the manner of HdrHistogram: each power of
// two is split into halfCount equal buckets, so a recorded value is off by
// at most 1/halfCount (0.2%) of itself at any magnitude, and recording is
// one array increment with no allocation and no lock.
const (
	subBits   = 10
	subCount  = 1 << subBits
	halfCount = subCount / 2
	maxBits   = 44 // values up to 2^44 ns, about 4.9 hours
	nBuckets  = subCount + (maxBits-subBits)*halfCount
	maxValue  = 1<<maxBits - 1
)

// Histogram records durations; it is safe for concurrent use and its zero
// value is ready.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns; overflows only after 584 years of latency
	min    atomic.Int64  // ns + 1, so that 0 means unset
	max    atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return new(Histogram) }

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits
	return subCount + (e-1)*halfCount + int(v>>e) - halfCount
}

// bucketRange returns the lowest value of bucket i and how many values it holds.
func bucketRange(i int) (low, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	k := i - subCount
	e := k/halfCount + 1
	m := uint64(k%halfCount + halfCount)
	return m << e, 1 << e
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	v = min(v, maxValue)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for cur := h.min.Load(); cur == 0 || int64(v)+1 < cur; cur = h.min.Load() {
		if h.min.CompareAndSwap(cur, int64(v)+1) {
			break
		}
	}
	for cur := h.max.Load(); int64(v) > cur; cur = h.max.Load() {
		if h.max.CompareAndSwap(cur, int64(v)) {
			break
		}
	}
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n.Load() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if m := o.min.Load(); m != 0 {
		for cur := h.min.Load(); cur == 0 || m < cur; cur = h.min.Load() {
			if h.min.CompareAndSwap(cur, m) {
				break
			}
		}
	}
	if m := o.max.Load(); m > 0 {
		for cur := h.max.Load(); m > cur; cur = h.max.Load() {
			if h.max.CompareAndSwap(cur, m) {
				break
			}
		}
	}
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() int64 { return int64(h.n.Load()) }

// Min returns the smallest recorded duration, or 0 when empty.
func (h *Histogram) Min() time.Duration {
	if m := h.min.Load(); m > 0 {
		return time.Duration(m - 1)
	}
	return 0
}

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the average recorded duration, or 0 when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the duration at or below which the fraction q of the
// recorded durations fall. Like HdrHistogram it reports the top of the
// bucket, so a percentile is never understated, capped at the largest
// value actually recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	rank := uint64(math.Ceil(min(q, 1) * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketRange(i)
			return min(time.Duration(low+width-1), h.Max())
		}
	}
	return h.Max()
}

// Summary is a histogram reduced to the figures a report shows, in
// milliseconds so that JSON readers need no unit conversion.
type Summary struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"minMs"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
}

// Summary returns the histogram's count, extremes, mean and percentiles.
func (h *Histogram) Summary() Summary {
	return Summary{
		Count:  h.Count(),
		MinMs:  ms(h.Min()),
		MeanMs: ms(h.Mean()),
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(h.Max()),
	}
}

// ms converts to milliseconds rounded to the microsecond, the precision
// a loopback measurement can honestly claim.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}
