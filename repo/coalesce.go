package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// Coalescer runs units of work that arrive at the same time in one shared
// transaction: one BEGIN, one COMMIT and one WAL flush for the lot instead of one
// each. Under load the commit, not the statements, is what a settlement waits
// for; a unit that arrives while a batch is committing joins the next one, so a
// lone unit on an idle system runs at once and batches grow only with the load.
//
// No guarantee is weakened: a unit's writes commit with the batch or not at all.
// Nor does sharing add deadlocks: the units of a shared transaction get a Tx
// whose locks never wait (FailIfBusy: a permit or payment reference another
// transaction holds is ErrBusy), so it never holds one permit while waiting
// for another; the busy unit runs alone after the batch commits, in a Tx that
// waits its turn (WaitForLocks) like any transaction of one unit.
// If any unit of a batch returns an error (or panics), the whole transaction is
// rolled back and every unit of it is run again alone, in its own transaction,
// so one failing unit costs the others only time; a unit must therefore be safe
// to run twice, which the request claim makes every parkd unit. A failed COMMIT
// fails every unit of the batch, and their tasks are retried like any other
// failure (the request claim turns a retry of what did commit into a no-op).
type Coalescer struct {
	db      *bun.DB
	log     *slog.Logger
	max     int
	timeout time.Duration
	units   chan *unit
	wg      sync.WaitGroup
	closed  chan struct{}
	stopped chan struct{} // closed once every committer has returned
	once    sync.Once

	// Batches, Units, Fallbacks and Deferred count what ran, for tests and
	// metrics: Deferred are units that said ErrBusy in a shared transaction.
	Batches, Units, Fallbacks, Deferred atomic.Int64
}

// CoalescerConfig sizes a Coalescer.
type CoalescerConfig struct {
	// MaxBatch caps the units in one transaction (default 64): a bigger batch
	// holds its row locks longer and makes a rollback costlier.
	MaxBatch int
	// Committers is how many batches run at once, each on its own connection
	// (default 2): while one waits for its COMMIT to be flushed, the other
	// fills. More committers make smaller batches, and a shared transaction's
	// saving grows with its size (its round trips, pipeline.go): on two cores
	// 2 did about 12 % more pairs a second than 4, for 13 % less CPU a pair
	// (docs/BENCHMARKS.md, issue 16, third session).
	Committers int
	// Timeout bounds one batch's transaction (default 30s).
	Timeout time.Duration
	// Log gets what a shared transaction's held outcomes met that made its
	// units run again alone (default slog.Default()).
	Log *slog.Logger
}

const (
	unitWaiting int32 = iota
	unitTaken
	unitAbandoned
)

type unit struct {
	ctx       context.Context
	fn        func(ctx context.Context, tx Tx) error
	pipelined bool    // its FinishRequest may be held for the flush (pipeline.go)
	pre       Prelock // the row it locks first, read ahead with the batch's (prelock.go)
	state     atomic.Int32
	done      chan error
}

// NewCoalescer starts cfg.Committers committers over db; Close stops them.
func NewCoalescer(db *bun.DB, cfg CoalescerConfig) *Coalescer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 64
	}
	if cfg.Committers <= 0 {
		cfg.Committers = 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Coalescer{db: db, log: cfg.Log, max: cfg.MaxBatch, timeout: cfg.Timeout,
		units: make(chan *unit, cfg.MaxBatch*cfg.Committers), closed: make(chan struct{}), stopped: make(chan struct{})}
	for range cfg.Committers {
		c.wg.Add(1)
		go c.commit()
	}
	return c
}

// Waiting is how many units were handed to Do and not yet taken by a
// committer.
func (c *Coalescer) Waiting() int { return len(c.units) }

// ErrCoalescerClosed is returned by Do after Close.
var ErrCoalescerClosed = errors.New("repo: coalescer closed")

// Do runs fn in a transaction shared with whatever else is waiting, and returns
// once that transaction has committed (nil) or fn's work was rolled back (the
// error). If ctx ends before fn has started, fn never runs; once it has started,
// Do waits for the outcome, which is then known for certain. fn's Tx says how
// its locks behave: FailIfBusy when the transaction is shared, WaitForLocks
// when fn runs alone (by itself, after ErrBusy, or after a failed batch).
func (c *Coalescer) Do(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error {
	return c.do(ctx, &unit{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// DoPipelined is Do for a unit whose FinishRequest may be held and sent with
// the batch's others before the commit (pipeline.go): fn must read nothing
// that another unit's FinishRequest writes except through its permit's lock
// (LockPermit, LockPermitForStart, LockSessionAndPermit), which the batch
// gives one unit per permit, or what a constraint guards. pre names the row
// fn locks first, which the batch locks with its other units' in one
// statement (prelock.go); the zero Prelock names none.
func (c *Coalescer) DoPipelined(ctx context.Context, fn func(ctx context.Context, tx Tx) error, pre Prelock) error {
	return c.do(ctx, &unit{ctx: ctx, fn: fn, pipelined: true, pre: pre, done: make(chan error, 1)})
}

func (c *Coalescer) do(ctx context.Context, u *unit) error {
	select {
	case <-c.closed:
		return ErrCoalescerClosed
	default:
	}
	select {
	case c.units <- u:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrCoalescerClosed
	}
	select {
	case err := <-u.done:
		return err
	case <-ctx.Done():
		if u.state.CompareAndSwap(unitWaiting, unitAbandoned) {
			return ctx.Err()
		}
		return <-u.done
	case <-c.stopped:
		// Queued just as the last committer drained the queue and left: no
		// one will take it now.
		if u.state.CompareAndSwap(unitWaiting, unitAbandoned) {
			return ErrCoalescerClosed
		}
		return <-u.done
	}
}

// Close stops taking units, lets the committers finish what they hold, and waits.
func (c *Coalescer) Close() {
	c.once.Do(func() {
		close(c.closed)
		c.wg.Wait()
		close(c.stopped)
	})
	c.wg.Wait()
}

func (c *Coalescer) commit() {
	defer c.wg.Done()
	batch := make([]*unit, 0, c.max)
	for {
		batch = batch[:0]
		select {
		case u := <-c.units:
			batch = c.take(batch, u)
		case <-c.closed:
			// Units already queued still get an answer.
			for {
				select {
				case u := <-c.units:
					if u.state.CompareAndSwap(unitWaiting, unitTaken) {
						u.done <- ErrCoalescerClosed
					}
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < c.max {
			select {
			case u := <-c.units:
				batch = c.take(batch, u)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			c.run(batch)
		}
	}
}

// take adds u to the batch unless its caller has already given up on it.
func (c *Coalescer) take(batch []*unit, u *unit) []*unit {
	if u.state.CompareAndSwap(unitWaiting, unitTaken) {
		return append(batch, u)
	}
	return batch
}

func (c *Coalescer) run(batch []*unit) {
	c.Batches.Add(1)
	c.Units.Add(int64(len(batch)))
	if len(batch) == 1 {
		batch[0].done <- c.alone(batch[0])
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		for _, u := range batch {
			u.done <- fmt.Errorf("begin shared transaction: %w", err)
		}
		return
	}
	shared := newSharedTx(tx)
	failed := false
	var deferred []*unit
	var pres []Prelock
	for _, u := range batch {
		if u.pipelined {
			pres = append(pres, u.pre)
		}
	}
	if err := shared.prelock(ctx, Tx{Tx: tx, Locks: FailIfBusy}, pres); err != nil {
		// The transaction is unusable: every unit runs alone.
		c.log.Warn("locks of a shared transaction's units refused: they run again alone", "units", len(batch), "err", err)
		failed = true
	}
	// flush sends the held outcomes; a unit whose plate it found parked
	// wrote nothing, and runs again alone after the commit, where its
	// refusal is recorded (pipeline.go).
	flush := func() bool {
		parked, err := shared.flush(ctx)
		if err != nil {
			// A request decided twice is a repeat, met as it would be alone;
			// anything else is worth an operator's look.
			level := slog.LevelWarn
			if errors.Is(err, ErrRequestKnown) {
				level = slog.LevelDebug
			}
			c.log.Log(ctx, level, "held outcomes of a shared transaction refused: its units run again alone", "units", len(batch), "err", err)
			return false
		}
		for _, i := range parked {
			deferred = append(deferred, batch[i])
		}
		return true
	}
	for i, u := range batch {
		if failed {
			break
		}
		if !u.pipelined && !flush() {
			// A unit that is not pipelined may read what the held outcomes
			// write: they go first. One that failed fails the batch.
			failed = true
			break
		}
		held := len(shared.held)
		err := call(unitCtx(ctx, u), Tx{Tx: tx, Locks: FailIfBusy, shared: shared, unit: i, pipelined: u.pipelined}, u.fn)
		if errors.Is(err, ErrBusy) {
			// It has written nothing that matters (at most its request row,
			// as pending); it runs again alone, after the commit.
			shared.held = shared.held[:held]
			deferred = append(deferred, u)
			continue
		}
		if err != nil {
			failed = true
			break
		}
	}
	if !failed && !flush() {
		failed = true
	}
	if failed {
		// The connection goes back before the units run again alone, each
		// on a connection of its own.
		_ = tx.Rollback()
		// Someone's unit failed: give each its own transaction, so only the
		// failing one fails.
		c.Fallbacks.Add(1)
		for _, u := range batch {
			u.done <- c.alone(u)
		}
		return
	}
	err = tx.Commit()
	if err != nil {
		err = fmt.Errorf("commit shared transaction of %d units: %w", len(batch), err)
		for _, u := range batch {
			u.done <- err
		}
		return
	}
	for _, u := range batch {
		if !slices.Contains(deferred, u) {
			u.done <- nil
		}
	}
	c.Deferred.Add(int64(len(deferred)))
	for _, u := range deferred {
		u.done <- c.alone(u)
	}
}

// alone runs one unit in its own transaction.
func (c *Coalescer) alone(u *unit) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return call(unitCtx(ctx, u), Tx{Tx: tx, Locks: WaitForLocks}, u.fn)
	})
}

// unitCtx carries the unit's values (its logger, its task ID) but the batch's
// deadline: the transaction is shared, so no single caller may cancel it.
func unitCtx(batch context.Context, u *unit) context.Context {
	return mergedValues{Context: batch, values: u.ctx}
}

type mergedValues struct {
	context.Context
	values context.Context
}

func (m mergedValues) Value(key any) any {
	if v := m.values.Value(key); v != nil {
		return v
	}
	return m.Context.Value(key)
}

// call runs fn, turning a panic into an error so that one bad unit cannot take
// the committer (and every other unit's answer) down with it.
func call(ctx context.Context, tx Tx, fn func(ctx context.Context, tx Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in transaction unit: %v", p)
		}
	}()
	return fn(ctx, tx)
}
