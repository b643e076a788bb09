package repo

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The announcement of finished requests, both ends of it: FinishRequest sends
// the NOTIFY (noticeSQL, in the transaction of the outcome) and the Listener
// of each HTTP intake receives it (ParseRequestNotice). The payload's format
// lives here only.

// RequestChannel is the LISTEN/NOTIFY channel on which every finished request ID
// is announced, so that waiting HTTP intakes wake at once instead of polling.
const RequestChannel = "parkd_request_done"

// noticeSQL is the payload announced on RequestChannel for a finished request
// (a row of done): the outcome itself as JSON, with the request's type,
// fingerprint and subject, so that a waiting intake can answer without
// reading it back, and can tell that it is the outcome of its own request
// (the intake has no record of its own while it waits); or, when that would pass NOTIFY's 8000-byte
// limit, only the request ID. ParseRequestNotice reads both.
const noticeSQL = `(SELECT CASE WHEN octet_length(n) < 7900 THEN n ELSE request_id END
	FROM (SELECT json_build_object('request_id', request_id, 'type', type, 'body_hash', body_hash, 'subject', subject,
	                               'status', status, 'error', error, 'result', result)::text AS n) j)`

// requestNotice is the payload of a notification on RequestChannel that
// carries the outcome (noticeSQL's JSON).
type requestNotice struct {
	RequestID string          `json:"request_id"`
	Type      string          `json:"type"`
	BodyHash  string          `json:"body_hash"`
	Subject   *string         `json:"subject"`
	Status    string          `json:"status"`
	Error     json.RawMessage `json:"error"`
	Result    json.RawMessage `json:"result"`
}

// ParseRequestNotice reads a notification's payload: the request ID, and the
// finished request's outcome when the payload carries it (nil otherwise).
func ParseRequestNotice(payload string) (string, *Request) {
	if !strings.HasPrefix(payload, "{") {
		return payload, nil
	}
	var n requestNotice
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.RequestID == "" {
		return payload, nil
	}
	r := &Request{RequestID: n.RequestID, Type: n.Type, BodyHash: n.BodyHash, Subject: n.Subject, Status: n.Status}
	// JSON null is what SQL NULL became: absent, as a read from the table gives.
	if string(n.Error) != "null" {
		r.Error = n.Error
	}
	if string(n.Result) != "null" {
		r.Result = n.Result
	}
	return n.RequestID, r
}

// Listener tells waiting HTTP requests that their request has an outcome: the
// LISTEN end of RequestChannel.
//
// Why Postgres LISTEN/NOTIFY: the outcome is written to Postgres by the worker in
// the same transaction as the change it describes, and FinishRequest
// announces the request ID with pg_notify in that transaction. Postgres delivers
// the notification only when (and as soon as) the transaction commits, so a
// waiter woken by it always finds the outcome, and never one that was rolled back.
// Redis pub/sub would have to be published after the commit (a second write that
// a crash can lose), and asynq's result store knows nothing of requests answered
// from Postgres without running a task (repeats, rejections decided before).
//
// One dedicated connection per intake process listens, whatever the number of
// waiters: each waiter registers its request ID in a map, and the listener wakes
// the waiters of each ID it hears. A waiter registers before it reads the status,
// so an outcome committed between the read and the registration is not missed.
//
// When the connection drops, the listener reconnects with backoff; meanwhile
// notifications are lost, so it wakes every waiter when it goes down (they switch
// to polling every PollInterval) and again when it is back (they re-read once,
// catching what was committed in the gap, and go back to waiting).
type Listener struct {
	dsn string
	log *slog.Logger

	// PollInterval is how often waiters re-read while the listener is down.
	PollInterval time.Duration
	// HealthInterval is how long the connection may be silent before it is
	// pinged: a peer that vanished without closing the socket is found within it.
	HealthInterval time.Duration

	mu        sync.Mutex
	waiters   map[string]map[*waiter]struct{}
	connected bool
	upCh      chan struct{} // closed while connected (tests wait on it)
}

type waiter struct {
	ch      chan struct{}
	outcome *Request // the outcome, when a notification carried it (under mu)
}

// Subscription is a waiter's interest in one request ID: C receives a value
// when the request may have an outcome (or the listener went down or came
// back up: then read it from Postgres); Outcome is that outcome when the
// notification carried it. Close it when done.
type Subscription struct {
	C  <-chan struct{}
	l  *Listener
	id string
	w  *waiter
}

// Outcome returns the finished request a notification carried, or nil (then
// the outcome has to be read from Postgres).
func (s *Subscription) Outcome() *Request {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	return s.w.outcome
}

// Close forgets the subscription.
func (s *Subscription) Close() {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if set, ok := s.l.waiters[s.id]; ok {
		delete(set, s.w)
		if len(set) == 0 {
			delete(s.l.waiters, s.id)
		}
	}
}

// NewListener returns a listener on the Postgres at dsn. Call Run to start it.
func NewListener(dsn string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{dsn: dsn, log: log.With("component", "listener"),
		PollInterval: 200 * time.Millisecond, HealthInterval: 5 * time.Second,
		waiters: map[string]map[*waiter]struct{}{}, upCh: make(chan struct{})}
}

// Run listens until ctx ends, reconnecting with backoff (100 ms doubling to 5 s)
// whenever the connection fails.
func (l *Listener) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := l.listen(ctx)
		l.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = 100 * time.Millisecond // it worked for a while: this is a new failure
		}
		l.log.Warn("request notifications lost; waiters poll until reconnected", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listen runs one connection's life: connect, LISTEN, then relay notifications
// until something fails.
func (l *Listener) listen(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.Connect(cctx, l.dsn)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{RequestChannel}.Sanitize())
	cancel()
	if err != nil {
		return err
	}
	l.setConnected(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, l.HealthInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.wake(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Silence is normal; a timeout leaves the pgx connection usable.
			// Make sure the server is still there.
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (l *Listener) setConnected(up bool) {
	l.mu.Lock()
	changed := l.connected != up
	l.connected = up
	if changed {
		if up {
			close(l.upCh)
		} else {
			l.upCh = make(chan struct{})
		}
	}
	l.mu.Unlock()
	if changed {
		l.wakeAll()
	}
}

// Connected reports whether notifications are being received.
func (l *Listener) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

// Up returns a channel that is closed once the listener is connected.
func (l *Listener) Up() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.upCh
}

// Subscribe registers interest in a request ID. Subscribe before the first
// read of the request's status: an outcome committed at any moment after that
// read then wakes the subscription, so none is missed.
func (l *Listener) Subscribe(id string) *Subscription {
	w := &waiter{ch: make(chan struct{}, 1)}
	l.mu.Lock()
	set := l.waiters[id]
	if set == nil {
		set = map[*waiter]struct{}{}
		l.waiters[id] = set
	}
	set[w] = struct{}{}
	l.mu.Unlock()
	return &Subscription{C: w.ch, l: l, id: id, w: w}
}

// wake relays one notification to the waiters of its request, with the
// outcome when the payload carries it.
func (l *Listener) wake(payload string) {
	id, outcome := ParseRequestNotice(payload)
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.waiters[id] {
		if outcome != nil {
			w.outcome = outcome
		}
		signal(w.ch)
	}
}

func (l *Listener) wakeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, set := range l.waiters {
		for w := range set {
			signal(w.ch)
		}
	}
}

// signal never blocks: one pending wake-up is as good as many.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waiting reports how many request IDs have waiters (tests check cleanup).
func (l *Listener) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}
