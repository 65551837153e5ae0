// Package testdoubles holds what the local stand-ins share: it starts the
// Node.js doubles in this folder (installed from its lockfile), installs the
// Go tools some doubles run, and captures their output. Each double has its
// own package below it (cosmosdouble, servicebusdouble, sqsdouble,
// smtpdouble, otlpdouble, lambdarie, and browser, the headless-browser
// driver). They are test tools, not parts of the product.
package testdoubles

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Dir is the folder holding the doubles and their package.json.
func Dir() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Dir(file)
}

// EnsureInstalled installs the doubles' npm packages from the lockfile when
// they are missing. Test binaries of several packages may call it at once,
// so the install runs under a file lock.
func EnsureInstalled(t testing.TB) {
	t.Helper()
	dir := Dir()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("the Cosmos DB and Service Bus test doubles need Node.js 20 or later with npm on PATH (Debian: apt-get install -y nodejs npm): %v", err)
	}
	defer lockInstall(t, dir)()
	if installed(dir) {
		return
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// lockInstall takes dir's install lock, for one test binary at a time;
// call what it returns to let go.
func lockInstall(t testing.TB, dir string) (unlock func()) {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err, "open install lock")
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		require.NoError(t, err, "lock install")
	}
	return func() {
		syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	}
}

// installed reports whether node_modules matches the lockfile: npm ci
// writes node_modules/.package-lock.json, newer than the lockfile.
func installed(dir string) bool {
	hidden, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	return err == nil && !hidden.ModTime().Before(lock.ModTime())
}

// Process is a running double.
type Process struct {
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs `node <script> args...` from this folder and waits for the
// line "READY <port>" on its standard output. The process is stopped when
// the test ends; its standard error goes to the test log on failure.
func Start(t testing.TB, script string, args ...string) *Process {
	t.Helper()
	EnsureInstalled(t)
	cmd := exec.Command("node", append([]string{filepath.Join(Dir(), script)}, args...)...)
	cmd.Dir = Dir()
	DieWithTest(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &LockedBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				if port, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
					ready <- port
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", script, cmd.Stderr.(*LockedBuffer).String())
		}
	})
	select {
	case p.Port = <-ready:
		return p
	case <-p.done:
		t.Fatalf("%s exited before it was ready:\n%s", script, cmd.Stderr.(*LockedBuffer).String())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s was not ready within 60s:\n%s", script, cmd.Stderr.(*LockedBuffer).String())
	}
	return nil
}

// Addr is the double's loopback address.
func (p *Process) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// StartWithAdmin is Start for a double with an admin endpoint besides the
// service it stands in for: the harness reads only the READY line, so the
// double is told to write its admin port to a file (--admin-port-file)
// before it prints READY. It returns the process and the admin endpoint's
// URL; double names it in failures.
func StartWithAdmin(t testing.TB, script, double string) (*Process, string) {
	t.Helper()
	portFile := filepath.Join(t.TempDir(), "admin-port")
	p := Start(t, script, "--admin-port-file", portFile)
	return p, readAdminURL(t, portFile, double)
}

// readAdminURL reads the admin port a double wrote before it printed READY.
func readAdminURL(t testing.TB, portFile, double string) string {
	t.Helper()
	raw, err := os.ReadFile(portFile)
	if err != nil {
		t.Fatalf("read the %s double's admin port: %v", double, err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("the %s double's admin port %q: %v", double, raw, err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// AdminCall sends a JSON request to a double's admin endpoint and decodes
// its JSON answer into out (unless nil), failing the test on any error.
func AdminCall(t testing.TB, double, method, url string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s double admin %s %s: %v", double, method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s double admin %s %s: %s: %s", double, method, url, resp.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s double admin %s %s: %v: %s", double, method, url, err, raw)
		}
	}
}

// Poll calls ready every 20 ms until it reports true (Poll then does too),
// done is closed or within has passed.
func Poll(done <-chan struct{}, within time.Duration, ready func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ready() {
			return true
		}
		select {
		case <-done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}
