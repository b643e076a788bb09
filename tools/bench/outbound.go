package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/load"
	"github.com/parkd/parkd/tools/npr"
	"github.com/parkd/parkd/tools/receiver"
	"github.com/parkd/parkd/worker"
)

// What registration and webhooks cost and how fast they are (issue 13):
// with --registrar the zone has register codes and parkd registers every
// session with a register emulator in this process; with --webhook a
// receiver in this process is subscribed to every event. After the phases
// the bench waits until parkd owes them nothing, then times each right
// version from its commit to the register and each event from occurred_at
// to its first receipt.

// OutboundResult is the registration and webhook figures of a run.
type OutboundResult struct {
	Registrar bool `json:"registrar"`
	Webhook   bool `json:"webhook"`
	// WaitSeconds: after the phases, until parkd owed the register and
	// the receiver nothing (WaitDone), at most Options.OutboundWait.
	WaitSeconds float64              `json:"wait_s"`
	WaitDone    bool                 `json:"wait_done"`
	Backlog     load.OutboundBacklog `json:"backlog_after_wait"`

	Rights         int       `json:"rights"` // registered sessions
	VersionsStored int       `json:"versions_stored"`
	Register       npr.Stats `json:"register"`
	// RegistrationLag: a session's version 1 from its commit to the
	// register (seconds); FinalLag: its newest version's; MaxPhaseLag:
	// version 1 of the sessions made during the max phase; LagMissing:
	// versions the register never held.
	RegistrationLag load.Spread `json:"registration_lag_s"`
	FinalLag        load.Spread `json:"final_version_lag_s"`
	MaxPhaseLag     load.Spread `json:"max_phase_registration_lag_s"`
	LagMissing      int         `json:"lag_missing"`

	Events       int               `json:"events"`
	Received     int               `json:"received_distinct"`
	Receiver     receiver.Stats    `json:"receiver"`
	WebhookLag   load.Spread       `json:"webhook_lag_s"` // first receipt − occurred_at
	MaxPhaseHook load.Spread       `json:"max_phase_webhook_lag_s"`
	ByType       []load.TypeSpread `json:"webhook_lag_by_type_s,omitempty"`
}

// outbound is the run's register emulator and receiver.
type outbound struct {
	register *load.Register
	rx       *receiver.Receiver
}

// startOutbound starts what o asks for; stop stops it.
func startOutbound(o Options) (ob outbound, stop func(), err error) {
	stop = func() {
		if ob.register != nil {
			ob.register.Close()
		}
		if ob.rx != nil {
			ob.rx.Close()
		}
	}
	if o.Registrar {
		if ob.register, err = load.ServeRegister(npr.Options{Faults: npr.Faults{Latency: o.RegistrarLatency}}); err != nil {
			return ob, stop, err
		}
	}
	if o.Webhook {
		if ob.rx, err = receiver.Start("", receiver.NewSecret()); err != nil {
			stop()
			return ob, stop, err
		}
	}
	return ob, stop, nil
}

func (ob outbound) on() bool { return ob.register != nil || ob.rx != nil }

// env is what parkd needs to register with the emulator.
func (ob outbound) env() []string {
	if ob.register == nil {
		return nil
	}
	return ob.register.Env()
}

// registration is the zone's register codes, or nil without a registrar.
func (ob outbound) registration() *domain.ZoneRegistration {
	if ob.register == nil {
		return nil
	}
	codes := load.LabRegistration
	return &codes
}

// subscribe subscribes the receiver to every event, before the setup.
func (ob outbound) subscribe(ctx context.Context, a *load.Client, tk load.Tokens) error {
	if ob.rx == nil {
		return nil
	}
	op, err := load.OperatorToken(tk, "bench-operator-webhooks")
	if err != nil {
		return err
	}
	return load.Subscribe(ctx, a, op, "bench", ob.rx.URL(), ob.rx.Secret())
}

// measure waits for parkd to owe nothing (up to wait) and times what
// arrived; maxPhase is the max phase's window (zero: none ran).
func (ob outbound) measure(ctx context.Context, dsn string, wait time.Duration, maxFrom, maxTo time.Time, said func(load.OutboundBacklog, time.Duration)) (OutboundResult, error) {
	r := OutboundResult{Registrar: ob.register != nil, Webhook: ob.rx != nil}
	st, err := repo.Open(dsn, repo.PoolConfig{MaxConns: 2})
	if err != nil {
		return r, err
	}
	defer st.Close()
	took, done, b, err := load.WaitOutbound(ctx, st, wait, said)
	r.WaitSeconds, r.WaitDone, r.Backlog = took.Seconds(), done, b
	if err != nil {
		return r, err
	}
	inMax := func(t time.Time) bool { return !maxFrom.IsZero() && !t.Before(maxFrom) && t.Before(maxTo) }
	if ob.register != nil {
		sessions, err := load.ReadRegistered(ctx, st)
		if err != nil {
			return r, err
		}
		snap := ob.register.Snapshot()
		r.Rights, r.Register = len(sessions), snap.Stats
		for _, vs := range snap.Stored {
			r.VersionsStored += len(vs)
		}
		first, last, missing := load.RegistrationLags(worker.DefaultRegistrarIssuer, sessions, snap.Stored)
		r.RegistrationLag, r.FinalLag, r.LagMissing = load.SpreadOf(first), load.SpreadOf(last), missing
		var inPhase []repo.Session
		for _, s := range sessions {
			if inMax(s.CreatedAt) {
				inPhase = append(inPhase, s)
			}
		}
		first, _, _ = load.RegistrationLags(worker.DefaultRegistrarIssuer, inPhase, snap.Stored)
		r.MaxPhaseLag = load.SpreadOf(first)
	}
	if ob.rx != nil {
		events, _, err := load.ReadEvents(ctx, st)
		if err != nil {
			return r, err
		}
		snap := ob.rx.Snapshot()
		r.Events, r.Received, r.Receiver = len(events), len(snap.Events), snap.Stats
		all, byType := load.WebhookLags(snap.Events)
		r.WebhookLag, r.ByType = load.SpreadOf(all), load.SpreadsByType(byType)
		var inPhase []float64
		for _, e := range snap.Events {
			if inMax(e.OccurredAt) {
				inPhase = append(inPhase, e.FirstAt.Sub(e.OccurredAt).Seconds())
			}
		}
		r.MaxPhaseHook = load.SpreadOf(inPhase)
	}
	return r, nil
}

func (p *printer) outbound(r OutboundResult) {
	state := "parkd owed nothing"
	if !r.WaitDone {
		state = "gave up: " + r.Backlog.String()
	}
	p.linef("outbound  waited %.1fs after the phases: %s", r.WaitSeconds, state)
	if r.Registrar {
		p.linef("          registrar: %d registered sessions, %d PUTs, %d versions stored; lag committed → stored: version 1 %s; newest %s; version 1 in the max phase %s; %d never stored",
			r.Rights, r.Register.Puts, r.VersionsStored, secs(r.RegistrationLag), secs(r.FinalLag), secs(r.MaxPhaseLag), r.LagMissing)
	}
	if r.Webhook {
		p.linef("          webhook: %d events, %d received (%d deliveries, %d duplicates); lag occurred_at → first receipt %s; in the max phase %s",
			r.Events, r.Received, r.Receiver.Accepted, r.Receiver.Duplicates, secs(r.WebhookLag), secs(r.MaxPhaseHook))
		for _, t := range r.ByType {
			p.linef("            %-20s %s", t.Type, secs(t.Spread))
		}
	}
}

func secs(s load.Spread) string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2fs p99 %.2fs max %.2fs (%d)", s.P50, s.P99, s.Max, s.Count)
}
