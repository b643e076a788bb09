package intake

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parkd/parkd/repo"
)

// Listener tells waiting HTTP requests that their request has an outcome.
//
// Why Postgres LISTEN/NOTIFY: the outcome is written to Postgres by the worker in
// the same transaction as the change it describes, and repo.FinishRequest
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
	outcome *repo.Request // the outcome, when a notification carried it (under mu)
}

// subscription is a waiter's handle: C receives a value when the request may
// have an outcome (or the listener changed state); Outcome is that outcome
// when the notification carried it; Close must be called when done.
type subscription struct {
	C     <-chan struct{}
	l     *Listener
	w     *waiter
	Close func()
}

// Outcome returns the finished request a notification carried, or nil (then
// the outcome has to be read from Postgres).
func (s *subscription) Outcome() *repo.Request {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	return s.w.outcome
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
	_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{repo.RequestChannel}.Sanitize())
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

// subscribe registers interest in a request ID.
func (l *Listener) subscribe(id string) *subscription {
	w := &waiter{ch: make(chan struct{}, 1)}
	l.mu.Lock()
	set := l.waiters[id]
	if set == nil {
		set = map[*waiter]struct{}{}
		l.waiters[id] = set
	}
	set[w] = struct{}{}
	l.mu.Unlock()
	return &subscription{C: w.ch, l: l, w: w, Close: func() {
		l.mu.Lock()
		delete(set, w)
		if cur, ok := l.waiters[id]; ok && len(cur) == 0 {
			delete(l.waiters, id)
		}
		l.mu.Unlock()
	}}
}

// wake relays one notification to the waiters of its request, with the
// outcome when the payload carries it.
func (l *Listener) wake(payload string) {
	id, outcome := repo.ParseRequestNotice(payload)
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
