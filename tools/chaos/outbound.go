package chaos

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

// What parkd tells others, under the run's faults (issue 13's proof): the
// run's zone has register codes and parkd's processes a registrar, an
// in-process register emulator that fails, loses acknowledgements and lets
// versions overtake each other; a webhook receiver in this process,
// subscribed to every event, is taken down for a spell under load. At the
// end, once parkd owes nothing, the register, the receiver and the feed are
// held to parkd's records (outverdict.go).

// OutboundResult is what a chaos run's register and receiver saw, and the
// figures of the wait and lags.
type OutboundResult struct {
	Issuer          string `json:"issuer,omitempty"`
	RegistrarFaults string `json:"registrar_faults,omitempty"`
	// Rights is the registered sessions; RightsHeld the rights in the
	// register; VersionsStored the distinct right versions it stored.
	Rights         int       `json:"rights"`
	RightsHeld     int       `json:"rights_held"`
	VersionsStored int       `json:"versions_stored"`
	Register       npr.Stats `json:"register"` // Puts: versions sent, retries included; Failed: 503s injected; AcksLost
	// RegistrationLag: version 1 committed → first stored in the register
	// (seconds); FinalLag: the newest version's; LagMissing: versions never
	// stored.
	RegistrationLag load.Spread `json:"registration_lag_s"`
	FinalLag        load.Spread `json:"final_version_lag_s"`
	LagMissing      int         `json:"lag_missing"`

	Events           int                  `json:"events"` // numbered events in parkd's table
	Unnumbered       int64                `json:"unnumbered_events"`
	Receiver         receiver.Stats       `json:"receiver"`
	Received         int                  `json:"received_distinct"`
	Outages          []receiver.Outage    `json:"receiver_outages,omitempty"`
	DownSeconds      float64              `json:"receiver_down_s"`
	WebhookLag       load.Spread          `json:"webhook_lag_s"` // first receipt − occurred_at
	WebhookLagByType []load.TypeSpread    `json:"webhook_lag_by_type_s,omitempty"`
	FeedEvents       int                  `json:"feed_events"`
	FeedPages        int                  `json:"feed_pages"`
	WaitSeconds      float64              `json:"wait_s"` // after every session settled, until parkd owed nothing
	WaitDone         bool                 `json:"wait_done"`
	Backlog          load.OutboundBacklog `json:"backlog_after_wait"`
}

// startOutbound starts the register emulator and the webhook receiver the
// options ask for, before parkd (whose processes are pointed at them).
func (c *chaosRun) startOutbound(context.Context) (err error) {
	if c.o.Registrar {
		if c.register, err = load.ServeRegister(npr.Options{Faults: c.o.RegistrarFaults, Seed: c.o.Seed}); err != nil {
			return err
		}
		c.undo = append(c.undo, c.register.Close)
		c.pr.linef("register  emulator at %s (%s), parkd's issuer %s", c.register.URL, faultsLine(c.o.RegistrarFaults), worker.DefaultRegistrarIssuer)
	}
	if c.o.Webhook {
		if c.rx, err = receiver.Start("", receiver.NewSecret()); err != nil {
			return err
		}
		c.undo = append(c.undo, c.rx.Close)
		c.pr.linef("receiver  webhook receiver at %s (signatures verified with the Standard Webhooks library); down %s from +%s of the load (503, then connections refused)",
			c.rx.URL(), fmtDur(c.o.ReceiverDown), fmtDur(c.o.ReceiverDownAt))
	}
	return nil
}

// calm ends the register's faults when the options say so (at the load's
// end).
func (c *chaosRun) calm() {
	if c.register == nil || !c.o.CalmAfterLoad {
		return
	}
	if err := c.register.SetFaults(npr.Faults{}); err != nil {
		c.res.Findings = append(c.res.Findings, fmt.Sprintf("register: ending its faults: %v", err))
		return
	}
	c.pr.linef("register  faults ended with the load (retries backing off land while the last auto-stops come due)")
}

// outboundEnv is what parkd's processes need to register with the emulator.
func (c *chaosRun) outboundEnv() []string {
	if c.register == nil {
		return nil
	}
	return c.register.Env()
}

// subscribe subscribes the receiver to every event, before the setup makes
// the first one, so that every event is owed to it.
func (c *chaosRun) subscribe(ctx context.Context) error {
	if c.rx == nil {
		return nil
	}
	op, err := c.operator()
	if err != nil {
		return err
	}
	if err := load.Subscribe(ctx, c.api, op, "chaos", c.rx.URL(), c.rx.Secret()); err != nil {
		return err
	}
	c.pr.linef("webhook   chaos subscribed to every event type (PUT /v1/admin/webhooks/chaos)")
	return nil
}

// operator is an operator's token of the run.
func (c *chaosRun) operator() (string, error) {
	return load.OperatorToken(load.Tokens{Secret: []byte(c.secret), TTL: 24 * time.Hour}, "chaos-operator")
}

// registration is the run's zone's register codes, or nil without a registrar.
func (c *chaosRun) registration() *domain.ZoneRegistration {
	if c.register == nil {
		return nil
	}
	codes := load.LabRegistration
	return &codes
}

// receiverDown takes the receiver down at ReceiverDownAt after the load
// began, for ReceiverDown: answering 503 for the first half, refusing
// connections for the second; then up again. It returns at once; done is
// closed once the receiver is up again.
func (c *chaosRun) receiverDown(ctx context.Context) (done chan struct{}) {
	done = make(chan struct{})
	if c.rx == nil || c.o.ReceiverDown <= 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		defer func() { _ = c.rx.SetMode(receiver.Up) }()
		from := c.t0.Add(c.o.ReceiverDownAt)
		for _, step := range []struct {
			at   time.Time
			mode receiver.Mode
			what string
		}{
			{from, receiver.Unavailable, "down: answering 503"},
			{from.Add(c.o.ReceiverDown / 2), receiver.Refusing, "down: refusing connections"},
			{from.Add(c.o.ReceiverDown), receiver.Up, "up again"},
		} {
			if !sleepUntil(ctx, step.at) {
				return
			}
			if err := c.rx.SetMode(step.mode); err != nil {
				c.pr.linef("receiver  +%.1fs %s FAILED: %v", time.Since(c.t0).Seconds(), step.what, err)
				continue
			}
			c.pr.linef("receiver  +%.1fs %s", time.Since(c.t0).Seconds(), step.what)
		}
	}()
	return done
}

// awaitOutbound waits, after every session settled and the receiver is up
// again, until parkd owes the register and the receiver nothing, up to
// OutboundWait.
func (c *chaosRun) awaitOutbound(ctx context.Context, st *repo.Store) {
	if c.register == nil && c.rx == nil {
		return
	}
	if c.rxUp != nil {
		<-c.rxUp
	}
	c.out = &OutboundResult{}
	took, done, b, err := load.WaitOutbound(ctx, st, c.o.OutboundWait, func(b load.OutboundBacklog, left time.Duration) {
		c.pr.linef("outbound  %s; waiting up to %s more", b, left.Round(time.Second))
	})
	c.out.WaitSeconds, c.out.WaitDone, c.out.Backlog = took.Seconds(), done, b
	switch {
	case err != nil:
		c.res.Findings = append(c.res.Findings, fmt.Sprintf("outbound wait: %v", err))
	case done:
		c.pr.linef("outbound  parkd owed nothing %.1fs after every session settled: every right answered, every event numbered and delivered", took.Seconds())
	default:
		c.pr.linef("outbound  gave up after %s: %s", fmtDur(c.o.OutboundWait), b)
	}
	c.res.Checks = append(c.res.Checks, passIf(fmt.Sprintf("parkd owes nothing within %s of every session settled (rights answered, events numbered and delivered)", fmtDur(c.o.OutboundWait)),
		fmt.Sprintf("%.1fs", took.Seconds()), backlogLines(done, b)))
}

func backlogLines(done bool, b load.OutboundBacklog) []string {
	if done {
		return nil
	}
	return []string{b.String()}
}

// judgeOutbound holds the register, the receiver and the feed to parkd's
// records, and gathers the figures.
func (c *chaosRun) judgeOutbound(ctx context.Context, st *repo.Store) error {
	if c.out == nil {
		return nil
	}
	out := c.out
	issuer := worker.DefaultRegistrarIssuer
	if c.register != nil {
		sessions, err := load.ReadRegistered(ctx, st)
		if err != nil {
			return err
		}
		snap := c.register.Snapshot()
		out.Issuer, out.RegistrarFaults = issuer, faultsLine(c.o.RegistrarFaults)
		out.Rights, out.RightsHeld, out.Register = len(sessions), len(snap.Rights), snap.Stats
		for _, vs := range snap.Stored {
			out.VersionsStored += len(vs)
		}
		first, last, missing := load.RegistrationLags(issuer, sessions, snap.Stored)
		out.RegistrationLag, out.FinalLag, out.LagMissing = load.SpreadOf(first), load.SpreadOf(last), missing
		c.res.Checks = append(c.res.Checks, rightsVerdict(issuer, sessions, snap.Rights), acknowledgedVerdict(sessions))
	}
	if c.rx != nil {
		events, unnumbered, err := load.ReadEvents(ctx, st)
		if err != nil {
			return err
		}
		snap := c.rx.Snapshot()
		out.Events, out.Unnumbered, out.Receiver, out.Received, out.Outages = len(events), unnumbered, snap.Stats, len(snap.Events), snap.Outages
		for _, o := range snap.Outages {
			out.DownSeconds += o.Seconds()
		}
		all, byType := load.WebhookLags(snap.Events)
		out.WebhookLag, out.WebhookLagByType = load.SpreadOf(all), load.SpreadsByType(byType)
		c.res.Checks = append(c.res.Checks, deliveredVerdict(events, unnumbered, snap.Events), nothingElseVerdict(events, snap))

		op, err := c.operator()
		if err != nil {
			return err
		}
		feed, pages, err := load.ReadFeed(ctx, c.api, op)
		out.FeedEvents, out.FeedPages = len(feed), pages
		ch := feedVerdict(events, feed, pages)
		if err != nil {
			ch.OK, ch.Violations = false, append(ch.Violations, "reading the feed failed: "+err.Error())
		}
		c.res.Checks = append(c.res.Checks, ch)
	}
	c.res.Outbound = out
	return nil
}

// reportOutbound writes the outbound part of the report.
func (c *chaosRun) reportOutbound() {
	o, p := c.res.Outbound, c.pr
	if o == nil {
		return
	}
	if c.register != nil {
		s := o.Register
		p.linef("register  %d registered sessions, %d rights held; %d PUTs (versions sent, retries included), %d distinct versions stored; faults %s",
			o.Rights, o.RightsHeld, s.Puts, o.VersionsStored, o.RegistrarFaults)
		p.linef("          injected: %d× 503 before storing, %d acknowledgements lost after storing (500 or cut off), %d held back to be overtaken; %d× 409 (an older version after a newer)",
			s.Failed, s.AcksLost, s.Held, s.Stale)
		p.linef("          registration lag (committed → first stored in the register): version 1 %s; newest version %s; %d versions never stored",
			spreadSec(o.RegistrationLag), spreadSec(o.FinalLag), o.LagMissing)
	}
	if c.rx != nil {
		s := o.Receiver
		p.linef("webhook   %d events numbered (%d unnumbered); %d distinct received; %d deliveries accepted, %d duplicates, %d answered 503 while down, %d refused (signature or body)",
			o.Events, o.Unnumbered, o.Received, s.Accepted, s.Duplicates, s.Unavailable, s.BadSig+s.Malformed)
		p.linef("          receiver down %.1fs in all (%d spells); webhook lag (occurred_at → first receipt) %s", o.DownSeconds, len(o.Outages), spreadSec(o.WebhookLag))
		for _, ts := range o.WebhookLagByType {
			p.linef("            %-20s %s", ts.Type, spreadSec(ts.Spread))
		}
		p.linef("          feed: %d events in %d pages", o.FeedEvents, o.FeedPages)
	}
	p.linef("outbound  parkd owed nothing after %.1fs of waiting (%v)", o.WaitSeconds, map[bool]string{true: "done", false: "NOT done: " + o.Backlog.String()}[o.WaitDone])
}

func spreadSec(s load.Spread) string {
	if s.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2fs p99 %.2fs max %.2fs (%d)", s.P50, s.P99, s.Max, s.Count)
}

func faultsLine(f npr.Faults) string {
	hold := f.Hold
	if hold == 0 {
		hold = npr.DefaultHold
	}
	return fmt.Sprintf("%.0f%% 503, %.0f%% acknowledgements lost, %.0f%% held up to %s, latency %s",
		100*f.Fail, 100*f.LoseAck, 100*f.Reorder, fmtDur(hold), f.Latency)
}
