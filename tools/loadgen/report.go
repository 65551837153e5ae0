package loadgen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is everything one benchmark session measured.
type Report struct {
	Title       string       `json:"title"`
	Started     time.Time    `json:"started"`
	ElapsedSec  float64      `json:"elapsedSec"`
	Command     string       `json:"command"`
	Machine     Machine      `json:"machine"`
	Targets     []Target     `json:"targets"`
	Runs        []*Result    `json:"runs"`
	Completions []Completion `json:"completions"`
	Startups    []Startup    `json:"startups"`
	Memory      []MemoryRow  `json:"memory"`
	CPU         []CPURow     `json:"cpu"`
	Notes       []string     `json:"notes,omitempty"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpuModel"`
	MemoryMB   int    `json:"memoryMB"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"goVersion"`
	LoadBefore string `json:"loadAverageBefore"`
	LoadAfter  string `json:"loadAverageAfter"`
}

// DescribeMachine reads the machine's description from the runtime and,
// on Linux, /proc.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(), LoadBefore: LoadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				m.MemoryMB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// LoadAverage returns the 1, 5 and 15 minute load averages, which say how
// busy other work kept the machine while it was measured.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Target is one performance goal with what was measured against it.
type Target struct {
	Name string `json:"name"`
	// Goal is the goal as people read it, e.g. "≥ 5,000/s".
	Goal           string  `json:"goal"`
	Limit          float64 `json:"limit"`
	HigherIsBetter bool    `json:"higherIsBetter"`
	Unit           string  `json:"unit"`
	// Measured is false when the run that measures it was skipped or failed.
	Measured bool    `json:"measured"`
	Value    float64 `json:"value"`
	// Baseline is the same-run figure the value is compared with, and
	// Ratio is value / baseline, which survives a noisy machine better
	// than either figure alone.
	Baseline      string  `json:"baseline"`
	BaselineValue float64 `json:"baselineValue,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
	Reference     string  `json:"reference"`
	Status        string  `json:"status"`
}

// Met reports whether the measured value meets the goal.
func (t *Target) Met() bool {
	if !t.Measured {
		return false
	}
	if t.HigherIsBetter {
		return t.Value >= t.Limit
	}
	return t.Value <= t.Limit
}

func (t *Target) settle() {
	if t.BaselineValue != 0 && t.Measured {
		t.Ratio = t.Value / t.BaselineValue
	}
	switch {
	case !t.Measured:
		t.Status = "not measured"
	case t.Met():
		t.Status = "met"
	default:
		t.Status = "NOT MET"
	}
}

// Startup is how long a server took from exec to its first 200.
type Startup struct {
	Name     string    `json:"name"`
	Runs     int       `json:"runs"`
	MedianMs float64   `json:"medianMs"`
	MinMs    float64   `json:"minMs"`
	MaxMs    float64   `json:"maxMs"`
	Samples  []float64 `json:"samplesMs"`
}

// NewStartup summarises start-up samples.
func NewStartup(name string, samples []time.Duration) Startup {
	s := Startup{Name: name, Runs: len(samples)}
	if len(samples) == 0 {
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	for _, d := range samples {
		s.Samples = append(s.Samples, ms(d))
	}
	s.MinMs, s.MaxMs = ms(sorted[0]), ms(sorted[len(sorted)-1])
	if n := len(sorted); n%2 == 1 {
		s.MedianMs = ms(sorted[n/2])
	} else {
		s.MedianMs = ms((sorted[n/2-1] + sorted[n/2]) / 2)
	}
	return s
}

// MemoryRow is a process's resident memory at one moment of the session.
type MemoryRow struct {
	Process string  `json:"process"`
	When    string  `json:"when"`
	RSSMB   float64 `json:"rssMB"`
	PeakMB  float64 `json:"peakMB"`
}

// CPURow is the CPU time a process spent on a run's work, per item: a
// figure that other work on a shared machine disturbs far less than
// throughput, since it counts only this process's time.
type CPURow struct {
	Process    string  `json:"process"`
	Run        string  `json:"run"`
	CPUSeconds float64 `json:"cpuSeconds"`
	Items      int     `json:"items"`
	Per        string  `json:"per"`
	MicrosEach float64 `json:"microsEach"`
}

// NewCPURow records cpu spent on items.
func NewCPURow(process, run string, cpu time.Duration, items int, per string) CPURow {
	r := CPURow{Process: process, Run: run, CPUSeconds: cpu.Seconds(), Items: items, Per: per}
	if items > 0 {
		r.MicrosEach = float64(cpu.Microseconds()) / float64(items)
	}
	return r
}

// Finish stamps the report's duration and the targets' status.
func (r *Report) Finish() {
	r.ElapsedSec = time.Since(r.Started).Seconds()
	r.Machine.LoadAfter = LoadAverage()
	for i := range r.Targets {
		r.Targets[i].settle()
	}
}

// Write saves the report as report.json and report.md in dir and returns
// the markdown.
func (r *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(j, '\n'), 0o644); err != nil {
		return "", err
	}
	md := r.Markdown()
	return md, os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644)
}

// Markdown renders the report as tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# %s\n\n", r.Title)
	fmt.Fprintf(&b, "%s, %d CPUs (%s), %d MB, kernel %s, %s. Load average %s before, %s after. ",
		m.OS, m.CPUs, m.CPUModel, m.MemoryMB, m.Kernel, m.GoVersion, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "Started %s, took %.0f s: `%s`.\n\n", r.Started.UTC().Format(time.RFC3339), r.ElapsedSec, r.Command)

	if len(r.Targets) > 0 {
		b.WriteString("## Targets\n\n| target | goal | measured | same-run baseline | ratio | reference implementation | status |\n|---|---|---|---|---|---|---|\n")
		for _, t := range r.Targets {
			measured, ratio := "—", "—"
			if t.Measured {
				measured = number(t.Value) + " " + t.Unit
			}
			if t.Ratio != 0 {
				ratio = fmt.Sprintf("%.3g×", t.Ratio)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", t.Name, t.Goal, measured, dash(t.Baseline), ratio, dash(t.Reference), t.Status)
		}
		b.WriteString("\n")
	}
	if len(r.Runs) > 0 {
		b.WriteString("## Load runs\n\nOpen-loop latencies count from when a request was due, so waiting for a busy server is included.\n\n")
		b.WriteString("| run | mode | workers | offered/s | ok/s | ok | failed | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range r.Runs {
			offered := "max"
			if x.Mode == "open" {
				offered = number(x.Rate)
			}
			l := x.Latency
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %d | %d | %s | %s | %s | %s | %s |\n", x.Name, x.Mode, x.Concurrency, offered,
				number(x.Throughput), x.OK, x.Failed+x.Unsent, num3(l.P50Ms), num3(l.P90Ms), num3(l.P99Ms), num3(l.P999Ms), num3(l.MaxMs))
		}
		b.WriteString("\n")
	}
	if len(r.Completions) > 0 {
		b.WriteString("## Accept → Scheduled, from each delivery's createdAt and scheduledAt\n\n")
		b.WriteString("| run | accepted | scheduled | failed | pending | scheduled/s (span) | scheduled/s while loaded | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Completions {
			l := c.Latency
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, c.Accepted, c.Completed, c.Failed, c.Pending,
				number(c.Throughput), number(c.LoadedThroughput), num3(l.P50Ms), num3(l.P90Ms), num3(l.P99Ms), num3(l.P999Ms), num3(l.MaxMs))
		}
		b.WriteString("\n")
		for _, c := range r.Completions {
			fmt.Fprintf(&b, "Scheduled in each second of %s: %v\n\n", c.Name, c.PerSecond)
		}
	}
	if len(r.Startups) > 0 {
		b.WriteString("## Start-up: exec to the first 200 on /api/healthz\n\n| process | runs | median ms | min ms | max ms |\n|---|---|---|---|---|\n")
		for _, s := range r.Startups {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", s.Name, s.Runs, num3(s.MedianMs), num3(s.MinMs), num3(s.MaxMs))
		}
		b.WriteString("\n")
	}
	if len(r.Memory) > 0 {
		b.WriteString("## Resident memory\n\n| process | when | RSS MB | peak RSS MB |\n|---|---|---|---|\n")
		for _, x := range r.Memory {
			fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f |\n", x.Process, x.When, x.RSSMB, x.PeakMB)
		}
		b.WriteString("\n")
	}
	if len(r.CPU) > 0 {
		b.WriteString("## CPU time\n\n| process | run | CPU s | items | µs CPU each |\n|---|---|---|---|---|\n")
		for _, x := range r.CPU {
			fmt.Fprintf(&b, "| %s | %s | %.2f | %d %s | %s |\n", x.Process, x.Run, x.CPUSeconds, x.Items, x.Per, number(x.MicrosEach))
		}
		b.WriteString("\n")
	}
	var errs []string
	for _, x := range r.Runs {
		for _, k := range x.ErrorKinds() {
			errs = append(errs, fmt.Sprintf("- %s: %d × %s", x.Name, x.Errors[k], k))
		}
	}
	if len(errs) > 0 {
		b.WriteString("## Errors\n\n" + strings.Join(errs, "\n") + "\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// number prints a figure with thousands separators and as many decimals
// as its size deserves.
func number(v float64) string {
	switch {
	case v >= 100:
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return num3(v)
	}
}

func num3(v float64) string {
	if v >= 100 {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
