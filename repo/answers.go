package repo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// Answers records what outbound receivers answered, a batch per statement
// (issue 16): the registrar's acknowledgements of rights (AcknowledgeRight)
// and webhooks' 2xx (RecordDelivered). Each was a statement and a commit of
// its own for every call, four a start+stop pair with a registrar and a
// webhook: most of what such a statement costs Postgres is the statement
// (opening the table and its indexes, compiling the table's check
// constraints) and its commit, not the row. Calls that arrive while a batch
// is being written wait for the next one, so a lone call on an idle system
// is written at once and batches grow only with the load, as the
// Coalescer's do.
//
// Nothing is weakened: a call returns once its row is committed, or with the
// error its own single statement meets: a call its batch leaves out (its
// row is held by another transaction, or the batch failed as a whole) is
// written alone, as before Answers. A batch never waits for a row lock, so
// it cannot deadlock with anything. A call whose context ends
// while it waits returns the context's error, and its row may still be
// written: the caller's retry finds it so (an acknowledgement keeps the
// highest version; a delivery recorded is not sent again).
type Answers struct {
	db         *bun.DB
	acks       *batcher[ackCall, RightAcknowledgement]
	deliveries *batcher[deliveredCall, struct{}]
}

// AnswersConfig sizes Answers' and OutboundReads' batches.
type AnswersConfig struct {
	// MaxBatch caps the calls one statement records (default 128).
	MaxBatch int
	// Timeout bounds one batch's statements (default 10 s).
	Timeout time.Duration
}

// NewAnswers starts the batch writers over db; Close stops them.
func NewAnswers(db *bun.DB, cfg AnswersConfig) *Answers {
	cfg = cfg.withDefaults()
	a := &Answers{db: db}
	a.acks = newBatcher(cfg.MaxBatch, cfg.Timeout, a.acknowledgeRights)
	a.deliveries = newBatcher(cfg.MaxBatch, cfg.Timeout, a.recordDelivered)
	return a
}

func (cfg AnswersConfig) withDefaults() AnswersConfig {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg
}

// Close stops taking calls and waits for the batches being written; calls
// made after it are recorded one statement each, as without Answers.
func (a *Answers) Close() {
	a.acks.close()
	a.deliveries.close()
}

// AcknowledgeRight is the package's AcknowledgeRight written with the other
// acknowledgements waiting at the same time: the same result, in one
// transaction for the lot. A session another transaction has locked (its
// stop being settled) is not waited for by the batch: its call is written
// alone, where it waits its turn.
func (a *Answers) AcknowledgeRight(ctx context.Context, sessionID int64, version int, at time.Time) (RightAcknowledgement, error) {
	ack, err := a.acks.do(ctx, ackCall{session: sessionID, version: version, at: at})
	if leftOut(err) {
		return AcknowledgeRight(ctx, a.db, sessionID, version, at)
	}
	return ack, err
}

// RecordDelivered is the package's RecordDelivered written with the other
// deliveries waiting at the same time.
func (a *Answers) RecordDelivered(ctx context.Context, webhook, eventID string, at time.Time) error {
	_, err := a.deliveries.do(ctx, deliveredCall{webhook: webhook, eventID: eventID, at: at})
	if leftOut(err) {
		return RecordDelivered(ctx, a.db, webhook, eventID, at)
	}
	if err != nil {
		return fmt.Errorf("record delivery of event %s to webhook %s: %w", eventID, webhook, err)
	}
	return nil
}

type ackCall struct {
	session int64
	version int
	at      time.Time
}

// acknowledgeRights writes a batch of acknowledgements in one transaction:
// one statement locks the sessions as the UPDATE alone would (FOR NO KEY
// UPDATE), skipping any another transaction holds (a settlement's): those
// are left to their calls alone (errBatchSkipped), so a batch never waits
// for a lock and cannot deadlock with anything; one moves each
// locked session's right_registered_version up to the highest version of
// the batch for it. A session twice in the batch is acknowledged once, at
// its highest version; the lower call's version was not the one that
// advanced it, as if it had arrived after.
func (a *Answers) acknowledgeRights(ctx context.Context, calls []ackCall) ([]RightAcknowledgement, []error, error) {
	best := map[int64]int{} // session → the call with its highest version
	for i, c := range calls {
		if j, ok := best[c.session]; !ok || c.version > calls[j].version {
			best[c.session] = i
		}
	}
	ids := make([]int64, 0, len(best))
	for id := range best {
		ids = append(ids, id)
	}
	// One order for every batch: two processes' batches lock alike.
	slices.Sort(ids)
	versions := make([]int, len(ids))
	ats := make([]time.Time, len(ids))
	for k, id := range ids {
		c := calls[best[id]]
		versions[k], ats[k] = c.version, Instant(c.at)
	}
	type acked struct {
		ID             int64      `bun:"id"`
		RightVersion   int        `bun:"right_version"`
		RightChangedAt *time.Time `bun:"right_changed_at"`
	}
	locked := map[int64]bool{}
	done := map[int64]acked{}
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		clear(locked)
		clear(done)
		var rows []struct {
			ID int64 `bun:"id"`
		}
		// Each ID is a lookup by primary key (LATERAL): a join would be
		// planned once, from whatever the table held then (prelock.go).
		if err := scanPrepared(ctx, tx, lockAcknowledgedSQL, []any{ids}, &rows); err != nil {
			return fmt.Errorf("lock %d sessions: %w", len(ids), err)
		}
		// Only the rows locked are written: another would wait for its lock.
		var lids []int64
		var lversions []int
		var lats []time.Time
		for _, r := range rows {
			locked[r.ID] = true
		}
		for k, id := range ids {
			if locked[id] {
				lids, lversions, lats = append(lids, id), append(lversions, versions[k]), append(lats, ats[k])
			}
		}
		if len(lids) == 0 {
			return nil
		}
		// The rows are ours now, and this statement's snapshot sees their
		// newest versions: found by ID, updated by address (finish.go).
		var up []acked
		if err := scanPrepared(ctx, tx, acknowledgeSQL,
			[]any{lids, lversions, lats}, &up); err != nil {
			return fmt.Errorf("acknowledge the rights of %d sessions: %w", len(lids), err)
		}
		for _, r := range up {
			done[r.ID] = r
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]RightAcknowledgement, len(calls))
	errs := make([]error, len(calls))
	for i, c := range calls {
		switch r, ok := done[c.session]; {
		case !locked[c.session]:
			errs[i] = errBatchSkipped
		case ok && best[c.session] == i:
			out[i].Advanced = true
			if r.RightVersion == c.version {
				out[i].ChangedAt = r.RightChangedAt
			}
		}
	}
	return out, errs, nil
}

type deliveredCall struct {
	webhook, eventID string
	at               time.Time
}

// recordDelivered writes a batch of deliveries made in one statement; a
// delivery it did not find (or found changed under it), or found twice, is
// left to its call alone (errBatchSkipped), which writes it as
// RecordDelivered always did.
func (a *Answers) recordDelivered(ctx context.Context, calls []deliveredCall) ([]struct{}, []error, error) {
	type key struct{ webhook, eventID string }
	first := map[key]int{}
	for i, c := range calls {
		if _, ok := first[key{c.webhook, c.eventID}]; !ok {
			first[key{c.webhook, c.eventID}] = i
		}
	}
	keys := make([]key, 0, len(first))
	for k := range first {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y key) int {
		return cmp.Or(cmp.Compare(x.webhook, y.webhook), cmp.Compare(x.eventID, y.eventID))
	})
	hooks := make([]string, len(keys))
	events := make([]string, len(keys))
	ats := make([]time.Time, len(keys))
	for k, x := range keys {
		hooks[k], events[k], ats[k] = x.webhook, x.eventID, Instant(calls[first[x]].at)
	}
	// Each delivery is locked as the UPDATE alone would lock it, skipping
	// one another transaction holds (a webhook being deleted drops its
	// deliveries in one statement): the batch never waits, so it cannot
	// deadlock. A row skipped, or changed since this statement's snapshot
	// (its lock then reads a version the UPDATE does not see), is not
	// returned, and its call writes it alone. Rows come back by their place
	// in the arrays, not by their text: the caller's spelling of an event
	// ID need not be Postgres's.
	var rows []struct {
		N int `bun:"n"`
	}
	err := scanPrepared(ctx, a.db, deliveredSQL,
		[]any{hooks, events, ats, DeliveryDelivered}, &rows)
	if err != nil {
		return nil, nil, fmt.Errorf("record %d deliveries: %w", len(keys), err)
	}
	written := make(map[key]bool, len(rows))
	for _, r := range rows {
		if r.N >= 1 && r.N <= len(keys) {
			written[keys[r.N-1]] = true
		}
	}
	errs := make([]error, len(calls))
	for i, c := range calls {
		k := key{c.webhook, c.eventID}
		// A delivery twice in the batch (its task run twice at once) is
		// written twice, as two calls alone would: the second counts its
		// attempt on its own.
		if !written[k] || first[k] != i {
			errs[i] = errBatchSkipped
		}
	}
	return make([]struct{}, len(calls)), errs, nil
}

// The statements of Answers' batches, each a lookup by key per element of
// its arrays (LATERAL, kept apart from the join planner: prelock.go).
const (
	// lockAcknowledgedSQL locks the sessions $1 that no other transaction
	// holds, as an UPDATE of their right's columns would.
	lockAcknowledgedSQL = `SELECT s.id FROM unnest($1::int8[]) AS want(id),
			LATERAL (SELECT id FROM sessions WHERE id = want.id FOR NO KEY UPDATE SKIP LOCKED) AS s`
	// acknowledgeSQL moves each session $1 (locked) to version $2 acknowledged at $3.
	acknowledgeSQL = `UPDATE sessions SET right_registered_version = x.version, right_registered_at = x.at
			FROM (SELECT x.*, s.tid
			      FROM unnest($1::int8[], $2::int[], $3::timestamptz[]) AS x(id, version, at),
			           LATERAL (SELECT ctid AS tid FROM sessions WHERE id = x.id OFFSET 0) AS s) AS x
			WHERE sessions.ctid = x.tid AND sessions.right_registered_version < x.version
			RETURNING sessions.id, sessions.right_version, sessions.right_changed_at`
	// deliveredSQL records each delivery ($1 webhook, $2 event) made at $3 as
	// $4 (delivered), and returns the place of each it wrote.
	deliveredSQL = `UPDATE webhook_deliveries SET status = $4, delivered_at = x.at, attempts = attempts + 1
		FROM (SELECT x.*, d.tid
		      FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) WITH ORDINALITY AS x(webhook, event_id, at, n),
		           LATERAL (SELECT ctid AS tid FROM webhook_deliveries WHERE webhook = x.webhook AND event_id = x.event_id
		                    FOR NO KEY UPDATE SKIP LOCKED) AS d) AS x
		WHERE webhook_deliveries.ctid = x.tid
		RETURNING x.n`
)

// errBatchSkipped is a call its batch did not write (its row was busy or
// not where the batch looked, or the batch failed as a whole): it is
// written alone.
var errBatchSkipped = errors.New("repo: left out of its batch")

// errBatcherClosed is a call made after Close: it is written alone.
var errBatcherClosed = errors.New("repo: batch writer closed")

// leftOut says whether a batched call's error means its batch did not take
// it (errBatchSkipped, errBatcherClosed): the caller then runs it alone.
func leftOut(err error) bool {
	return errors.Is(err, errBatchSkipped) || errors.Is(err, errBatcherClosed)
}

// batcher runs calls that arrive at the same time as one batch: one
// goroutine takes the first call waiting and every other one waiting then
// (up to max), writes them with run, and answers each.
type batcher[C, R any] struct {
	max     int
	timeout time.Duration
	run     func(ctx context.Context, calls []C) ([]R, []error, error)
	in      chan *batchCall[C, R]
	closed  chan struct{}
	done    chan struct{}
	once    sync.Once
}

type batchCall[C, R any] struct {
	call C
	res  R
	err  error
	// ready is closed once res and err are set.
	ready chan struct{}
}

func newBatcher[C, R any](max int, timeout time.Duration, run func(context.Context, []C) ([]R, []error, error)) *batcher[C, R] {
	b := &batcher[C, R]{max: max, timeout: timeout, run: run, in: make(chan *batchCall[C, R], max),
		closed: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

// do hands c to the next batch and waits for its answer, or for ctx.
func (b *batcher[C, R]) do(ctx context.Context, c C) (R, error) {
	var zero R
	bc := &batchCall[C, R]{call: c, ready: make(chan struct{})}
	select {
	case <-b.closed:
		return zero, errBatcherClosed
	default:
	}
	select {
	case b.in <- bc:
	case <-b.closed:
		return zero, errBatcherClosed
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case <-bc.ready:
		return bc.res, bc.err
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.done:
		// The loop has ended: it answered every call it took before it
		// did, so one it did not answer (sent as it drained the queue and
		// left) is written by its caller alone.
		select {
		case <-bc.ready:
			return bc.res, bc.err
		default:
			return zero, errBatcherClosed
		}
	}
}

func (b *batcher[C, R]) close() {
	b.once.Do(func() { close(b.closed) })
	<-b.done
}

func (b *batcher[C, R]) loop() {
	defer close(b.done)
	batch := make([]*batchCall[C, R], 0, b.max)
	for {
		batch = batch[:0]
		select {
		case c := <-b.in:
			batch = append(batch, c)
		case <-b.closed:
			// Calls queued before Close are written alone by their callers.
			for {
				select {
				case c := <-b.in:
					c.err = errBatcherClosed
					close(c.ready)
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < b.max {
			select {
			case c := <-b.in:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.write(batch)
	}
}

// write runs one batch and answers its calls; when the batch fails as a
// whole (an error or a panic), each call is written alone.
func (b *batcher[C, R]) write(batch []*batchCall[C, R]) {
	calls := make([]C, len(batch))
	for i, c := range batch {
		calls[i] = c.call
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	res, errs, err := func() (res []R, errs []error, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in a batch of %d: %v", len(calls), p)
			}
		}()
		return b.run(ctx, calls)
	}()
	for i, c := range batch {
		if err != nil {
			// Whatever failed the batch (one call the statement could not
			// take, a lost connection, the timeout) is not every call's
			// fault: each is written alone and meets its own outcome.
			c.err = errBatchSkipped
		} else {
			c.res, c.err = res[i], errs[i]
		}
		close(c.ready)
	}
}
