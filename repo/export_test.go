package repo

import (
	"context"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// RightsQuery is the statement RightsLookup sends, for the test that EXPLAINs it.
func RightsQuery(plate, code string, at time.Time) (string, []any) {
	return rightsQuery(plate, code, at)
}

// ErasePlatesQuery is the statement one batch of ErasePlates sends, for the
// test that EXPLAINs it.
func ErasePlatesQuery(cutoff time.Time, batch int) (string, []any) {
	where, args := dueWhere(cutoff)
	return erasePlatesQuery(batch, where, args...)
}

// Waiting is how many request IDs have waiters (tests check cleanup).
func (l *Listener) Waiting() int { return l.waiting() }

// FinishUnits writes the outcomes of requests ids (fs) in one statement, as
// a shared transaction's held outcomes are written: each one's error, and
// the statement's.
func FinishUnits(ctx context.Context, tx bun.IDB, ids []string, fs []Finish) ([]error, error) {
	units := make([]finishUnit, len(ids))
	for i, id := range ids {
		u, err := newFinishUnit(id, fs[i])
		if err != nil {
			return nil, err
		}
		units[i] = u
	}
	return finishUnits(ctx, tx, units)
}

// PrelockQueries are the statements a shared transaction locks its units'
// rows with (prelock.go), for the test that EXPLAINs them.
func PrelockQueries(db bun.IDB) (starts, stops string) { return prelockSQL(db, FailIfBusy) }

// FinishQuery is the statement of held outcomes with every part (finish.go),
// and its parameters' types, for the test that EXPLAINs it.
func FinishQuery() (string, []string) {
	return finishSQL(finishShape{true, true, true, true, true, true}), finishParams
}

// AcknowledgeRightsBatch writes one batch of acknowledgements (session,
// version, at) as Answers does: each call's result, and whether the batch
// left it to be written alone (its session was locked).
func (a *Answers) AcknowledgeRightsBatch(ctx context.Context, sessions []int64, versions []int, at time.Time) ([]RightAcknowledgement, []bool, error) {
	calls := make([]ackCall, len(sessions))
	for i := range sessions {
		calls[i] = ackCall{session: sessions[i], version: versions[i], at: at}
	}
	res, errs, err := a.acknowledgeRights(ctx, calls)
	return res, skippedOf(errs), err
}

// RecordDeliveredBatch writes one batch of deliveries as Answers does, and
// says which calls the batch left to be written alone.
func (a *Answers) RecordDeliveredBatch(ctx context.Context, webhooks, events []string, at time.Time) ([]bool, error) {
	calls := make([]deliveredCall, len(webhooks))
	for i := range webhooks {
		calls[i] = deliveredCall{webhook: webhooks[i], eventID: events[i], at: at}
	}
	_, errs, err := a.recordDelivered(ctx, calls)
	return skippedOf(errs), err
}

// skippedOf says which calls of a batch it left to be written alone.
func skippedOf(errs []error) []bool {
	skipped := make([]bool, len(errs))
	for i, e := range errs {
		skipped[i] = e == errBatchSkipped
	}
	return skipped
}

// AnswersQueries are the statements of Answers' batches, for the test that
// EXPLAINs them: the lock of acknowledged sessions, the acknowledgement, the
// deliveries.
func AnswersQueries() (lock, acknowledge, delivered string) {
	return lockAcknowledgedSQL, acknowledgeSQL, deliveredSQL
}

// BookQuery is Book's statement for a booking that settles a session, and
// its parameters' types, for the test that EXPLAINs it.
func BookQuery(db bun.IDB) (string, []string) {
	start, rest := bookingSQL(1, columns[Permit](db, "permits"), bookingShape{settle: true, book: true})
	types := make([]string, len(bookingParamNames))
	for i, n := range bookingParamNames {
		_, types[i], _ = strings.Cut(n, "::")
	}
	return `WITH ` + paramsCTE(bookingParamTypes(1)) + `, ` + start + `, ` + rest + ` SELECT * FROM booked_permit`, types
}

// ReadSessionsBatch reads one batch of sessions as OutboundReads does: each
// call's session, and whether the batch left it to be read alone.
func (r *OutboundReads) ReadSessionsBatch(ctx context.Context, ids []int64) ([]*Session, []bool, error) {
	out, errs, err := r.readSessions(ctx, ids)
	return out, skippedOf(errs), err
}

// ReadDeliveriesBatch reads one batch of deliveries as OutboundReads does.
func (r *OutboundReads) ReadDeliveriesBatch(ctx context.Context, webhooks, events []string) ([]*DeliveryWork, []bool, error) {
	keys := make([]deliveryKey, len(webhooks))
	for i := range webhooks {
		keys[i] = deliveryKey{webhooks[i], events[i]}
	}
	out, errs, err := r.readDeliveries(ctx, keys)
	return out, skippedOf(errs), err
}

// OutboundReadsQueries are the statements of OutboundReads' batches, for
// the test that EXPLAINs them.
func OutboundReadsQueries(db bun.IDB) (sessions, deliveries string) {
	return sessionsByIDSQL(db), deliveriesWorkSQL(db)
}
