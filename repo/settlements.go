package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/parkd/parkd/domain"
)

// What a load left of the sessions, as the lab (tools/) reads it once the
// load has run: how many are still open, and when each was settled against
// its planned end. An empty ids means every session.

// CountOpenSessions counts the open sessions, and those of them whose planned
// end is at or before at (overdue: an auto-stop should have settled them).
func CountOpenSessions(ctx context.Context, db bun.IDB, at time.Time, ids ...int64) (open, overdue int, err error) {
	q := db.NewSelect().Model((*Session)(nil)).
		ColumnExpr("count(*)").
		ColumnExpr("count(*) FILTER (WHERE planned_end_at <= ?)", at).
		Where("state = ?", domain.StateOpen)
	if len(ids) > 0 {
		q = q.Where("id = ANY(?)", pgdialect.Array(ids))
	}
	if err := q.Scan(ctx, &open, &overdue); err != nil {
		return 0, 0, fmt.Errorf("count open sessions: %w", err)
	}
	return open, overdue, nil
}

// SessionSettlements reads, by ID, each session's request, state, planned end
// and the instant it was settled (nil while open).
func SessionSettlements(ctx context.Context, db bun.IDB, ids ...int64) ([]Session, error) {
	var rows []Session
	q := db.NewSelect().Model(&rows).Column("id", "request_id", "state", "planned_end_at", "settled_at").OrderExpr("id")
	if len(ids) > 0 {
		q = q.Where("id = ANY(?)", pgdialect.Array(ids))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("read session settlements: %w", err)
	}
	return rows, nil
}
