package cluster

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel SIGTERM a child when the lab dies, so that a
// killed lab does not leave parkd processes holding ports and the database.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
}
