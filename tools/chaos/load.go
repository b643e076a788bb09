package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parkd/parkd/tools/load"
)

// The chaos load behaves as a correct upstream app must under faults: every
// write carries an Idempotency-Key, and whatever is not a definitive answer
// (202 pending, 429, 5xx, a timeout, a broken connection) is sent again, the
// same request under the same key, until one comes or the request's deadline
// passes. Each request sent is recorded with its final answer, so that the
// verdict can hold the database to what the client was told.

// chaosAnswer is how a request of the chaos load ended, as the client saw it.
type chaosAnswer string

const (
	answerApplied  chaosAnswer = "applied"    // 200 or 201
	answerRejected chaosAnswer = "rejected"   // a 4xx other than 429
	answerNone     chaosAnswer = "unanswered" // no definitive answer before its deadline
)

// Kinds of request the chaos load sends.
const (
	kindStart = "start"
	kindStop  = "stop"
)

// chaosRequest is one request the chaos load sent (under one key, however
// many times), and what became of it. Only the goroutine sending it writes it;
// it is read once every sender has finished.
type chaosRequest struct {
	Key        string      `json:"key"`
	Kind       string      `json:"kind"` // start or stop
	Probe      bool        `json:"probe,omitempty"`
	Autostop   bool        `json:"autostop,omitempty"`
	PlannedEnd time.Time   `json:"planned_end,omitzero"` // auto-stop starts: the end_at sent
	PermitID   string      `json:"permit_id"`
	SessionID  string      `json:"session_id,omitempty"` // a stop's session; an applied start's new session
	Window     int         `json:"window"`               // the fault window it was first sent in
	Sent       time.Time   `json:"sent"`
	Answered   time.Time   `json:"answered,omitzero"`
	Attempts   int         `json:"attempts"`
	Answer     chaosAnswer `json:"answer"`
	Status     int         `json:"status,omitempty"` // the definitive answer's HTTP status
	Code       string      `json:"code,omitempty"`   // its error code, for a rejection
	// Late: no definitive answer before its deadline during the load; the
	// follow-up after the load got one.
	Late bool `json:"late,omitempty"`

	path  string
	token string
	body  any
}

// chaosLoad is the closed-loop load of a chaos run and its record of every
// request.
type chaosLoad struct {
	api           *load.Client
	run           string
	plates        *load.PlateGen
	autostopEvery int
	autostopAhead time.Duration
	deadline      time.Duration // per request, from its first send
	minPause      time.Duration // retry backoff: from minPause, doubling, up to maxPause
	maxPause      time.Duration

	window   atomic.Int32 // the fault window now: 0 before the first fault
	seq      atomic.Int64 // request keys
	starts   atomic.Int64 // starts of the load, numbered for 1 in autostopEvery
	stopping atomic.Bool  // users finish their pair, then leave
	users    sync.WaitGroup

	mu      sync.Mutex
	reqs    []*chaosRequest
	retries map[int]map[string]int64  // window -> cause -> retries
	latency map[string]*load.Recorder // kind -> time from first send to definitive answer
}

func newChaosLoad(a *load.Client, run string, seed uint64, autostopEvery int, autostopAhead, deadline time.Duration) *chaosLoad {
	return &chaosLoad{api: a, run: run, plates: load.NewPlateGen(load.ShapeParked, seed), autostopEvery: autostopEvery,
		autostopAhead: autostopAhead, deadline: deadline, minPause: 200 * time.Millisecond, maxPause: 2 * time.Second,
		retries: map[int]map[string]int64{}, latency: map[string]*load.Recorder{kindStart: load.NewRecorder(), kindStop: load.NewRecorder()}}
}

// newRequest records a request about to be sent.
func (l *chaosLoad) newRequest(kind string, r load.Resident, probe bool) *chaosRequest {
	tag := map[string]string{kindStart: "s", kindStop: "x"}[kind]
	if probe {
		tag = "p" + tag
	}
	rq := &chaosRequest{Key: fmt.Sprintf("c%s-%s-%d", l.run, tag, l.seq.Add(1)), Kind: kind, Probe: probe,
		PermitID: r.PermitID, token: r.Token, Window: int(l.window.Load()), Answer: answerNone}
	l.mu.Lock()
	l.reqs = append(l.reqs, rq)
	l.mu.Unlock()
	return rq
}

// startRequest is a start of a session for r: left to its auto-stop
// (start_at this second, end_at autostopAhead later) or to be stopped.
func (l *chaosLoad) startRequest(r load.Resident, autostop, probe bool) *chaosRequest {
	rq := l.newRequest(kindStart, r, probe)
	rq.path = "/v1/permits/" + url.PathEscape(r.PermitID) + "/sessions"
	body := map[string]any{"plate": l.plates.Next()}
	if autostop {
		start := time.Now().UTC().Truncate(time.Second)
		rq.Autostop, rq.PlannedEnd = true, start.Add(l.autostopAhead)
		body["start_at"] = start.Format(time.RFC3339)
		body["end_at"] = rq.PlannedEnd.Format(time.RFC3339)
	}
	rq.body = body
	return rq
}

// stopRequest is a stop of session sid of r, at the instant it is received.
func (l *chaosLoad) stopRequest(r load.Resident, sid string, probe bool) *chaosRequest {
	rq := l.newRequest(kindStop, r, probe)
	rq.path = "/v1/sessions/" + url.PathEscape(sid) + "/stop"
	rq.SessionID = sid
	rq.body = map[string]any{}
	return rq
}

// send sends rq, again and again under its key, until a definitive answer,
// the deadline, or ctx's end; rq then holds the answer (or answerNone).
func (l *chaosLoad) send(ctx context.Context, rq *chaosRequest, deadline time.Time) {
	if rq.Sent.IsZero() {
		rq.Sent = time.Now()
	}
	pause := l.minPause
	for {
		rq.Attempts++
		an, err := l.api.Do(ctx, http.MethodPost, rq.path, rq.token, rq.Key, rq.body)
		if err != nil && ctx.Err() != nil {
			return // the run is interrupted: the request stays unanswered
		}
		cause := retryCause(an, err)
		if cause == "" {
			l.finish(rq, an)
			return
		}
		l.retried(cause)
		// Jitter, so that the users a fault stalled together do not come
		// back in step.
		wait := pause/2 + rand.N(pause/2+1)
		if time.Now().Add(wait).After(deadline) || !load.SleepCtx(ctx, wait) {
			return
		}
		pause = min(2*pause, l.maxPause)
	}
}

// retryCause names why an answer calls for sending the request again, or ""
// when it is definitive: 200/201 applied, any other 4xx but 429 rejected.
func retryCause(an load.Answer, err error) string {
	if err != nil {
		switch k := load.TransportKind(err); k {
		case "transport: timeout":
			return "timeout"
		case "transport: connection refused", "transport: connection reset", "transport: connection closed":
			return strings.TrimPrefix(k, "transport: ")
		}
		return "connection error"
	}
	switch {
	case an.Status == http.StatusOK || an.Status == http.StatusCreated:
		return ""
	case an.Status == http.StatusAccepted:
		return "202 pending"
	case an.Status == http.StatusTooManyRequests, an.Status >= 500:
		return an.ErrorKind()
	case an.Status >= 400:
		return ""
	}
	return an.ErrorKind() // 1xx, 204, 3xx: not an answer the contract gives
}

func (l *chaosLoad) finish(rq *chaosRequest, an load.Answer) {
	rq.Answered, rq.Status, rq.Code = time.Now(), an.Status, an.Code
	if an.Status == http.StatusOK || an.Status == http.StatusCreated {
		rq.Answer = answerApplied
		if rq.Kind == kindStart {
			if id, err := load.IDOf(an.Body); err == nil {
				rq.SessionID = id
			}
		}
	} else {
		rq.Answer = answerRejected
	}
	l.latency[rq.Kind].Record(rq.Answered.Sub(rq.Sent))
}

func (l *chaosLoad) retried(cause string) {
	w := int(l.window.Load())
	l.mu.Lock()
	if l.retries[w] == nil {
		l.retries[w] = map[string]int64{}
	}
	l.retries[w][cause]++
	l.mu.Unlock()
}

// begin starts one virtual user per share of residents; stop ends them.
func (l *chaosLoad) begin(ctx context.Context, shares [][]load.Resident) {
	for _, mine := range shares {
		l.users.Go(func() { l.user(ctx, mine) })
	}
}

// user is a closed loop over its own permits: a start, then (unless it is
// left to its auto-stop) the stop of the session it made, sent only once the
// start was definitively applied.
func (l *chaosLoad) user(ctx context.Context, mine []load.Resident) {
	for k := 0; !l.stopping.Load() && ctx.Err() == nil; k++ {
		r := mine[k%len(mine)]
		n := l.starts.Add(1) - 1
		auto := l.autostopEvery > 0 && n%int64(l.autostopEvery) == int64(l.autostopEvery)-1
		st := l.startRequest(r, auto, false)
		l.send(ctx, st, time.Now().Add(l.deadline))
		if st.Answer != answerApplied || st.SessionID == "" {
			// Rejected or unanswered: nothing to stop (the follow-up after
			// the load resolves an unanswered start).
			load.SleepCtx(ctx, load.ErrorPause)
			continue
		}
		if auto {
			continue
		}
		sp := l.stopRequest(r, st.SessionID, false)
		l.send(ctx, sp, time.Now().Add(l.deadline))
		if sp.Answer != answerApplied {
			load.SleepCtx(ctx, load.ErrorPause)
		}
	}
}

// stop tells the users to leave after their current pair and waits for them.
func (l *chaosLoad) stop() {
	l.stopping.Store(true)
	l.users.Wait()
}

// probe is one start and stop through the API, each sent until definitively
// answered or until deadline: the proof that parkd serves again.
func (l *chaosLoad) probe(ctx context.Context, r load.Resident, deadline time.Time) error {
	st := l.startRequest(r, false, true)
	l.send(ctx, st, deadline)
	switch {
	case st.Answer == answerNone:
		return fmt.Errorf("probe start %s: no definitive answer after %d attempts", st.Key, st.Attempts)
	case st.Answer == answerRejected:
		return fmt.Errorf("probe start %s: %d %s", st.Key, st.Status, st.Code)
	case st.SessionID == "":
		return fmt.Errorf("probe start %s: applied, but the answer names no session", st.Key)
	}
	sp := l.stopRequest(r, st.SessionID, true)
	l.send(ctx, sp, deadline)
	switch sp.Answer {
	case answerNone:
		return fmt.Errorf("probe stop %s of session %s: no definitive answer after %d attempts", sp.Key, st.SessionID, sp.Attempts)
	case answerRejected:
		return fmt.Errorf("probe stop %s of session %s: %d %s", sp.Key, st.SessionID, sp.Status, sp.Code)
	}
	return nil
}

// followUp sends every request still without a definitive answer again,
// under its key, until answered or until limit from now; a start that turns
// out applied and is not left to its auto-stop is then stopped, as the app
// would once it learns of the session. It returns how many requests it
// resolved and how many remain unanswered.
func (l *chaosLoad) followUp(ctx context.Context, residents map[string]load.Resident, limit time.Duration) (resolved, left int) {
	deadline := time.Now().Add(limit)
	var todo []*chaosRequest
	for _, rq := range l.requests() {
		if rq.Answer == answerNone {
			todo = append(todo, rq)
		}
	}
	var wg sync.WaitGroup
	var n atomic.Int64
	sem := make(chan struct{}, 16)
	for _, rq := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.send(ctx, rq, deadline)
			if rq.Answer == answerNone {
				return
			}
			rq.Late = true
			n.Add(1)
			if rq.Kind == kindStart && rq.Answer == answerApplied && !rq.Autostop && rq.SessionID != "" {
				r := residents[rq.PermitID]
				l.send(ctx, l.stopRequest(r, rq.SessionID, rq.Probe), deadline)
			}
		})
	}
	wg.Wait()
	for _, rq := range l.requests() {
		if rq.Answer == answerNone {
			left++
		}
	}
	return int(n.Load()), left
}

// requests is every request sent so far.
func (l *chaosLoad) requests() []*chaosRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*chaosRequest(nil), l.reqs...)
}

// retriesIn is the retries by cause in window w.
func (l *chaosLoad) retriesIn(w int) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.retries[w])
}

// retriesTotal is the retries by cause over the whole run.
func (l *chaosLoad) retriesTotal() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int64{}
	for _, byCause := range l.retries {
		for c, n := range byCause {
			out[c] += n
		}
	}
	return out
}
