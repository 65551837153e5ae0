package testdoubles

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedWriter lets the process's output goroutine and the test read and
// write the captured standard error safely.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// background starts cmd with its output captured and returns the capture, a
// channel closed when the process ends, and a stop that asks it to end
// (SIGTERM) and kills it if it has not within 5 s.
func background(t testing.TB, cmd *exec.Cmd, what string) (*lockedWriter, <-chan struct{}, func()) {
	t.Helper()
	logs := &lockedWriter{w: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	return logs, done, stop
}
