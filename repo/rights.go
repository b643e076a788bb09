package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// The enforcement question: may this plate park in this zone at this instant.

// MaxSessionSpan is the longest any session can last (CompileZone allows at most
// 1440 minutes). It bounds the rights lookup to one day of a plate's history.
const MaxSessionSpan = 24 * time.Hour

// coveringSQL finds the newest session of a plate in a zone that covers an
// instant at: not cancelled, started at or before at, and ending (its settled
// end, or else its planned end) after it. It is one range scan of the
// sessions_rights index (plate, zone, start_at DESC) over at most a day of the
// plate's sessions. Arguments: plate, zone, at, at - MaxSessionSpan, at.
// It reads the session's ID and its plate's country.
const coveringSQL = `
	SELECT id, country FROM sessions
	WHERE plate = ? AND zone = ? AND state <> 'cancelled'
	  AND start_at <= ? AND start_at > ?
	  AND coalesce(end_at, planned_end_at) > ?
	ORDER BY start_at DESC
	LIMIT 1`

func rightsQuery(plate, code string, at time.Time) (string, []any) {
	return `SELECT z.updated_at, s.id AS session_id, s.country FROM zones z LEFT JOIN LATERAL (` + coveringSQL + `) s ON true WHERE z.code = ?`,
		[]any{plate, code, at, at.Add(-MaxSessionSpan), at, code}
}

// Cover is the session that covers an enforcement question's instant: its ID
// and its plate's country (the answer shows it beside the plate).
type Cover struct {
	SessionID int64
	Country   string
}

// RightsLookup answers in one round trip what an enforcement question needs
// from Postgres: the zone (compiled, from the cache unless the zone changed) and
// the session of plate in it that covers at, if any. A zone that does not
// exist is ErrNotFound.
func (s *Store) RightsLookup(ctx context.Context, db bun.IDB, plate, code string, at time.Time) (*domain.Zone, Cover, bool, error) {
	var rows []struct {
		UpdatedAt time.Time `bun:"updated_at"`
		SessionID *int64    `bun:"session_id"`
		Country   *string   `bun:"country"`
	}
	q, args := rightsQuery(plate, code, at)
	err := db.NewRaw(q, args...).Scan(ctx, &rows)
	if err != nil {
		return nil, Cover{}, false, fmt.Errorf("rights of %s in %s: %w", domain.MaskPlate(plate), code, err)
	}
	if len(rows) == 0 {
		return nil, Cover{}, false, fmt.Errorf("zone %s: %w", code, ErrNotFound)
	}
	s.zoneMu.Lock()
	c, ok := s.zones[code]
	s.zoneMu.Unlock()
	z := c.zone
	if !ok || !c.updatedAt.Equal(rows[0].UpdatedAt) {
		if z, err = s.Zone(ctx, db, code); err != nil {
			return nil, Cover{}, false, err
		}
	}
	if rows[0].SessionID == nil || rows[0].Country == nil {
		return z, Cover{}, false, nil
	}
	return z, Cover{SessionID: *rows[0].SessionID, Country: *rows[0].Country}, true, nil
}
