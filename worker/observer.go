package worker

import "time"

// Observer is told what the worker did, for metrics. Handlers call it after the
// transaction committed, so it only ever counts what really happened. The
// Prometheus implementation lives apart (package metrics), like asynq's own.
type Observer interface {
	// RequestDone: a request of type typ was applied or rejected (code set),
	// found already done ("duplicate"), or found to reuse another request's ID
	// ("conflict"); took is the time of its transaction.
	RequestDone(typ, outcome, code string, took time.Duration)
	// SessionSettled: a session was stopped, auto-stopped, cancelled or settled by
	// the reconciler; lateness is settlement minus planned end for auto-stops.
	SessionSettled(how string, lateness time.Duration)
	// Reconciled: what one reconciliation repaired.
	Reconciled(settled, requeued int)
	// OutboxRelayed: tasks the relay handed to Redis.
	OutboxRelayed(n int)
	// RightRegistered: what one right:register task did (RegisterAcknowledged,
	// RegisterSuperseded, RegisterRejected, RegisterRetried, RegisterSkipped);
	// lag, for a version this task was the first to get acknowledged, is from
	// the change that made the version to the acknowledgement (else 0).
	RightRegistered(outcome string, lag time.Duration)
}

// Outcomes and settlement kinds passed to an Observer.
const (
	OutcomeApplied   = "applied"
	OutcomeRejected  = "rejected"
	OutcomeDuplicate = "duplicate"
	// OutcomeConflict: the request ID was already used for a different
	// request; nothing was applied (code idempotency_conflict).
	OutcomeConflict = "conflict"

	SettledStop       = "stopped"
	SettledCancel     = "cancelled"
	SettledAutoStop   = "autostopped"
	SettledReconciled = "reconciled"
	SettledPermitEnd  = "permit_end"
)

type nopObserver struct{}

func (nopObserver) RequestDone(string, string, string, time.Duration) {}
func (nopObserver) SessionSettled(string, time.Duration)              {}
func (nopObserver) Reconciled(int, int)                               {}
func (nopObserver) OutboxRelayed(int)                                 {}
func (nopObserver) RightRegistered(string, time.Duration)             {}

func (h *Handlers) observer() Observer {
	if h.Observer != nil {
		return h.Observer
	}
	return nopObserver{}
}
