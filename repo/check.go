package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// LedgerMismatch is a permit whose balance is not the sum of its ledger.
type LedgerMismatch struct {
	PermitID  int64 `bun:"permit_id"`
	Balance   int   `bun:"balance_minutes"`
	LedgerSum int   `bun:"ledger_sum"`
}

// LedgerMismatches lists every permit whose balance differs from the sum of its
// ledger entries (or is negative). An empty list is the invariant holding.
func LedgerMismatches(ctx context.Context, db bun.IDB) ([]LedgerMismatch, error) {
	var out []LedgerMismatch
	err := db.NewRaw(`
		SELECT p.id AS permit_id, p.balance_minutes, coalesce(l.total, 0) AS ledger_sum
		FROM permits p
		LEFT JOIN (SELECT permit_id, sum(minutes) AS total FROM ledger GROUP BY permit_id) l ON l.permit_id = p.id
		WHERE p.balance_minutes <> coalesce(l.total, 0) OR p.balance_minutes < 0
		ORDER BY p.id`).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("ledger check: %w", err)
	}
	return out, nil
}

// ReservationMismatches lists permits whose reserved_minutes differ from the sum
// of their open sessions' reservations.
func ReservationMismatches(ctx context.Context, db bun.IDB) ([]int64, error) {
	var out []int64
	err := db.NewRaw(`
		SELECT p.id FROM permits p
		LEFT JOIN (SELECT permit_id, sum(reserved_minutes) AS total FROM sessions WHERE state = 'open' GROUP BY permit_id) s
		       ON s.permit_id = p.id
		WHERE p.reserved_minutes <> coalesce(s.total, 0)
		ORDER BY p.id`).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("reservation check: %w", err)
	}
	return out, nil
}
