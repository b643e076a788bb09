package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// What an event says (README "Events and webhooks: how an upstream app
// subscribes"): the session or permit as an operator reads it, plates masked,
// plus "reason" where one applies. The writers build their events here and
// write them in the transaction of the change: a request's through
// FinishRequest (in the statement of its outcome), the others (auto-stop,
// rollover, the ending notice) with AddEvents or in their own statement.

// sessionEventData is a session event's data: the session, plus the reason of
// a session.stopped.
type sessionEventData struct {
	jobs.Session
	Reason string `json:"reason,omitempty"`
}

// operatorView is the session s at now as an operator reads it: its
// plate masked but for its last two characters, as the request outcomes
// (domain.MaskPlatesInJSON), the console and the logs show it. An erased
// plate stays null.
func operatorView(s *Session, now time.Time) jobs.Session {
	v := s.View(now)
	if v.Plate != "" {
		plate := string(v.Plate)
		if n, err := domain.NormalizePlate(plate); err == nil {
			plate = n
		}
		v.Plate = jobs.Plate(domain.MaskPlate(plate))
	}
	return v
}

// SessionEvent is the event of type typ (jobs.EventSession*) about session s
// as it stands after the change, made at now by request requestID (nil: an
// auto-stop, the reconciler or the ending notice); reason is the
// session.stopped reason (jobs.StopReason*), "" for every other type.
func SessionEvent(typ string, s *Session, now time.Time, requestID *string, reason string) *Event {
	data, err := json.Marshal(sessionEventData{Session: operatorView(s, now), Reason: reason})
	if err != nil {
		panic(err) // strings, ints and instants Postgres returned
	}
	pid, sid := s.PermitID, s.ID
	return &Event{Type: typ, OccurredAt: Instant(now), PermitID: &pid, SessionID: &sid, RequestID: requestID, Data: data}
}

// PermitEvent is the event of type typ (jobs.EventPermit*) about permit p as
// it stands after the change, made at now by request requestID (nil: the
// rollover). A permit names no plate.
func PermitEvent(typ string, p *Permit, now time.Time, requestID *string) *Event {
	data, err := json.Marshal(p.View())
	if err != nil {
		panic(err) // strings, ints and instants Postgres returned
	}
	pid := p.ID
	return &Event{Type: typ, OccurredAt: Instant(now), PermitID: &pid, RequestID: requestID, Data: data}
}

// SessionStopEvent is the event of a session a stop, an auto-stop or a permit
// end has just settled or cancelled: session.cancelled when it never began,
// else session.stopped with reason (jobs.StopReason*).
func SessionStopEvent(s *Session, now time.Time, requestID *string, reason string) *Event {
	if s.State == domain.StateCancelled {
		return SessionEvent(jobs.EventSessionCancelled, s, now, requestID, "")
	}
	return SessionEvent(jobs.EventSessionStopped, s, now, requestID, reason)
}

// AddEndingEvent writes ev, a session.ending event, unless that session's
// ending for the same planned end was written already (the unique index
// events_ending_once), and reports whether it wrote it: the ending task may
// run twice (a retry after a crash, a re-enqueue by the reconciler), the
// event is sent once.
func AddEndingEvent(ctx context.Context, tx bun.IDB, ev *Event) (bool, error) {
	res, err := tx.NewInsert().Model(ev).ExcludeColumn("pk", "id", "sequence", "created_at").
		On("CONFLICT (session_id, (data->>'planned_end_at')) WHERE type = ? DO NOTHING", jobs.EventSessionEnding).
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("write the ending of session %v: %w", ev.SessionID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}
