package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// Numbering events and reading them back (README "Events and webhooks: how an
// upstream app subscribes"). Writers never number their events: a number drawn
// inside a transaction (a sequence, the pk) follows the order transactions
// began writing, not the order they committed, so a consumer that read number
// 7 could later see a 6 commit and skip it. SequenceEvents numbers only
// committed events, one pass at a time, which is why docs/ARCHITECTURE.md
// ("Events") can promise that a later-committing event never gets a smaller
// number than one already read.

// sequencerLock names the transaction-scoped advisory lock every sequencing
// pass takes: whichever process runs it, passes run one after the other.
const sequencerLock = "parkd:sequencer"

// SequenceEvents is one sequencing pass, in one transaction of its own: under
// the sequencer's advisory lock it numbers up to limit committed unnumbered
// events in pk order (sequence = the highest sequence so far + 1, 2, …), and
// in the same statement owes each to every active webhook whose types include
// its type (types NULL: all) as a pending webhook_deliveries row; then it adds
// the event:deliver outbox row of each (ID, queue and payload as
// jobs.NewEventDeliver makes them). It returns how many events it numbered
// and the outbox rows, which the caller hands to Redis after the commit (the
// relay does it if the caller dies first). A pass sees every event committed before it took the lock, and
// none committed after: those wait for the next pass.
func SequenceEvents(ctx context.Context, db bun.IDB, limit int) (int, []*OutboxTask, error) {
	var numbered int
	var tasks []*OutboxTask
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		numbered, tasks = 0, nil
		if _, err := tx.NewRaw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", sequencerLock).Exec(ctx); err != nil {
			return fmt.Errorf("sequencer lock: %w", err)
		}
		// The statement's snapshot is taken after the lock is held: it sees
		// what every earlier pass numbered and every event committed so far.
		// max(sequence) is one step down the sequence's unique index; the
		// unnumbered rows come from the events_unsequenced partial index.
		// The last SELECT returns one row per event (webhook NULL when no
		// webhook is owed it), so that the count of events numbered comes
		// back with the deliveries.
		var rows []struct {
			Webhook  *string `bun:"webhook"`
			EventID  string  `bun:"event_id"`
			Sequence int64   `bun:"sequence"`
		}
		err := tx.NewRaw(`
			WITH todo AS (
			    SELECT pk, row_number() OVER (ORDER BY pk) AS n
			    FROM (SELECT pk FROM events WHERE sequence IS NULL ORDER BY pk LIMIT ?) t
			), base AS (
			    SELECT coalesce(max(sequence), 0) AS top FROM events
			), numbered AS (
			    UPDATE events e SET sequence = base.top + todo.n
			    FROM todo, base
			    WHERE e.pk = todo.pk
			    RETURNING e.id, e.type, e.sequence
			), owed AS (
			    INSERT INTO webhook_deliveries (webhook, event_id)
			    SELECT w.name, n.id
			    FROM numbered n
			    JOIN webhooks w ON w.active AND (w.types IS NULL OR n.type = ANY (w.types))
			    RETURNING webhook, event_id
			)
			SELECT o.webhook, n.id AS event_id, n.sequence
			FROM numbered n LEFT JOIN owed o ON o.event_id = n.id
			ORDER BY n.sequence, o.webhook`, limit).Scan(ctx, &rows)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("number events: %w", err)
		}
		// Due at once: asynq enqueues a task due in the past as pending.
		now := time.Now()
		var last int64
		for _, r := range rows {
			if r.Sequence != last {
				numbered++
				last = r.Sequence
			}
			if r.Webhook == nil {
				continue
			}
			tasks = append(tasks, &OutboxTask{TaskType: jobs.TypeEventDeliver, TaskID: jobs.DeliverTaskID(*r.Webhook, r.EventID),
				Queue: jobs.QueueWebhooks, Payload: jobs.EventDeliverPayload(r.EventID, *r.Webhook), ProcessAt: now})
		}
		return AddOutbox(ctx, tx, tasks...)
	})
	if err != nil {
		return 0, nil, err
	}
	return numbered, tasks, nil
}

// UnsequencedEvents counts the events committed and not yet numbered (the
// events_unsequenced index): more than a moment's worth means no sequencer runs.
func UnsequencedEvents(ctx context.Context, db bun.IDB) (int64, error) {
	n, err := db.NewSelect().Model((*Event)(nil)).Where("sequence IS NULL").Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count unnumbered events: %w", err)
	}
	return int64(n), nil
}

// EventsAfter is a page of the feed (GET /v1/events): numbered events with a
// sequence greater than after, oldest first, at most limit, of the given
// types (none: every type).
func EventsAfter(ctx context.Context, db bun.IDB, after int64, types []string, limit int) ([]Event, error) {
	var out []Event
	q := db.NewSelect().Model(&out).Where("sequence > ?", after).OrderExpr("sequence").Limit(int64(limit))
	if len(types) > 0 {
		q = q.Where("type IN (?)", bun.List(types))
	}
	if err := q.Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("events after %d: %w", after, err)
	}
	return out, nil
}

// View is the event as consumers read it (jobs.Event): the feed's items and
// every webhook's body. Only a numbered event has one.
func (e *Event) View() jobs.Event {
	v := jobs.Event{ID: e.ID, Type: e.Type, OccurredAt: e.OccurredAt.UTC(), Data: e.Data}
	if e.Sequence != nil {
		v.Sequence = *e.Sequence
	}
	if e.PermitID != nil {
		id := FormatID(*e.PermitID)
		v.PermitID = &id
	}
	if e.SessionID != nil {
		id := FormatID(*e.SessionID)
		v.SessionID = &id
	}
	return v
}
