package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// Favourite is a row of favourites: a named plate of a permit (DOMAIN.md
// "Favourites"). Favourites are written directly, not queued: they change no
// balance and no right, so a request record and an outcome would guard nothing.
type Favourite struct {
	bun.BaseModel `bun:"table:favourites"`

	PermitID  int64     `bun:"permit_id,pk"`
	Plate     string    `bun:"plate,pk"`
	Name      string    `bun:"name"`
	CreatedAt time.Time `bun:"created_at"`
}

// View renders the favourite for answers.
func (f *Favourite) View() jobs.Favourite {
	return jobs.Favourite{Plate: f.Plate, Name: f.Name, CreatedAt: f.CreatedAt.UTC()}
}

// PermitFavourites lists a permit's favourites, oldest first (the order in
// which a resident added them, which an app's list keeps).
func PermitFavourites(ctx context.Context, db bun.IDB, permitID int64) ([]Favourite, error) {
	rows := []Favourite{}
	if err := db.NewSelect().Model(&rows).Where("permit_id = ?", permitID).
		OrderExpr("created_at, plate").Scan(ctx); err != nil {
		return nil, fmt.Errorf("favourites of permit %d: %w", permitID, err)
	}
	return rows, nil
}

// FavouritePlates lists the plates of a permit's favourites: what
// domain.PlanFavourite counts. Read it under the permit's lock (LockPermit),
// so that two PUTs at once cannot both add the 25th.
func FavouritePlates(ctx context.Context, tx Tx, permitID int64) ([]string, error) {
	var plates []string
	if err := tx.NewSelect().Model((*Favourite)(nil)).Column("plate").
		Where("permit_id = ?", permitID).Scan(ctx, &plates); err != nil {
		return nil, fmt.Errorf("favourites of permit %d: %w", permitID, err)
	}
	return plates, nil
}

// SaveFavourite creates the favourite f of the locked permit, or renames it
// when the permit has that plate already (keeping when it was created).
func SaveFavourite(ctx context.Context, tx Tx, permitID int64, f domain.Favourite, now time.Time) (*Favourite, error) {
	row := &Favourite{PermitID: permitID, Plate: f.Plate, Name: f.Name, CreatedAt: now}
	if _, err := tx.NewInsert().Model(row).
		On("CONFLICT (permit_id, plate) DO UPDATE").Set("name = EXCLUDED.name").
		Returning(columns[Favourite](tx, "")).Exec(ctx); err != nil {
		return nil, fmt.Errorf("save favourite of permit %d: %w", permitID, err)
	}
	return row, nil
}

// DeleteFavourite deletes a permit's favourite with the (normalised) plate,
// and says whether there was one.
func DeleteFavourite(ctx context.Context, db bun.IDB, permitID int64, plate string) (bool, error) {
	res, err := db.NewDelete().Model((*Favourite)(nil)).
		Where("permit_id = ? AND plate = ?", permitID, plate).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("delete favourite of permit %d: %w", permitID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// deleteFavourites deletes every favourite of a permit: a permit that ended has
// none (DOMAIN.md "Favourites").
func deleteFavourites(ctx context.Context, tx bun.IDB, permitID int64) error {
	if _, err := tx.NewDelete().Model((*Favourite)(nil)).Where("permit_id = ?", permitID).Exec(ctx); err != nil {
		return fmt.Errorf("delete favourites of permit %d: %w", permitID, err)
	}
	return nil
}
