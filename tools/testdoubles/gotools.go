package testdoubles

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Go programs some doubles run (an SQS-compatible server, the Lambda
// Runtime Interface Emulator) are installed with `go install` into a cache
// folder, never required by go.mod, so the product does not depend on them;
// the Go module proxy serves them.

// toolsDir is where installed tools are kept across test runs: the user's
// cache folder, or DRONEDELIVERY_TOOLS_DIR when set (a CI cache, say).
func toolsDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("DRONEDELIVERY_TOOLS_DIR"); dir != "" {
		return dir
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "dronedelivery", "tools")
}

// InstallGoTool installs pkg@version once per machine and returns the path
// of its binary. Test binaries of several packages may ask at once, so the
// install runs under a file lock, as EnsureInstalled does for npm.
func InstallGoTool(t testing.TB, pkg, version, binary string) string {
	t.Helper()
	dir := filepath.Join(toolsDir(t), strings.ReplaceAll(pkg, "/", "_")+"@"+version)
	bin := filepath.Join(dir, binary)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create %s: %v", dir, err)
	}
	defer lockInstall(t, dir)()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	// Into a temporary folder first, so that a half-written binary is never
	// taken for an installed one.
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", pkg+"@"+version)
	// Outside this module and with the caller's build flags cleared, so that
	// neither go.mod nor a -mod setting meant for the product applies.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s@%s: %v\n%s", pkg, version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, binary), bin); err != nil {
		t.Fatalf("install %s: %v", bin, err)
	}
	return bin
}

// FreePort asks the kernel for a loopback port nobody listens on. Another
// process may take it before the tool binds it, so callers retry a start
// that fails.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Loopback is the address of a port on 127.0.0.1.
func Loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
