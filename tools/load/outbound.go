package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/npr"
	"github.com/parkd/parkd/tools/receiver"
	"github.com/parkd/parkd/worker"
)

// What parkd tells others (README "Events and webhooks: how an upstream app
// subscribes", "Pointing parkd at a register"), from the lab's side: a
// register emulator and a webhook receiver in the lab's own process on real
// loopback ports, the subscription, and reading back what parkd says it sent,
// so that the chaos run and the bench can hold the one to the other and time
// it.

// LabRegistration is the register codes the lab's zones get.
var LabRegistration = domain.ZoneRegistration{AreaManagerID: "363", AreaID: "LAB01", UsageID: "BEZOEKP"}

// Register is a register emulator served on a loopback port.
type Register struct {
	*npr.Register
	URL   string // PARKD_REGISTRAR_URL
	Token string // PARKD_REGISTRAR_TOKEN
	srv   *http.Server
}

// ServeRegister serves a register emulator with o (a fresh token unless
// o.Token is set) on a free loopback port.
func ServeRegister(o npr.Options) (*Register, error) {
	if o.Token == "" {
		o.Token = RandomSecret()
	}
	reg, err := npr.New(o)
	if err != nil {
		return nil, fmt.Errorf("register emulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("register emulator: %w", err)
	}
	r := &Register{Register: reg, URL: "http://" + ln.Addr().String(), Token: o.Token,
		srv: &http.Server{Handler: reg, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Env is what a parkd process needs to register with r.
func (r *Register) Env() []string {
	return []string{"PARKD_REGISTRAR_URL=" + r.URL, "PARKD_REGISTRAR_TOKEN=" + r.Token}
}

// Close stops serving.
func (r *Register) Close() { _ = r.srv.Close() }

// Subscribe subscribes url to every event type as webhook name, with secret,
// through PUT /v1/admin/webhooks/{name} under an operator's token.
func Subscribe(ctx context.Context, a *Client, operator, name, url, secret string) error {
	an, err := retry429(ctx, func() (Answer, error) {
		return a.Do(ctx, http.MethodPut, "/v1/admin/webhooks/"+name, operator, "", map[string]any{"url": url, "secret": secret})
	})
	if err != nil {
		return fmt.Errorf("subscribe webhook %s: %w", name, err)
	}
	if an.Status != http.StatusOK {
		return fmt.Errorf("subscribe webhook %s: %w", name, &ErrAnswer{an})
	}
	return nil
}

// FeedPage is the most GET /v1/events answers at once.
const FeedPage = 500

// ReadFeed reads GET /v1/events from after=0 to its end, pages of FeedPage,
// each page's after= the last sequence of the one before, as a consumer
// that keeps its place does; it returns the events in the order read and
// the number of pages.
func ReadFeed(ctx context.Context, a *Client, operator string) ([]receiver.Event, int, error) {
	var out []receiver.Event
	var after int64
	for pages := 1; ; pages++ {
		path := "/v1/events?after=" + strconv.FormatInt(after, 10) + "&limit=" + strconv.Itoa(FeedPage)
		an, err := a.Do(ctx, http.MethodGet, path, operator, "", nil)
		if err != nil {
			return out, pages, fmt.Errorf("GET %s: %w", path, err)
		}
		if an.Status != http.StatusOK {
			return out, pages, fmt.Errorf("GET %s: %w", path, &ErrAnswer{an})
		}
		var page struct {
			Events []receiver.Event `json:"events"`
		}
		if err := json.Unmarshal(an.Body, &page); err != nil {
			return out, pages, fmt.Errorf("GET %s: %w", path, err)
		}
		out = append(out, page.Events...)
		if len(page.Events) < FeedPage {
			return out, pages, nil
		}
		after = page.Events[len(page.Events)-1].Sequence
	}
}

// ReadRegistered reads every session whose right is registered, by ID.
func ReadRegistered(ctx context.Context, st *repo.Store) ([]repo.Session, error) {
	var out []repo.Session
	var after int64
	for {
		page, err := repo.RegisteredSessions(ctx, st.DB, after, 2000)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 2000 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// ReadEvents reads every numbered event, by sequence, and counts the
// events not yet numbered.
func ReadEvents(ctx context.Context, st *repo.Store) ([]repo.Event, int64, error) {
	var out []repo.Event
	var after int64
	for {
		page, err := repo.EventsAfter(ctx, st.DB, after, nil, 5000)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, page...)
		if len(page) < 5000 {
			break
		}
		after = *page[len(page)-1].Sequence
	}
	unnumbered, err := repo.UnsequencedEvents(ctx, st.DB)
	return out, unnumbered, err
}

// OutboundBacklog is what parkd still owes the outside world, from its
// own records.
type OutboundBacklog struct {
	PendingRights int64 `json:"pending_rights"` // sessions whose newest right version is neither acknowledged nor refused
	Unnumbered    int64 `json:"unnumbered_events"`
	Undelivered   int64 `json:"undelivered"` // deliveries to active webhooks pending or failed
}

// Done says nothing is owed.
func (b OutboundBacklog) Done() bool {
	return b.PendingRights == 0 && b.Unnumbered == 0 && b.Undelivered == 0
}

func (b OutboundBacklog) String() string {
	return fmt.Sprintf("%d rights pending, %d events unnumbered, %d deliveries undelivered", b.PendingRights, b.Unnumbered, b.Undelivered)
}

// ReadBacklog reads what parkd still owes.
func ReadBacklog(ctx context.Context, st *repo.Store) (OutboundBacklog, error) {
	var b OutboundBacklog
	rights, err := repo.RightsBacklog(ctx, st.DB)
	if err != nil {
		return b, err
	}
	b.PendingRights = rights.Count
	if b.Unnumbered, err = repo.UnsequencedEvents(ctx, st.DB); err != nil {
		return b, err
	}
	hooks, err := repo.WebhookBacklogs(ctx, st.DB)
	if err != nil {
		return b, err
	}
	for _, h := range hooks {
		b.Undelivered += h.Undelivered
	}
	return b, nil
}

// WaitOutbound waits, up to limit, until parkd owes nothing (ReadBacklog).
// said, when given, is called about every 15 s while it waits, with the
// backlog and the time left. It returns how long it waited, whether
// everything was done, and the last backlog read.
func WaitOutbound(ctx context.Context, st *repo.Store, limit time.Duration, said func(OutboundBacklog, time.Duration)) (time.Duration, bool, OutboundBacklog, error) {
	t0 := time.Now()
	lastSaid := t0
	for {
		b, err := ReadBacklog(ctx, st)
		if err != nil {
			return time.Since(t0), false, b, err
		}
		if b.Done() {
			return time.Since(t0), true, b, nil
		}
		if time.Since(t0) >= limit || ctx.Err() != nil {
			return time.Since(t0), false, b, ctx.Err()
		}
		if said != nil && time.Since(lastSaid) >= 15*time.Second {
			said(b, limit-time.Since(t0))
			lastSaid = time.Now()
		}
		SleepCtx(ctx, 500*time.Millisecond)
	}
}

// RightOf is the right a register should hold of a registered session once
// the registrar took its newest version: the wire state parkd sends
// (README "Pointing parkd at a register"), under issuer's right ID.
func RightOf(issuer string, s repo.Session) npr.Right {
	status, end := worker.RightActive, s.PlannedEndAt
	switch s.State {
	case domain.StateStopped:
		status = worker.RightEnded
	case domain.StateCancelled:
		status = worker.RightCancelled
	}
	if s.State != domain.StateOpen && s.EndAt != nil {
		end = *s.EndAt
	}
	r := npr.Right{RightID: worker.RightID(issuer, repo.FormatID(s.ID)), Version: s.RightVersion, Issuer: issuer,
		Plate: s.Plate, Country: s.Country, StartAt: s.StartAt.UTC(), EndAt: end.UTC(), Status: status}
	if s.Registration != nil {
		r.AreaManagerID, r.AreaID, r.UsageID = s.Registration.AreaManagerID, s.Registration.AreaID, s.Registration.UsageID
	}
	return r
}

// RegistrationLags are, in seconds, how long each committed version of a
// registered session's right took to stand in the register: from the
// commit (version 1: the session's created_at, the start of the
// transaction that made it; the newest version: right_changed_at, the
// change's instant in its transaction; versions in between are not kept by
// parkd and not timed) to the first instant the register stored that version
// or a newer one (Snapshot.Stored). Both instants are taken before the
// commit and the store really happened, on one machine's clock, so a lag
// errs long by the commit's own time, never short. missing counts the
// versions the register never held.
func RegistrationLags(issuer string, sessions []repo.Session, stored map[string]map[int]time.Time) (first, last []float64, missing int) {
	for _, s := range sessions {
		vs := stored[worker.RightID(issuer, repo.FormatID(s.ID))]
		reached := func(v int) (time.Time, bool) {
			var at time.Time
			for sv, t := range vs {
				if sv >= v && (at.IsZero() || t.Before(at)) {
					at = t
				}
			}
			return at, !at.IsZero()
		}
		if at, ok := reached(1); ok {
			first = append(first, at.Sub(s.CreatedAt).Seconds())
		} else {
			missing++
		}
		if s.RightVersion > 1 && s.RightChangedAt != nil {
			if at, ok := reached(s.RightVersion); ok {
				last = append(last, at.Sub(*s.RightChangedAt).Seconds())
			} else {
				missing++
			}
		}
	}
	return first, last, missing
}

// WebhookLags are, in seconds, first receipt − occurred_at of every event
// received, all together and by type.
func WebhookLags(events map[string]receiver.Receipt) (all []float64, byType map[string][]float64) {
	byType = map[string][]float64{}
	for _, e := range events {
		d := e.FirstAt.Sub(e.OccurredAt).Seconds()
		all = append(all, d)
		byType[e.Type] = append(byType[e.Type], d)
	}
	return all, byType
}

// SpreadsByType summarises samples by type, types in order.
func SpreadsByType(byType map[string][]float64) []TypeSpread {
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	slices.Sort(types)
	out := make([]TypeSpread, len(types))
	for i, t := range types {
		out[i] = TypeSpread{Type: t, Spread: SpreadOf(byType[t])}
	}
	return out
}

// TypeSpread is one event type's spread.
type TypeSpread struct {
	Type   string `json:"type"`
	Spread Spread `json:"spread"`
}

// OperatorToken mints an operator's token with tk.
func OperatorToken(tk Tokens, sub string) (string, error) {
	return tk.Mint(identity.RoleOperator, sub)
}
