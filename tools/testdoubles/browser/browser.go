// Package browser drives headless Chromium (browser.js, page.js) through
// the pages the service serves. It is a test tool.
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fabrikam/dronedelivery/tools/testdoubles"
)

// ChromiumPath is where Debian's chromium package puts the browser; the
// browser test drives that build because Playwright's own downloads are not
// reachable from CI.
const ChromiumPath = "/usr/bin/chromium"

// requireChromium fails the test when Chromium is missing, naming the
// package to install, and installs the driver scripts' packages.
func requireChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("the browser test needs Debian's Chromium at %s: apt-get install -y chromium (make test-deps installs it): %v", ChromiumPath, err)
	}
	testdoubles.EnsureInstalled(t)
}

// nodeCommand is `node <script> args...` run from the doubles' folder under
// ctx, killed with the test binary, its standard error into stderr.
func nodeCommand(ctx context.Context, stderr io.Writer, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(testdoubles.Dir(), script)}, args...)...)
	cmd.Dir = testdoubles.Dir()
	testdoubles.DieWithTest(cmd)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = stderr
	return cmd
}

// startReading starts cmd and returns its standard output; when it cannot,
// it calls cancel and fails the test.
func startReading(t testing.TB, cmd *exec.Cmd, cancel context.CancelFunc) io.ReadCloser {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", filepath.Base(cmd.Args[1]), err)
	}
	return stdout
}

// BrowserPosition is one position of the tracking page's drone marker,
// with when the page showed it (the browser's Date.now(), ms since the
// epoch) and how the feed that put it there came (body[data-via]: "push"
// or "poll").
type BrowserPosition struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
	At  float64 `json:"at"`
	Via string  `json:"via"`
}

// BrowserResult is what browser.js saw while the tracking page ran.
type BrowserResult struct {
	Stages      []string          `json:"stages"`      // body[data-stage], each change once
	Positions   []BrowserPosition `json:"positions"`   // #drone-marker, each move once
	FinalStage  string            `json:"finalStage"`  // body[data-stage] when it stopped watching
	Connections []string          `json:"connections"` // body[data-connection] ("ok", "lost"), each change once
	Text        string            `json:"text"`        // the page's visible text at the end
	Errors      []string          `json:"errors"`      // page exceptions and console errors
}

// BrowserState is what the page has shown so far, as browser.js reports it
// after every change.
type BrowserState struct {
	Ready       bool              `json:"-"`           // the page has loaded and rendered its first state
	Seq         int               `json:"seq"`         // changes seen; a later state has a higher one
	Stage       string            `json:"stage"`       // body[data-stage] now
	Error       string            `json:"error"`       // body[data-error] now ("not-found")
	Push        string            `json:"push"`        // body[data-push] now: sse, webpubsub or poll
	Stages      []string          `json:"stages"`      // every stage shown, in order
	Positions   []BrowserPosition `json:"positions"`   // every marker position shown, in order
	Connections []string          `json:"connections"` // every connection state shown, in order
}

// HasShown reports whether the drone marker has stood at lat, lon.
func (s BrowserState) HasShown(lat, lon float64) bool {
	_, ok := s.ShownAt(lat, lon)
	return ok
}

// ShownAt returns the first time the drone marker stood at lat, lon.
func (s BrowserState) ShownAt(lat, lon float64) (BrowserPosition, bool) {
	i := slices.IndexFunc(s.Positions, func(p BrowserPosition) bool { return p.Lat == lat && p.Lon == lon })
	if i < 0 {
		return BrowserPosition{}, false
	}
	return s.Positions[i], true
}

// Browser is the tracking page open in headless Chromium, watched by
// browser.js until the page is done (a terminal stage, or an unknown
// tracking id). A test waits on what the page shows: Ready before it starts
// what the page is to follow, Await for anything on the way, Result at the
// end. Nothing here waits for time to pass.
type Browser struct {
	url    string
	cmd    *exec.Cmd
	stderr *testdoubles.LockedBuffer

	mu      sync.Mutex
	state   BrowserState
	result  *BrowserResult
	bad     []string      // lines that were not the protocol's
	changed chan struct{} // closed and replaced at every new state
	done    chan struct{} // closed once the output is read to its end
	waitErr error         // the process's exit, set before done closes
}

// StartBrowser opens url in headless Chromium at a phone's 390×844 and
// watches it; the screenshot is saved to the given path when the page is
// done. timeout only ends a page that never gets done. The test fails when
// Chromium is missing, naming the package to install; the browser is
// stopped when the test ends.
func StartBrowser(t testing.TB, url, screenshot string, timeout time.Duration) *Browser {
	t.Helper()
	requireChromium(t)
	// Chromium's start-up is not part of the page's time budget.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+90*time.Second)
	b := &Browser{url: url, stderr: &testdoubles.LockedBuffer{}, changed: make(chan struct{}), done: make(chan struct{})}
	b.cmd = nodeCommand(ctx, b.stderr, "browser.js", url, screenshot, strconv.FormatInt(timeout.Milliseconds(), 10))
	go b.read(startReading(t, b.cmd, cancel))
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

// RunBrowser opens url like StartBrowser and returns what the page showed
// once it is done.
func RunBrowser(t testing.TB, url, screenshot string, timeout time.Duration) BrowserResult {
	t.Helper()
	return StartBrowser(t, url, screenshot, timeout).Result(t)
}

// read follows browser.js's output to its end, then waits for the process.
func (b *Browser) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var head struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(line, &head) != nil {
			b.note(string(line))
			continue
		}
		switch head.Event {
		case "state", "ready":
			var s BrowserState
			if err := json.Unmarshal(line, &s); err != nil {
				b.note(string(line))
				continue
			}
			b.update(s, head.Event == "ready")
		case "result":
			var r BrowserResult
			if err := json.Unmarshal(line, &r); err != nil {
				b.note(string(line))
				continue
			}
			b.mu.Lock()
			b.result = &r
			b.mu.Unlock()
		default:
			b.note(string(line))
		}
	}
	err := b.cmd.Wait()
	b.mu.Lock()
	b.waitErr = err
	b.mu.Unlock()
	close(b.done)
}

func (b *Browser) note(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bad = append(b.bad, line)
}

// update keeps the newest state: the lines may arrive out of order, their
// sequence numbers may not.
func (b *Browser) update(s BrowserState, ready bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ready = ready || b.state.Ready
	if s.Seq >= b.state.Seq {
		b.state = s
	}
	b.state.Ready = ready
	close(b.changed)
	b.changed = make(chan struct{})
}

// Await waits until what the page has shown satisfies cond and returns
// that state. It fails, returning the last state, when ctx ends or the page
// is done (or browser.js has stopped) without cond having held. It is safe
// to call from any goroutine.
func (b *Browser) Await(ctx context.Context, cond func(BrowserState) bool) (BrowserState, error) {
	for {
		b.mu.Lock()
		s, changed := b.state, b.changed
		b.mu.Unlock()
		if cond(s) {
			return s, nil
		}
		select {
		case <-changed:
		case <-b.done:
			b.mu.Lock()
			s = b.state
			b.mu.Unlock()
			if cond(s) {
				return s, nil
			}
			return s, fmt.Errorf("browser.js stopped watching %s before the page showed what was awaited: %s", b.url, b.exit())
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// Ready waits until the page has loaded and rendered its first state, and
// returns that state; the test fails if browser.js stops before.
func (b *Browser) Ready(t testing.TB) BrowserState {
	t.Helper()
	s, err := b.Await(context.Background(), func(s BrowserState) bool { return s.Ready })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Result waits until the page is done and browser.js has saved the
// screenshot, and returns what it recorded.
func (b *Browser) Result(t testing.TB) BrowserResult {
	t.Helper()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waitErr != nil || b.result == nil {
		t.Fatalf("browser.js %s gave no result: %s", b.url, b.exitLocked())
	}
	return *b.result
}

func (b *Browser) exit() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitLocked()
}

func (b *Browser) exitLocked() string {
	msg := "still running"
	select {
	case <-b.done:
		msg = fmt.Sprintf("exit %v", b.waitErr)
	default:
	}
	if len(b.bad) > 0 {
		msg += fmt.Sprintf("\nother output: %q", b.bad)
	}
	return msg + "\nstderr:\n" + b.stderr.String()
}
