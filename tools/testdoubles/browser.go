package testdoubles

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ChromiumPath is where Debian's chromium package puts the browser; the
// browser test drives that build because Playwright's own downloads are not
// reachable from CI.
const ChromiumPath = "/usr/bin/chromium"

// BrowserPosition is one position of the tracking page's drone marker.
type BrowserPosition struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
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

// RunBrowser opens url in headless Chromium at a phone's 390×844, watches
// the tracking page until its stage is terminal or timeout passes, saves a
// screenshot to the given path and returns what it recorded. The test fails
// when Chromium is missing, naming the package to install.
func RunBrowser(t testing.TB, url, screenshot string, timeout time.Duration) BrowserResult {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("the browser test needs Debian's Chromium at %s: apt-get install -y chromium (make test-deps installs it): %v", ChromiumPath, err)
	}
	EnsureInstalled(t)
	// Chromium's start-up is not part of the page's time budget.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(Dir(), "browser.js"), url, screenshot, strconv.FormatInt(timeout.Milliseconds(), 10))
	cmd.Dir = Dir()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser.js %s: %v\n%s", url, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res BrowserResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("browser.js printed no result line: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	return res
}
