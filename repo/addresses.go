package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// The address register: every address, and the permit zone it lies in.

// Address is a row of addresses.
type Address struct {
	bun.BaseModel `bun:"table:addresses"`

	ID          string  `bun:"id,pk"`
	Zone        *string `bun:"zone"`
	Postcode    *string `bun:"postcode"`
	HouseNumber *string `bun:"house_number"`
}

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

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
