package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// PutAddress creates or updates an address of the register.
func PutAddress(ctx context.Context, db bun.IDB, a *Address) error {
	_, err := db.NewInsert().Model(a).
		On("CONFLICT (id) DO UPDATE").
		Set("zone = EXCLUDED.zone, postcode = EXCLUDED.postcode, house_number = EXCLUDED.house_number").
		Exec(ctx)
	if err != nil {
		if pgCode(err) == "23503" { // foreign_key_violation: the zone
			return fmt.Errorf("address %s: zone %v: %w", a.ID, deref(a.Zone), ErrNotFound)
		}
		return fmt.Errorf("put address %s: %w", a.ID, err)
	}
	return nil
}

// PutRegistration records that a resident is registered at an address; recording
// it twice is one registration.
func PutRegistration(ctx context.Context, db bun.IDB, r *Registration) (created bool, err error) {
	res, err := db.NewInsert().Model(r).On("CONFLICT DO NOTHING").Exec(ctx)
	if err != nil {
		if pgCode(err) == "23503" {
			return false, fmt.Errorf("registration of %s: address %s: %w", r.ResidentID, r.AddressID, ErrNotFound)
		}
		return false, fmt.Errorf("put registration: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
