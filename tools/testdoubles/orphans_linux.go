package testdoubles

import (
	"os/exec"
	"syscall"
)

// DieWithTest has the kernel kill cmd's process when the test binary that
// starts it dies, so that a test binary ended by its -timeout panic (which
// runs no cleanups) leaves no server, double or frozen process behind
// (prctl PR_SET_PDEATHSIG, man 2 prctl). The signal follows the thread
// that started the process; the Go runtime does not end its threads while
// the program runs, except those a goroutine locked and left locked.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
