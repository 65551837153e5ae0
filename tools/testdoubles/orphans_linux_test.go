package testdoubles

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDieWithTestLeavesNoOrphan runs this test binary again as a parent
// that starts a long sleep with DieWithTest, prints its pid and exits at
// once, as a test binary ended by a panic would: the sleep must not
// outlive it.
func TestDieWithTestLeavesNoOrphan(t *testing.T) {
	if os.Getenv("DIE_WITH_TEST_PARENT") == "1" {
		cmd := exec.Command("sleep", "300")
		DieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			os.Exit(2)
		}
		os.Stdout.WriteString(strconv.Itoa(cmd.Process.Pid) + "\n")
		os.Exit(0)
	}
	t.Parallel()
	parent := exec.Command(os.Args[0], "-test.run", "^TestDieWithTestLeavesNoOrphan$")
	parent.Env = append(os.Environ(), "DIE_WITH_TEST_PARENT=1")
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	sc := bufio.NewScanner(out)
	require.True(t, sc.Scan(), "the parent prints its child's pid")
	pid, err := strconv.Atoi(sc.Text())
	require.NoError(t, err)
	require.NoError(t, parent.Wait())
	// The orphan is reparented and killed by the kernel; once reaped, the
	// pid answers ESRCH. A zombie awaiting its new parent's reap counts as
	// gone too: it runs nothing.
	require.Eventually(t, func() bool {
		err := syscall.Kill(pid, 0)
		if err == syscall.ESRCH {
			return true
		}
		stat, rerr := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return rerr != nil || zombie(stat)
	}, 30*time.Second, 20*time.Millisecond, "the child %d outlived its parent", pid)
}

// zombie reports whether a /proc/<pid>/stat line shows state Z.
func zombie(stat []byte) bool {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}
