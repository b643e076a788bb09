package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// OutboxTask is a row of the outbox: a task to enqueue once its transaction commits.
type OutboxTask struct {
	bun.BaseModel `bun:"table:outbox"`

	ID        int64           `bun:"id,pk,autoincrement"`
	TaskType  string          `bun:"task_type"`
	TaskID    string          `bun:"task_id"`
	Queue     string          `bun:"queue"`
	Payload   json.RawMessage `bun:"payload,type:jsonb"`
	ProcessAt time.Time       `bun:"process_at"`
	CreatedAt time.Time       `bun:"created_at,default:current_timestamp"`
}

// AddOutbox records tasks to enqueue after the caller's transaction commits.
func AddOutbox(ctx context.Context, tx bun.IDB, tasks ...*OutboxTask) error {
	if len(tasks) == 0 {
		return nil
	}
	if _, err := tx.NewInsert().Model(&tasks).ExcludeColumn("created_at").Returning("id").Exec(ctx); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// DeleteOutbox forgets tasks that have been handed to Redis.
func DeleteOutbox(ctx context.Context, db bun.IDB, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := db.NewDelete().Model((*OutboxTask)(nil)).Where("id IN (?)", bun.List(ids)).Exec(ctx); err != nil {
		return fmt.Errorf("outbox delete: %w", err)
	}
	return nil
}

// ClaimOutbox locks up to limit outbox rows older than minAge (rows younger than
// that are still being handed over by the transaction that wrote them), skipping
// rows another relay holds. The caller enqueues them and deletes them in the same
// transaction.
func ClaimOutbox(ctx context.Context, tx bun.IDB, minAge time.Duration, limit int) ([]OutboxTask, error) {
	var rows []OutboxTask
	err := tx.NewSelect().Model(&rows).
		Where("created_at <= now() - ?::interval", fmt.Sprintf("%d milliseconds", minAge.Milliseconds())).
		OrderExpr("id").Limit(int64(limit)).For("UPDATE SKIP LOCKED").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox claim: %w", err)
	}
	return rows, nil
}

// OutboxBacklog counts the rows waiting in the outbox.
func OutboxBacklog(ctx context.Context, db bun.IDB) (int64, error) {
	return db.NewSelect().Model((*OutboxTask)(nil)).Count(ctx)
}
