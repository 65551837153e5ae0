package simulator

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// status is what one active delivery's progress line shows.
type status struct {
	stage string
	frac  float64       // of the whole route flown, 0..1
	eta   time.Duration // simulated time to the dropoff; <0 when unknown
}

// progress draws one line per active delivery. On a terminal the block is
// redrawn in place; anywhere else (a pipe, a log file, a test buffer) a line
// is appended only when a delivery's stage or tenth of the route changes, so
// the output stays readable.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	order  []string          // active deliveries, in the order they started
	live   map[string]status // by delivery id
	said   map[string]string // plain mode: the last state printed per delivery
	events []string          // permanent lines not yet written
	drawn  int               // tty mode: live lines on screen below the cursor's home
	failed bool              // the writer failed once; stop writing
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w, tty: isTerminal(w), live: map[string]status{}, said: map[string]string{}}
}

// isTerminal is true for a character device, the one place where cursor
// movement means something.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) eventf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf(format, args...))
}

func (p *progress) set(id string, s status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.live[id]; !ok {
		p.order = append(p.order, id)
	}
	p.live[id] = s
}

// done retires a delivery's live line into a permanent one.
func (p *progress) done(id, summary string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.live[id]; !ok {
		p.events = append(p.events, summary)
		return
	}
	delete(p.live, id)
	delete(p.said, id)
	for i, o := range p.order {
		if o == id {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	p.events = append(p.events, summary)
}

func (p *progress) render() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed {
		return
	}
	width := 0
	for _, id := range p.order {
		width = max(width, len(id))
	}
	var b strings.Builder
	if p.tty {
		if p.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
		}
		for _, e := range p.events {
			b.WriteString("\r\x1b[2K" + e + "\n")
		}
		for _, id := range p.order {
			b.WriteString("\r\x1b[2K" + formatLine(id, width, p.live[id]) + "\n")
		}
		// Wipe what is left of a longer block drawn last time.
		if extra := p.drawn - len(p.events) - len(p.order); extra > 0 {
			b.WriteString(strings.Repeat("\r\x1b[2K\n", extra))
			fmt.Fprintf(&b, "\x1b[%dA", extra)
		}
		p.drawn = len(p.order)
	} else {
		for _, e := range p.events {
			b.WriteString(e + "\n")
		}
		for _, id := range p.order {
			s := p.live[id]
			key := fmt.Sprintf("%s %d", s.stage, int(s.frac*10))
			if p.said[id] != key {
				p.said[id] = key
				b.WriteString(formatLine(id, width, s) + "\n")
			}
		}
	}
	p.events = p.events[:0]
	if b.Len() > 0 {
		if _, err := io.WriteString(p.w, b.String()); err != nil {
			p.failed = true
		}
	}
}

// formatLine is "deliveryId  stage  ███████░░░ 70%  ETA 3m12s".
func formatLine(id string, width int, s status) string {
	frac := min(max(s.frac, 0), 1)
	cells := int(frac*10 + 1e-9)
	bar := strings.Repeat("█", cells) + strings.Repeat("░", 10-cells)
	eta := "ETA ?"
	if s.eta >= 0 {
		eta = "ETA " + formatDuration(s.eta)
	}
	return fmt.Sprintf("%-*s  %-15s  %s %3d%%  %s", width, id, s.stage, bar, int(frac*100+1e-9), eta)
}

func formatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.Round(time.Second).String()
}
