package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// The population register (BRP) extract: who is registered at which address.

// Registration is a row of the BRP extract.
type Registration struct {
	bun.BaseModel `bun:"table:registrations"`

	ResidentID string `bun:"resident_id,pk"`
	AddressID  string `bun:"address_id,pk"`
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

// RegistrationOutcome is what loading one row of a BRP extract did.
type RegistrationOutcome int

// Outcomes of loading a registration.
const (
	RegistrationNew            RegistrationOutcome = iota // recorded now
	RegistrationExisting                                  // recorded before: loading it again changes nothing
	RegistrationUnknownAddress                            // the address is not in the register: not recorded
)

// LoadRegistrations records a batch of registrations in one statement and says,
// row by row, what became of each: new, already recorded, or refused because its
// address is not in the register. Rows must be distinct. Loading the same rows
// again records nothing new, so an interrupted import can simply be run again.
func LoadRegistrations(ctx context.Context, db bun.IDB, rows []Registration) ([]RegistrationOutcome, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	residents := make([]string, len(rows))
	addresses := make([]string, len(rows))
	for i, r := range rows {
		residents[i], addresses[i] = r.ResidentID, r.AddressID
	}
	var got []struct {
		N        int  `bun:"n"`
		Known    bool `bun:"known"`
		Inserted bool `bun:"inserted"`
	}
	// The insert joins the address register, so a row naming an unknown address is
	// left out instead of failing the whole batch on the foreign key.
	err := db.NewRaw(`
		WITH input AS (
			SELECT r.resident_id, r.address_id, r.n
			FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS r(resident_id, address_id, n)
		), ins AS (
			INSERT INTO registrations (resident_id, address_id)
			SELECT i.resident_id, i.address_id FROM input i JOIN addresses a ON a.id = i.address_id
			ON CONFLICT DO NOTHING
			RETURNING resident_id, address_id
		)
		SELECT i.n, a.id IS NOT NULL AS known, ins.resident_id IS NOT NULL AS inserted
		FROM input i
		LEFT JOIN addresses a ON a.id = i.address_id
		LEFT JOIN ins ON ins.resident_id = i.resident_id AND ins.address_id = i.address_id
		ORDER BY i.n`, pgdialect.Array(residents), pgdialect.Array(addresses)).Scan(ctx, &got)
	if err != nil {
		return nil, fmt.Errorf("load %d registrations: %w", len(rows), err)
	}
	if len(got) != len(rows) {
		return nil, fmt.Errorf("load registrations: %d outcomes for %d rows", len(got), len(rows))
	}
	out := make([]RegistrationOutcome, len(rows))
	for i, g := range got {
		switch {
		case !g.Known:
			out[i] = RegistrationUnknownAddress
		case g.Inserted:
			out[i] = RegistrationNew
		default:
			out[i] = RegistrationExisting
		}
	}
	return out, nil
}
