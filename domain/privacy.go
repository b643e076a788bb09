package domain

import "strings"

// MayErase is the erase rule (DOMAIN.md "Privacy"): an operator may erase a
// resident only once every permit of theirs has ended, since an active
// permit's sessions are still being parked, stopped and enforced by plate.
// activePermits are the IDs of the resident's permits still active.
func MayErase(residentID string, activePermits []string) error {
	if len(activePermits) == 0 {
		return nil
	}
	return Reject(CodePermitActive, "resident %s still holds active permit %s: end it before erasing",
		residentID, strings.Join(activePermits, ", "))
}
