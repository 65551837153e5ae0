// Command testreport reads `go test -json` on its standard input and writes
// what `go test` would have written without -json, package by package as
// each finishes: the ok, FAIL and "no test files" lines, and for a failing
// package the output of its failing tests and of the package itself, then
// the closing FAIL when any package failed. Build errors go to standard
// error, as go test sends them. At the end it lists the slowest tests with
// their durations.
//
//	set -o pipefail; go test -json ./... | go run ./tools/testreport [-slowest 10] [-save file]
//
// Its own exit status is 0 whatever the tests did (1 only when it cannot
// read or write): with pipefail, the pipeline's status stays go test's.
// -save also writes the list of the slowest tests to a file, for a caller
// that wants to show it again later (make test does, after the race run).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to list at the end (0: none)")
	save := flag.String("save", "", "also write the list of the slowest tests to this file")
	flag.Parse()
	r := newReport(os.Stdout, os.Stderr)
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	list := r.slowest(*slowest)
	fmt.Print(list)
	if *save != "" {
		if err := os.WriteFile(*save, []byte(list), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(1)
		}
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events name the package here
	Test       string
	Elapsed    float64 // seconds, on pass, fail and skip
	Output     string
}

// Timing is how long one top-level test took.
type Timing struct {
	Package, Test string
	Seconds       float64
}

// report turns the event stream back into go test's text.
type report struct {
	out, errs io.Writer
	pkgs      map[string]*pkg
	order     []*pkg // started and not yet written, in the order they started
	timings   []Timing
	failed    bool // some package failed: go test ends with FAIL
}

// pkg is what a package has said so far: its own lines and its tests'.
type pkg struct {
	lines []line           // in the order they came
	tests map[string]*test // by full name
	done  bool
	text  strings.Builder // what go test prints for it, once done
}

type line struct {
	test string // "" for the package's own output
	text string
}

// test is one test or subtest of a package.
type test struct {
	name    string
	result  string  // pass, fail, skip; "" while it runs
	header  string  // its "--- FAIL: ..." line
	items   []item  // its own lines and its failed subtests, in order
	elapsed float64 // seconds
}

type item struct {
	text string // a line of the test's own output, or
	sub  *test  // a failed subtest, placed where it finished
}

func newReport(out, errs io.Writer) *report {
	return &report{out: out, errs: errs, pkgs: map[string]*pkg{}}
}

// read consumes the stream. A line that is not an event is passed through.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(r.out, sc.Text())
			continue
		}
		r.event(e)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// A package cut off mid-stream (go test itself was killed) is shown
	// as far as it got.
	for _, p := range r.order {
		if !p.done {
			r.finish(p, true)
		}
	}
	r.flush()
	if r.failed {
		fmt.Fprintln(r.out, "FAIL")
	}
	return nil
}

func (r *report) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.errs, e.Output)
		return
	case "build-fail":
		return
	}
	p := r.pkgs[e.Package]
	if p == nil {
		p = &pkg{tests: map[string]*test{}}
		r.pkgs[e.Package] = p
		r.order = append(r.order, p)
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.lines = append(p.lines, line{text: e.Output})
		case "pass", "skip", "fail":
			r.finish(p, e.Action == "fail")
			delete(r.pkgs, e.Package)
			r.flush()
		}
		return
	}
	t := p.tests[e.Test]
	if t == nil {
		t = &test{name: e.Test}
		p.tests[e.Test] = t
	}
	switch e.Action {
	case "output":
		p.lines = append(p.lines, line{test: e.Test, text: e.Output})
		switch {
		case framing(e.Output):
		case strings.HasPrefix(e.Output, "--- ") && strings.Contains(e.Output, " "+e.Test+" "):
			t.header = e.Output
		default:
			t.items = append(t.items, item{text: e.Output})
		}
	case "pass", "skip", "fail":
		t.result, t.elapsed = e.Action, e.Elapsed
		parent, nested := parentOf(e.Test)
		if !nested {
			r.timings = append(r.timings, Timing{Package: e.Package, Test: e.Test, Seconds: e.Elapsed})
		}
		if e.Action == "fail" && nested {
			if pt := p.tests[parent]; pt != nil {
				pt.items = append(pt.items, item{sub: t})
			}
		}
	}
}

// finish writes what go test writes when a package is done: the summary
// line alone when it passed; when it failed, its own lines and each failed
// test's block (header first, failed subtests indented) where the test
// ended, as go test prints a test when it ends.
func (r *report) finish(p *pkg, failed bool) {
	p.done = true
	w := &p.text
	if !failed {
		for _, l := range p.lines {
			if l.test == "" && (strings.HasPrefix(l.text, "ok  \t") || strings.HasPrefix(l.text, "?   \t")) {
				fmt.Fprint(w, l.text)
			}
		}
		return
	}
	r.failed = true
	for _, l := range p.lines {
		if l.test == "" {
			fmt.Fprint(w, l.text)
			continue
		}
		t := p.tests[l.test]
		switch {
		case t.result == "fail" && l.text == t.header && !strings.Contains(t.name, "/"):
			t.write(w, "")
		case t.result == "" && !framing(l.text):
			// A test that never ended (a panic, a timeout) says why.
			fmt.Fprint(w, l.text)
		}
	}
}

// flush writes the packages that are done in the order they started, as
// go test does: a package that finishes early waits for those before it.
func (r *report) flush() {
	for len(r.order) > 0 && r.order[0].done {
		fmt.Fprint(r.out, r.order[0].text.String())
		r.order = r.order[1:]
	}
}

// write prints a failed test as go test does without -v: its header, then
// its own lines and failed subtests, each level indented four more spaces.
func (t *test) write(w io.Writer, indent string) {
	if t.header != "" {
		fmt.Fprint(w, indent+t.header)
	}
	for _, it := range t.items {
		if it.sub != nil {
			it.sub.write(w, indent+"    ")
			continue
		}
		fmt.Fprint(w, indent+it.text)
	}
}

// framing tells the lines only -v prints.
func framing(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func parentOf(name string) (string, bool) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", false
	}
	return name[:i], true
}

// slowest lists the n slowest top-level tests, slowest first, each
// package named without the path all the packages of the run share.
func (r *report) slowest(n int) string {
	if n <= 0 || len(r.timings) == 0 {
		return ""
	}
	ts := append([]Timing(nil), r.timings...)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Seconds > ts[j].Seconds })
	shared := ts[0].Package
	for _, t := range ts {
		for !strings.HasPrefix(t.Package, shared) {
			shared = shared[:len(shared)-1]
		}
	}
	shared = shared[:strings.LastIndexByte(shared, '/')+1]
	ts = ts[:min(n, len(ts))]
	var b strings.Builder
	if len(ts) == 1 {
		b.WriteString("\nThe slowest test:\n")
	} else {
		fmt.Fprintf(&b, "\nThe %d slowest tests:\n", len(ts))
	}
	for _, t := range ts {
		fmt.Fprintf(&b, "%9.2fs  %s  %s\n", t.Seconds, strings.TrimPrefix(t.Package, shared), t.Test)
	}
	return b.String()
}
