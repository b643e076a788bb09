package repo

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// OutboundReads reads what the outbound tasks start from, a batch per
// statement (issue 16): right:register's session (GetSession) and
// event:deliver's delivery, event and webhook (GetDeliveryWork). With a
// registrar and a webhook these were four single-row statements a
// start+stop pair, half of all the statements a pair costs Postgres, and
// each cost parkd a round trip and a scan of its own.
//
// A batch is one statement that begins after every call in it was made, so
// each call reads everything committed before it, as its statement alone
// would. Calls that arrive while a batch is being read wait for the next
// one: a lone call on an idle system is read at once, and batches grow only
// with the load (as Answers' do). A call the batch did not find, or a
// batch that failed as a whole, is read alone, so that every error is the
// one the single statement gives.
type OutboundReads struct {
	db         *bun.DB
	sessions   *batcher[int64, *Session]
	deliveries *batcher[deliveryKey, *DeliveryWork]
}

// deliveryKey names a delivery: a webhook and an event ID as the task gave it.
type deliveryKey struct{ webhook, eventID string }

// NewOutboundReads starts the batch readers over db (cfg as for Answers);
// Close stops them.
func NewOutboundReads(db *bun.DB, cfg AnswersConfig) *OutboundReads {
	cfg = cfg.withDefaults()
	r := &OutboundReads{db: db}
	r.sessions = newBatcher(cfg.MaxBatch, cfg.Timeout, r.readSessions)
	r.deliveries = newBatcher(cfg.MaxBatch, cfg.Timeout, r.readDeliveries)
	return r
}

// Close stops taking calls and waits for the batches being read; calls made
// after it are read one statement each.
func (r *OutboundReads) Close() {
	r.sessions.close()
	r.deliveries.close()
}

// GetSession is the package's GetSession read with the others waiting at
// the same time: the session as committed when the call was made;
// ErrNotFound when there is none.
func (r *OutboundReads) GetSession(ctx context.Context, id int64) (*Session, error) {
	s, err := r.sessions.do(ctx, id)
	switch {
	case leftOut(err):
		return GetSession(ctx, r.db, id)
	case err != nil:
		return nil, fmt.Errorf("session %d: %w", id, err) // as GetSession names it
	}
	return s, nil
}

// GetDeliveryWork is the package's GetDeliveryWork read with the others
// waiting at the same time; ErrNotFound when no such delivery is owed.
func (r *OutboundReads) GetDeliveryWork(ctx context.Context, webhook, eventID string) (*DeliveryWork, error) {
	if uuid.Validate(eventID) != nil {
		// Postgres would refuse it, and with it the whole batch, at every
		// retry of its task: read alone, it meets that refusal alone.
		return GetDeliveryWork(ctx, r.db, webhook, eventID)
	}
	w, err := r.deliveries.do(ctx, deliveryKey{webhook, eventID})
	switch {
	case leftOut(err):
		return GetDeliveryWork(ctx, r.db, webhook, eventID)
	case err != nil:
		return nil, fmt.Errorf("delivery of event %s to webhook %s: %w", eventID, webhook, err) // as GetDeliveryWork names it
	}
	return w, nil
}

// readSessions reads a batch of sessions by ID; an ID twice is read twice
// (its own copy for each call), one not found is left to its call alone.
func (r *OutboundReads) readSessions(ctx context.Context, ids []int64) ([]*Session, []error, error) {
	var rows []struct {
		N int `bun:"batch_n"`
		Session
	}
	if err := scanPrepared(ctx, r.db, sessionsByIDSQL(r.db), []any{ids}, &rows); err != nil {
		return nil, nil, fmt.Errorf("read %d sessions: %w", len(ids), err)
	}
	out := make([]*Session, len(ids))
	for i := range rows {
		if n := rows[i].N; n >= 1 && n <= len(ids) {
			out[n-1] = &rows[i].Session
		}
	}
	return out, skippedWhereNil(out), nil
}

// readDeliveries reads a batch of deliveries with their events and
// webhooks; a delivery twice is read twice, one not found is left to its
// call alone (which names it in its ErrNotFound). An event ID Postgres does
// not take as a UUID (GetDeliveryWork reads those Go refuses alone) fails
// the batch, and each call is then read alone.
func (r *OutboundReads) readDeliveries(ctx context.Context, keys []deliveryKey) ([]*DeliveryWork, []error, error) {
	hooks := make([]string, len(keys))
	events := make([]string, len(keys))
	for i, k := range keys {
		hooks[i], events[i] = k.webhook, k.eventID
	}
	var rows []struct {
		N int `bun:"batch_n"`
		deliveryWorkRow
	}
	if err := scanPrepared(ctx, r.db, deliveriesWorkSQL(r.db), []any{hooks, events}, &rows); err != nil {
		return nil, nil, fmt.Errorf("read %d deliveries: %w", len(keys), err)
	}
	out := make([]*DeliveryWork, len(keys))
	for i := range rows {
		if n := rows[i].N; n >= 1 && n <= len(keys) {
			out[n-1] = rows[i].work()
		}
	}
	return out, skippedWhereNil(out), nil
}

// The batches' statements look each element of their arrays up by key
// (LATERAL, kept apart from the join planner by OFFSET 0): a join would be
// planned once, from whatever the tables held when the statement was first
// prepared, and a plan made on nearly empty tables reads them whole
// (prelock.go). Each row carries its element's place in the arrays.

// sessionsByIDSQL selects the sessions whose IDs are $1, each as batch_n and
// the session's columns.
func sessionsByIDSQL(db bun.IDB) string {
	return `SELECT x.n AS batch_n, s.* FROM unnest($1::int8[]) WITH ORDINALITY AS x(id, n),
		LATERAL (SELECT ` + columns[Session](db, "") + ` FROM sessions WHERE id = x.id OFFSET 0) AS s`
}

// deliveriesWorkSQL selects the deliveries of events $2 to webhooks $1, each
// as batch_n and a deliveryWorkRow.
func deliveriesWorkSQL(db bun.IDB) string {
	return `SELECT x.n AS batch_n, w.* FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS x(webhook, event_id, n),
		LATERAL (` + deliveryWorkSQL(db, "x.webhook", "x.event_id") + ` OFFSET 0) AS w`
}

// skippedWhereNil is errBatchSkipped for each call a batch found nothing for.
func skippedWhereNil[T any](out []*T) []error {
	errs := make([]error, len(out))
	for i, v := range out {
		if v == nil {
			errs[i] = errBatchSkipped
		}
	}
	return errs
}
