package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parkd/parkd/tools/load"
)

// driver runs sessions for the phases: it owns the plate generator, the
// request ID sequence and the list of sessions left to their auto-stop.
type driver struct {
	api    *load.Client
	w      *load.World
	run    string
	plates *load.PlateGen
	never  *load.PlateGen // plates no session is ever started for
	seq    atomic.Int64

	// AutostopEvery: 1 in this many starts has an end_at and is not stopped
	// by the bench (0: none).
	autostopEvery int
	// ChangeEvery: 1 in this many pairs (not left to their auto-stop) starts
	// with an end an hour ahead, extends it by half an hour with a
	// PATCH /v1/sessions/{id}, then stops (0: none).
	changeEvery int
	mu          sync.Mutex
	autostops   []int64 // their session IDs
}

func (d *driver) key(kind string) string {
	return fmt.Sprintf("b%s-%s-%d", d.run, kind, d.seq.Add(1))
}

// isAutostop says whether start number n of a phase is left to its auto-stop.
func (d *driver) isAutostop(n int64) bool {
	return d.autostopEvery > 0 && n%int64(d.autostopEvery) == int64(d.autostopEvery)-1
}

// isChange says whether pair number n of a phase extends its session before
// stopping it.
func (d *driver) isChange(n int64) bool {
	return d.changeEvery > 0 && !d.isAutostop(n) && n%int64(d.changeEvery) == 0
}

// ChangeAhead is how far ahead a pair that changes its session first plans
// its end; the change moves it half as far again.
const ChangeAhead = time.Hour

// startBody is a start as an app sends it. An auto-stop session names its
// start (this second) and an end one or two whole minutes later (alternately,
// by k), so that it reserves whole minutes and its planned end falls on a
// whole second, as asynq schedules in whole seconds.
func startBody(plate string, autostop bool, now time.Time, k int64) map[string]any {
	b := map[string]any{"plate": plate}
	if autostop {
		start := now.UTC().Truncate(time.Second)
		b["start_at"] = start.Format(time.RFC3339)
		b["end_at"] = start.Add(time.Duration(1+k%2) * time.Minute).Format(time.RFC3339)
	}
	return b
}

// start starts a session for r and records its latency from t0 (the instant
// the start was due) in st. It returns the session's ID, or "" when the start
// failed or was rejected (counted in st).
func (d *driver) start(ctx context.Context, r load.Resident, plate string, autostop bool, n int64, t0 time.Time, st *OpStats) string {
	o, err := d.api.Write(ctx, http.MethodPost, "/v1/permits/"+url.PathEscape(r.PermitID)+"/sessions",
		r.Token, d.key("s"), startBody(plate, autostop, time.Now(), n/int64(max(d.autostopEvery, 1))), 30*time.Second)
	return d.settle(o, err, t0, st, autostop)
}

// startToChange starts a session ending ChangeAhead from now (whole seconds),
// and returns its ID and planned end.
func (d *driver) startToChange(ctx context.Context, r load.Resident, plate string, t0 time.Time, st *OpStats) (string, time.Time) {
	start := time.Now().UTC().Truncate(time.Second)
	end := start.Add(ChangeAhead)
	o, err := d.api.Write(ctx, http.MethodPost, "/v1/permits/"+url.PathEscape(r.PermitID)+"/sessions",
		r.Token, d.key("s"), map[string]any{"plate": plate, "start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, 30*time.Second)
	return d.settle(o, err, t0, st, false), end
}

// extend moves a session's end to end (PATCH /v1/sessions/{id}), timed from t0.
func (d *driver) extend(ctx context.Context, r load.Resident, sessionID string, end time.Time, t0 time.Time, st *OpStats) bool {
	o, err := d.api.Write(ctx, http.MethodPatch, "/v1/sessions/"+url.PathEscape(sessionID),
		r.Token, d.key("c"), map[string]any{"end_at": end.UTC().Format(time.RFC3339)}, 30*time.Second)
	return d.settle(o, err, t0, st, false) != ""
}

// stop stops a session, timed from t0.
func (d *driver) stop(ctx context.Context, r load.Resident, sessionID string, t0 time.Time, st *OpStats) bool {
	o, err := d.api.Write(ctx, http.MethodPost, "/v1/sessions/"+url.PathEscape(sessionID)+"/stop",
		r.Token, d.key("x"), map[string]any{}, 30*time.Second)
	return d.settle(o, err, t0, st, false) != ""
}

// settle records how a write went. A pending answer's latency runs until its
// outcome was read back: that is how long the app waited for it.
func (d *driver) settle(o load.Outcome, err error, t0 time.Time, st *OpStats, autostop bool) string {
	if err != nil && load.FailureKind(err) == "cancelled" {
		return "" // the bench is being interrupted: not parkd's failure
	}
	if o.Pending {
		st.pending.Add(1)
	}
	if err != nil {
		st.Fail(load.FailureKind(err))
		return ""
	}
	if !o.Applied {
		st.Fail("422 " + o.Code)
		return ""
	}
	st.Lat.Record(time.Since(t0))
	id, err := load.IDOf(o.Result)
	if err != nil {
		st.Fail("bad result")
		return ""
	}
	st.ok.Add(1)
	if autostop {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			d.mu.Lock()
			d.autostops = append(d.autostops, n)
			d.mu.Unlock()
		}
	}
	return id
}

// autostopIDs are the sessions left to their auto-stop so far.
func (d *driver) autostopIDs() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int64(nil), d.autostops...)
}

// IdleResult is the latency of starts and stops sent one at a time on an
// otherwise idle system.
type IdleResult struct {
	Pairs int      `json:"pairs"`
	Start OpResult `json:"start"`
	Stop  OpResult `json:"stop"`
}

// runIdle sends n start+stop pairs one at a time with a pause around each
// request, so that each one finds parkd idle (its workers asleep in their
// task-check interval, as a quiet night would).
func (d *driver) runIdle(ctx context.Context, n int, pause time.Duration) IdleResult {
	start, stop := NewOpStats(), NewOpStats()
	for i := range n {
		if !load.SleepCtx(ctx, pause) {
			break
		}
		r := d.w.Residents[i%len(d.w.Residents)]
		id := d.start(ctx, r, d.plates.Next(), false, 0, time.Now(), start)
		if id == "" || !load.SleepCtx(ctx, pause) {
			continue
		}
		d.stop(ctx, r, id, time.Now(), stop)
	}
	return IdleResult{Pairs: n, Start: start.Result(), Stop: stop.Result()}
}

// LoadResult is a phase of starts and stops under load.
type LoadResult struct {
	Phase        string   `json:"phase"`
	Concurrency  int      `json:"concurrency"`                  // virtual users (closed loop) or pool size (open loop)
	TargetRate   float64  `json:"target_pairs_per_s,omitempty"` // open loop: arrivals per second
	Seconds      float64  `json:"seconds"`
	Pairs        int64    `json:"pairs"`
	Autostops    int64    `json:"autostop_starts"`
	PairsPerSec  float64  `json:"pairs_per_s"`
	StartsPerSec float64  `json:"starts_per_s"`
	StopsPerSec  float64  `json:"stops_per_s"`
	Start        OpResult `json:"start"`
	Stop         OpResult `json:"stop"`
	// Changes are the pairs that extended their session before the stop
	// (--change-every), Change those extensions.
	Changes int64    `json:"changes"`
	Change  OpResult `json:"change"`
	// Open loop: how long arrivals waited for a free virtual user; large
	// values mean the bench, not parkd, was short of hands.
	DispatchDelay *load.Latency `json:"dispatch_delay,omitempty"`
}

// pair runs one start and, unless it is left to its auto-stop, its stop. It
// reports whether a pair was completed.
func (d *driver) pair(ctx context.Context, r load.Resident, n int64, due time.Time, ops *phaseOps) bool {
	auto := d.isAutostop(n)
	var id string
	var end time.Time
	if d.isChange(n) {
		id, end = d.startToChange(ctx, r, d.plates.Next(), due, ops.start)
	} else {
		id = d.start(ctx, r, d.plates.Next(), auto, n, due, ops.start)
	}
	if id == "" {
		load.SleepCtx(ctx, load.ErrorPause)
		return false
	}
	if auto {
		ops.autostops.Add(1)
		return false
	}
	if !end.IsZero() {
		ops.changes.Add(1)
		if !d.extend(ctx, r, id, end.Add(ChangeAhead/2), time.Now(), ops.change) {
			load.SleepCtx(ctx, load.ErrorPause) // and stop it still
		}
	}
	if !d.stop(ctx, r, id, time.Now(), ops.stop) {
		load.SleepCtx(ctx, load.ErrorPause)
		return false
	}
	return true
}

// runMax is the closed loop: c users, each starting a session and stopping it
// as soon as the start is answered, for dur. It measures the most parkd does.
func (d *driver) runMax(ctx context.Context, c int, dur time.Duration) LoadResult {
	ops := newPhaseOps()
	var pairs, n atomic.Int64
	users := load.Partition(d.w.Residents, c)
	t0 := time.Now()
	deadline := t0.Add(dur)
	var wg sync.WaitGroup
	for _, mine := range users {
		wg.Go(func() {
			for k := 0; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
				if d.pair(ctx, mine[k%len(mine)], n.Add(1)-1, time.Now(), ops) {
					pairs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return loadResult("max", len(users), 0, time.Since(t0), pairs.Load(), ops, nil)
}

// runHalf is the open loop: pairs arrive at rate per second for dur, each
// handled by a free user of a pool, and each start is timed from the instant
// it was due.
func (d *driver) runHalf(ctx context.Context, rate float64, pool int, dur time.Duration) LoadResult {
	ops := newPhaseOps()
	delay := load.NewRecorder()
	var pairs atomic.Int64
	users := load.Partition(d.w.Residents, pool)
	arrivals := make(chan arrival, len(users))
	t0 := time.Now()
	go pace(ctx, Schedule{Start: t0, Rate: rate}, dur, arrivals)
	var wg sync.WaitGroup
	for _, mine := range users {
		wg.Go(func() {
			k := 0
			for a := range arrivals {
				delay.Record(time.Since(a.due))
				if d.pair(ctx, mine[k%len(mine)], a.i, a.due, ops) {
					pairs.Add(1)
				}
				k++
			}
		})
	}
	wg.Wait()
	dd := delay.Summary()
	return loadResult("half", len(users), rate, time.Since(t0), pairs.Load(), ops, &dd)
}

// phaseOps are what a load phase counts: each kind of request, the starts
// left to their auto-stop and the pairs that changed their session.
type phaseOps struct {
	start, stop, change *OpStats
	autostops, changes  atomic.Int64
}

func newPhaseOps() *phaseOps {
	return &phaseOps{start: NewOpStats(), stop: NewOpStats(), change: NewOpStats()}
}

func loadResult(phase string, users int, rate float64, elapsed time.Duration, pairs int64, ops *phaseOps, delay *load.Latency) LoadResult {
	s := elapsed.Seconds()
	return LoadResult{Phase: phase, Concurrency: users, TargetRate: rate, Seconds: s, Pairs: pairs, Autostops: ops.autostops.Load(),
		PairsPerSec: float64(pairs) / s, StartsPerSec: float64(ops.start.OK()) / s, StopsPerSec: float64(ops.stop.OK()) / s,
		Start: ops.start.Result(), Stop: ops.stop.Result(), Changes: ops.changes.Load(), Change: ops.change.Result(), DispatchDelay: delay}
}

// RightsResult is the enforcement check at a fixed rate.
type RightsResult struct {
	TargetRate   float64      `json:"target_per_s"`
	AchievedRate float64      `json:"achieved_per_s"` // answered per second, from the first due instant to the last answer
	Seconds      float64      `json:"seconds"`
	Pool         int          `json:"pool"`
	ScanCars     int          `json:"scan_cars"`     // enforcement subjects the checks are spread over
	Parked       int          `json:"parked_plates"` // sessions parked for the phase, whose plates make half the checks
	Checks       OpResult     `json:"checks"`        // wrong answers count as errors
	Delay        load.Latency `json:"dispatch_delay"`
	ParkErrors   int64        `json:"park_errors,omitempty"`
}

// runRights parks some sessions, then asks the rights question at rate per
// second for dur, alternating the plates of those sessions (which must be
// valid) with plates never parked (which must not), then stops the sessions.
func (d *driver) runRights(ctx context.Context, rate float64, dur time.Duration, parkN, pool int) RightsResult {
	res := RightsResult{TargetRate: rate, Pool: pool, ScanCars: len(d.w.Scan)}
	// Park one session per resident of the first parkN, concurrently.
	type parked struct {
		r     load.Resident
		plate string
		id    string
	}
	parkN = min(parkN, len(d.w.Residents))
	sessions := make([]parked, parkN)
	park := NewOpStats()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range parkN {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, plate := d.w.Residents[i], d.plates.Next()
			sessions[i] = parked{r: r, plate: plate, id: d.start(ctx, r, plate, false, 0, time.Now(), park)}
		})
	}
	wg.Wait()
	var plates []string
	for _, s := range sessions {
		if s.id != "" {
			plates = append(plates, s.plate)
		}
	}
	res.Parked = len(plates)
	res.ParkErrors = park.Result().ErrorCount()

	checks, delay := NewOpStats(), load.NewRecorder()
	arrivals := make(chan arrival, pool)
	t0 := time.Now()
	go pace(ctx, Schedule{Start: t0, Rate: rate}, dur, arrivals)
	var lastDone atomic.Int64
	for range pool {
		wg.Go(func() {
			for a := range arrivals {
				delay.Record(time.Since(a.due))
				plate, want := d.never.At(uint64(a.i)), false
				if a.i%2 == 0 && len(plates) > 0 {
					plate, want = plates[(a.i/2)%int64(len(plates))], true
				}
				d.checkRight(ctx, d.w.Scan[a.i%int64(len(d.w.Scan))], plate, want, a.due, checks)
				for done := int64(time.Since(t0)); ; {
					last := lastDone.Load()
					if done <= last || lastDone.CompareAndSwap(last, done) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Duration(lastDone.Load()).Seconds()
	res.Checks, res.Delay = checks.Result(), delay.Summary()
	if res.Seconds > 0 {
		res.AchievedRate = float64(res.Checks.Latency.Count) / res.Seconds
	}

	// Stop what was parked (not timed); a failure here shows up in the audit.
	stop := NewOpStats()
	for _, s := range sessions {
		if s.id == "" {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.stop(context.WithoutCancel(ctx), s.r, s.id, time.Now(), stop)
		})
	}
	wg.Wait()
	return res
}

// checkRight asks once and counts a wrong answer as an error: a fast wrong
// answer is no answer.
func (d *driver) checkRight(ctx context.Context, token, plate string, want bool, due time.Time, st *OpStats) {
	q := url.Values{"plate": {plate}, "zone": {d.w.Zone}, "place": {"permit_holder"}}
	an, err := d.api.Do(ctx, http.MethodGet, "/v1/rights?"+q.Encode(), token, "", nil)
	if err != nil {
		if kind := load.TransportKind(err); kind != "cancelled" {
			st.Fail(kind)
		}
		return
	}
	st.Lat.Record(time.Since(due))
	if an.Status != http.StatusOK {
		st.Fail(an.ErrorKind())
		return
	}
	var v struct {
		Valid bool `json:"valid"`
	}
	if err := json.Unmarshal(an.Body, &v); err != nil {
		st.Fail("bad answer")
		return
	}
	if v.Valid != want {
		st.Fail(fmt.Sprintf("wrong answer (valid=%t for a plate %s)", v.Valid, map[bool]string{true: "parked", false: "never parked"}[want]))
		return
	}
	st.ok.Add(1)
}
