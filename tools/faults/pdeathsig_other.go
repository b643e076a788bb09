//go:build unix && !linux

package faults

import "syscall"

// setParentDeathSignal does nothing here: only Linux has a parent-death
// signal, so a caller killed without running Stop leaves its servers running.
func setParentDeathSignal(*syscall.SysProcAttr) {}
