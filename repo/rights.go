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

// A session's right in the national register (README "Pointing parkd at a
// register"): the registrar's answers to the versions parkd sent, kept in the
// session's right_* columns. The worker sends; these record what came back.

// rightPendingSQL is a right whose newest version the registrar has neither
// acknowledged nor refused (the partial index sessions_right_pending).
const rightPendingSQL = "right_version > right_registered_version AND right_version > right_rejected_version"

// RightPendingLimit is how long a right may wait for the registrar before
// `parkd check` lists it: retries come within a minute, so five are an outage.
const RightPendingLimit = 5 * time.Minute

// RightAcknowledgement is what recording an acknowledgement did.
type RightAcknowledgement struct {
	// Advanced: this acknowledgement moved right_registered_version forward
	// (false: an equal or newer version was acknowledged before).
	Advanced bool
	// ChangedAt is when the acknowledged version was made (right_changed_at),
	// while it is still the session's newest; nil otherwise.
	ChangedAt *time.Time
}

// AcknowledgeRight records that the registrar acknowledged version of a
// session's right at at (UTC): right_registered_version becomes the greater of
// the two and right_registered_at at, in one statement, so that answers
// arriving in any order leave the highest.
func AcknowledgeRight(ctx context.Context, db bun.IDB, sessionID int64, version int, at time.Time) (RightAcknowledgement, error) {
	var rows []struct {
		RightVersion   int        `bun:"right_version"`
		RightChangedAt *time.Time `bun:"right_changed_at"`
	}
	err := scanPrepared(ctx, db, `UPDATE sessions SET right_registered_version = $1, right_registered_at = $2
		WHERE id = $3 AND right_registered_version < $1
		RETURNING right_version, right_changed_at`, []any{version, at, sessionID}, &rows)
	if err != nil {
		return RightAcknowledgement{}, fmt.Errorf("acknowledge right of session %d version %d: %w", sessionID, version, err)
	}
	if len(rows) == 0 {
		return RightAcknowledgement{}, nil
	}
	ack := RightAcknowledgement{Advanced: true}
	if rows[0].RightVersion == version {
		ack.ChangedAt = rows[0].RightChangedAt
	}
	return ack, nil
}

// RejectRight records that the registrar refused version of a session's right,
// and why (a short text without a plate). It reports whether this call
// recorded it (false: a newer version was refused before). A version refused
// again (an operator sent it again: worker.RightRegister) keeps the newest
// reason.
func RejectRight(ctx context.Context, db bun.IDB, sessionID int64, version int, reason string) (bool, error) {
	res, err := db.NewRaw(`UPDATE sessions SET right_rejected_version = ?, right_rejection = ?
		WHERE id = ? AND right_rejected_version <= ?`, version, reason, sessionID, version).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("reject right of session %d version %d: %w", sessionID, version, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// PendingRight is a session whose newest right version waits for the registrar.
type PendingRight struct {
	SessionID int64 `bun:"id"`
	Version   int   `bun:"right_version"`
}

// PendingRights lists, oldest change first, at most limit sessions whose right
// is pending and was changed before changedBefore: the ones whose
// right:register task may have been lost (the reconciler queues them again).
func PendingRights(ctx context.Context, db bun.IDB, changedBefore time.Time, limit int) ([]PendingRight, error) {
	var out []PendingRight
	err := db.NewRaw(`SELECT id, right_version FROM sessions
		WHERE `+rightPendingSQL+` AND right_changed_at < ?
		ORDER BY right_changed_at LIMIT ?`, changedBefore, limit).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("pending rights: %w", err)
	}
	return out, nil
}

// RightsBacklog counts the pending rights and ages the oldest change among
// them, on Postgres's clock.
func RightsBacklog(ctx context.Context, db bun.IDB) (PendingStats, error) {
	var row struct {
		Count  int64   `bun:"n"`
		Oldest float64 `bun:"oldest"`
	}
	err := db.NewRaw(`SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(right_changed_at)), 0)::float8 AS oldest
		FROM sessions WHERE `+rightPendingSQL).Scan(ctx, &row)
	if err != nil {
		return PendingStats{}, fmt.Errorf("pending rights: %w", err)
	}
	return PendingStats{Count: row.Count, Oldest: time.Duration(max(row.Oldest, 0) * float64(time.Second))}, nil
}

// rightsAuditSQL lists every right the registrar has not taken: pending longer
// than RightPendingLimit, or refused at its newest version, each with its age
// (since the change that made the version); a refused one says how to send it
// again (worker.RightRegister sends a refused version when its archived task
// is run: jobs.RightTaskID).
var rightsAuditSQL = `
	SELECT format('session %s: right version %s pending for %s', id, right_version,
	              date_trunc('second', now() - right_changed_at))
	FROM sessions
	WHERE ` + rightPendingSQL + ` AND right_changed_at < now() - '` +
	fmt.Sprintf("%d seconds", int(RightPendingLimit.Seconds())) + `'::interval
	UNION ALL
	SELECT format('session %s: right version %s rejected (changed %s ago): %s; after fixing the cause, run the archived task right:%s:%s in asynqmon''s registrar queue to send it again',
	              id, right_version, date_trunc('second', now() - right_changed_at), right_rejection, id, right_version)
	FROM sessions
	WHERE right_version > 0 AND right_rejected_version >= right_version AND right_registered_version < right_version`

// RegisteredSessions reads, by ID after afterID, at most limit sessions
// whose right is registered (right_version > 0), every column: what the
// registrar should hold of each, for a comparison with a register (the lab's
// chaos run and bench read them to hold a register emulator to parkd).
func RegisteredSessions(ctx context.Context, db bun.IDB, afterID int64, limit int) ([]Session, error) {
	var out []Session
	err := db.NewSelect().Model(&out).Where("right_version > 0").Where("id > ?", afterID).
		OrderExpr("id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("registered sessions after %d: %w", afterID, err)
	}
	return out, nil
}
