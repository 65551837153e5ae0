package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// Page is a page open in headless Chromium that a test works like a
// person: it types, clicks, waits until the page shows something, and
// takes screenshots (page.js). Every call waits for its answer; the
// browser stops when the test ends.
type Page struct {
	url    string
	stdin  io.WriteCloser
	stderr *testdoubles.LockedBuffer
	wait   time.Duration

	mu      sync.Mutex // one command at a time
	nextID  int
	answers *bufio.Scanner
}

type pageAnswer struct {
	ID    int             `json:"id"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// OpenPage opens url in headless Chromium at width×height. patience bounds
// each Wait, so only a page that never shows what is awaited ends the wait.
// The test fails when Chromium is missing, naming the package to install.
func OpenPage(t testing.TB, url string, width, height int, patience time.Duration) *Page {
	t.Helper()
	requireChromium(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &Page{url: url, stderr: &testdoubles.LockedBuffer{}, wait: patience}
	cmd := nodeCommand(ctx, p.stderr, "page.js", url, strconv.Itoa(width), strconv.Itoa(height))
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	stdout := startReading(t, cmd, cancel)
	t.Cleanup(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	p.answers = bufio.NewScanner(stdout)
	p.answers.Buffer(make([]byte, 1<<20), 16<<20)
	if _, err := p.read(0); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return p
}

// read returns the answer with the given id.
func (p *Page) read(id int) (json.RawMessage, error) {
	for p.answers.Scan() {
		var a pageAnswer
		if err := json.Unmarshal(p.answers.Bytes(), &a); err != nil || a.ID != id {
			continue
		}
		if a.Error != "" {
			return nil, fmt.Errorf("%s", a.Error)
		}
		return a.Value, nil
	}
	return nil, fmt.Errorf("page.js stopped: %v\nstderr:\n%s", p.answers.Err(), p.stderr.String())
}

// do sends one command and returns its value.
func (p *Page) do(cmd map[string]any) (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	cmd["id"] = p.nextID
	line, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("page.js: %w\nstderr:\n%s", err, p.stderr.String())
	}
	return p.read(p.nextID)
}

func (p *Page) must(t testing.TB, what string, cmd map[string]any) json.RawMessage {
	t.Helper()
	v, err := p.do(cmd)
	if err != nil {
		t.Fatalf("%s on %s: %v", what, p.url, err)
	}
	return v
}

// Fill types value into the field selector names.
func (p *Page) Fill(t testing.TB, selector, value string) {
	t.Helper()
	p.must(t, "fill "+selector, map[string]any{"op": "fill", "selector": selector, "value": value})
}

// Click clicks the element selector names.
func (p *Page) Click(t testing.TB, selector string) {
	t.Helper()
	p.must(t, "click "+selector, map[string]any{"op": "click", "selector": selector})
}

// Wait waits until the JavaScript expression is truthy in the page; what
// names the condition in the failure.
func (p *Page) Wait(t testing.TB, what, expr string) {
	t.Helper()
	p.must(t, "wait until "+what, map[string]any{"op": "wait", "expr": expr, "timeout": p.wait.Milliseconds()})
}

// Eval returns the JavaScript expression's value, decoded into out.
func (p *Page) Eval(t testing.TB, expr string, out any) {
	t.Helper()
	v := p.must(t, "eval", map[string]any{"op": "eval", "expr": expr})
	if err := json.Unmarshal(v, out); err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
}

// Screenshot saves a PNG of the whole page at path.
func (p *Page) Screenshot(t testing.TB, path string) {
	t.Helper()
	p.must(t, "screenshot", map[string]any{"op": "screenshot", "path": path})
}

// Errors returns the page's exceptions and console errors so far.
func (p *Page) Errors(t testing.TB) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal(p.must(t, "errors", map[string]any{"op": "errors"}), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
