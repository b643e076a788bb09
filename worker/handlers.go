package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Handlers applies tasks to Postgres.
type Handlers struct {
	Store  *repo.Store
	Client *asynq.Client         // hands outbox tasks to Redis right after commit
	Redis  redis.UniversalClient // for the reconciler's check that Redis kept its data
	Log    *slog.Logger
	// Clock is the worker's only source of time; nil is the real clock (tests
	// set a clockwork.FakeClock and move it).
	Clock clockwork.Clock
	// ReconcileGrace overrides the default ReconcileGrace (tests set it small).
	ReconcileGrace time.Duration
	// PlateRetention is how long a session's plate is kept after it ended
	// (PARKD_PLATE_RETENTION); zero is DefaultPlateRetention.
	PlateRetention time.Duration
	// Observer is told what happened, for metrics; nil observes nothing.
	Observer Observer
	// Coalescer, when set, lets requests handled at the same time share one
	// transaction (and one commit); nil gives each its own.
	Coalescer *repo.Coalescer
	// Answers, when set, records the registrar's acknowledgements and the
	// webhooks' deliveries a batch per statement (repo.Answers); nil writes
	// each alone.
	Answers *repo.Answers
	// Reads, when set, reads what right:register and event:deliver start
	// from a batch per statement (repo.OutboundReads); nil reads each alone.
	Reads *repo.OutboundReads

	// Registrar, when set, gets the right of every session started in a zone
	// with register codes (PARKD_REGISTRAR_URL); nil: registration is off.
	Registrar Registrar
	// RegistrarIssuer is the issuer of parkd's rights, the first part of
	// every right ID (PARKD_REGISTRAR_ISSUER); "" is DefaultRegistrarIssuer.
	RegistrarIssuer string
	// EventsWritten, when set, is called after a transaction that wrote
	// events has committed: it nudges the sequencer, which numbers them and
	// hands them to the webhooks.
	EventsWritten func()
	// Delivery tunes webhook delivery (deliver.go); zero is the defaults.
	Delivery DeliveryConfig
	// ScheduleHorizon is how far ahead a session's auto-stop and ending
	// notice are handed to Redis (schedule.go); zero is ScheduleHorizon.
	ScheduleHorizon time.Duration

	inspectorOnce sync.Once
	inspector     *asynq.Inspector
	deliverOnce   sync.Once
	deliver       *deliverer
	handedOver    handedOver
}

// inTx runs fn in a transaction: a shared one through the Coalescer when there
// is one. fn may run twice (see repo.Coalescer), so it must start from scratch.
func (h *Handlers) inTx(ctx context.Context, fn func(ctx context.Context, tx repo.Tx) error) error {
	if h.Coalescer != nil {
		return h.Coalescer.Do(ctx, fn)
	}
	return h.Store.InTx(ctx, fn)
}

// inPipelinedTx is inTx for a unit whose outcome may be held and written
// with its batch's others (repo.Coalescer.DoPipelined): fn reads nothing
// another request's outcome writes except through its permit's lock, and
// the row that lock takes first (pre) may be locked with the batch's others.
func (h *Handlers) inPipelinedTx(ctx context.Context, fn func(ctx context.Context, tx repo.Tx) error, pre repo.Prelock) error {
	if h.Coalescer != nil {
		return h.Coalescer.DoPipelined(ctx, fn, pre)
	}
	return h.Store.InTx(ctx, fn)
}

// acknowledgeRight records the registrar's acknowledgement of version of
// session sid's right at at: with the others of the moment when Answers is
// set (repo.Answers.AcknowledgeRight), else alone (repo.AcknowledgeRight).
func (h *Handlers) acknowledgeRight(ctx context.Context, sid int64, version int, at time.Time) (repo.RightAcknowledgement, error) {
	if h.Answers != nil {
		return h.Answers.AcknowledgeRight(ctx, sid, version, at)
	}
	return repo.AcknowledgeRight(ctx, h.Store.DB, sid, version, at)
}

// session reads session sid for right:register: with the others of the
// moment when Reads is set, else alone.
func (h *Handlers) session(ctx context.Context, sid int64) (*repo.Session, error) {
	if h.Reads != nil {
		return h.Reads.GetSession(ctx, sid)
	}
	return repo.GetSession(ctx, h.Store.DB, sid)
}

// deliveryWork reads a delivery with its event and webhook for
// event:deliver: with the others of the moment when Reads is set, else alone.
func (h *Handlers) deliveryWork(ctx context.Context, webhook, eventID string) (*repo.DeliveryWork, error) {
	if h.Reads != nil {
		return h.Reads.GetDeliveryWork(ctx, webhook, eventID)
	}
	return repo.GetDeliveryWork(ctx, h.Store.DB, webhook, eventID)
}

// recordDelivered records a webhook's 2xx for an event at at: with the
// others of the moment when Answers is set, else alone.
func (h *Handlers) recordDelivered(ctx context.Context, webhook, eventID string, at time.Time) error {
	if h.Answers != nil {
		return h.Answers.RecordDelivered(ctx, webhook, eventID, at)
	}
	return repo.RecordDelivered(ctx, h.Store.DB, webhook, eventID, at)
}

// now is the worker's clock, at Postgres's precision (microseconds), so that an
// instant written and read back compares equal.
func (h *Handlers) now() time.Time { return repo.Instant(h.clock().Now()) }

func (h *Handlers) clock() clockwork.Clock { return orReal(h.Clock) }

// orReal is c, or the real clock where none was set.
func orReal(c clockwork.Clock) clockwork.Clock {
	if c == nil {
		return clockwork.NewRealClock()
	}
	return c
}

func instantPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := repo.Instant(*t)
	return &u
}

// Mux routes every task type parkd handles.
func (h *Handlers) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(h.frame)
	mux.HandleFunc(jobs.TypeSessionStart, h.SessionStart)
	mux.HandleFunc(jobs.TypeSessionStop, h.SessionStop)
	mux.HandleFunc(jobs.TypeSessionChange, h.SessionChange)
	mux.HandleFunc(jobs.TypeSessionAutoStop, h.SessionAutoStop)
	mux.HandleFunc(jobs.TypeSessionEnding, h.SessionEnding)
	mux.HandleFunc(jobs.TypePermitIssue, h.PermitIssue)
	mux.HandleFunc(jobs.TypePermitTopup, h.PermitTopup)
	mux.HandleFunc(jobs.TypePermitEnd, h.PermitEnd)
	mux.HandleFunc(jobs.TypePermitRollover, h.PermitRollover)
	mux.HandleFunc(jobs.TypeSessionReconcile, h.SessionReconcile)
	mux.HandleFunc(jobs.TypePrivacyRetention, h.PrivacyRetention)
	mux.HandleFunc(jobs.TypeEventDeliver, h.EventDeliver)
	mux.HandleFunc(jobs.TypeRightRegister, h.RightRegister)
	return mux
}
