package faults

import "syscall"

// setParentDeathSignal has the kernel SIGKILL the server when the thread that
// started it dies, so a test binary killed by its -timeout leaves no server
// behind. Go sets it after switching to the server's user, which would
// otherwise clear it.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGKILL
}
