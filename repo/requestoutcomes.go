package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// RequestOutcome is what became of one request, as the lab (tools/) holds it
// against the answer its client was given.
type RequestOutcome struct {
	RequestID string `bun:"request_id"`
	Type      string `bun:"type"`
	Status    string `bun:"status"` // RequestPending, RequestApplied or RequestRejected
	Code      string `bun:"code"`   // a rejection's rule code, else ""
}

// RequestOutcomes reads the outcome of every request of the given types.
func RequestOutcomes(ctx context.Context, db bun.IDB, types ...string) ([]RequestOutcome, error) {
	var out []RequestOutcome
	err := db.NewSelect().Model((*Request)(nil)).
		Column("request_id", "type", "status").
		ColumnExpr("coalesce(error->>'code', '') AS code").
		Where("type IN (?)", bun.In(types)).
		Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("read request outcomes: %w", err)
	}
	return out, nil
}
