package intake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Reads come straight from Postgres: each is one or two primary-key or index
// lookups, under DependencyTimeout.

// permitFor reads the permit named in the path, if p may see it: a resident
// only one it holds (reach), the E-loket any.
func (s *Server) permitFor(r *http.Request, p *identity.Principal) (*repo.Permit, error) {
	id, err := s.reachPermit(r, p)
	if err != nil {
		return nil, err
	}
	raw := r.PathValue("permit_id")
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	pm, err := repo.GetPermit(ctx, s.Store.DB, id)
	if errors.Is(err, repo.ErrNotFound) {
		return nil, errNotFound("permit %s not found", raw)
	}
	return pm, err
}

// reachPermit checks that p may act on the permit named in the path (reach: a
// resident only one it holds, 403 otherwise, whether or not it exists) and
// returns its ID.
func (s *Server) reachPermit(r *http.Request, p *identity.Principal) (int64, error) {
	raw := r.PathValue("permit_id")
	if _, err := s.reach(r.Context(), p, raw, ""); err != nil {
		return 0, err
	}
	id, ok := repo.ParseID(raw)
	if !ok {
		return 0, errNotFound("permit %s not found", raw)
	}
	return id, nil
}

// sessionFor reads the session named in the path, if p may see it. A session
// that does not exist is 404 for everyone; one on a permit the resident may not
// act on (reach) is 403.
func (s *Server) sessionFor(r *http.Request, p *identity.Principal) (*repo.Session, error) {
	raw := r.PathValue("session_id")
	id, ok := repo.ParseID(raw)
	if !ok {
		return nil, errNotFound("session %s not found", raw)
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	sess, err := repo.GetSession(ctx, s.Store.DB, id)
	if errors.Is(err, repo.ErrNotFound) {
		return nil, errNotFound("session %s not found", raw)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.reach(r.Context(), p, repo.FormatID(sess.PermitID), raw); err != nil {
		return nil, err
	}
	return sess, nil
}

// sessionWriteFor is what a write on the session in r's path (a stop, a
// change) needs to know: its ID, once p may act on it (as sessionFor), from
// its permit and that permit's holder alone (holders: remembered since its
// start or an earlier write, else one statement, repo.SessionHolder) rather
// than the whole session.
func (s *Server) sessionWriteFor(r *http.Request, p *identity.Principal) (int64, error) {
	raw := r.PathValue("session_id")
	id, ok := repo.ParseID(raw)
	if !ok {
		return 0, errNotFound("session %s not found", raw)
	}
	sh, err := s.holders.session(r.Context(), id)
	if errors.Is(err, repo.ErrNotFound) {
		return 0, errNotFound("session %s not found", raw)
	}
	if err != nil {
		return 0, err
	}
	if err := allowed(p, repo.FormatID(sh.permitID), sh.holder, raw); err != nil {
		return 0, err
	}
	return id, nil
}

// getSession: GET /v1/sessions/{session_id} (resident).
func (s *Server) getSession(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	sess, err := s.sessionFor(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sess.View(s.now()))
	return nil
}

// listSessions: GET /v1/permits/{permit_id}/sessions?status= (resident).
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	status := r.URL.Query().Get("status")
	switch status {
	case "", domain.StatusPlanned, domain.StatusActive, domain.StatusStopped, domain.StatusCancelled:
	default:
		return badRequest("status", "must be one of planned, active, stopped, cancelled")
	}
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	now := s.now()
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.PermitSessions(ctx, s.Store.DB, pm.ID, status, now)
	if err != nil {
		return err
	}
	out := make([]jobs.Session, len(rows))
	for i := range rows {
		out[i] = rows[i].View(now)
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

// quote: POST /v1/permits/{permit_id}/quotes (resident): what a start with
// this body would decide now, from the same rules (domain.QuoteSession is
// domain.PlanSession), read from Postgres without a lock, a queue or a write:
// the permit as its year would be once current, the zone, the permit's
// sessions for the concurrency cap and, last (as the start's insert meets it
// last), the plate's open sessions in the zone. A start a moment later may
// still decide otherwise when something changed in between.
func (s *Server) quote(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	f, err := decodeStart(b)
	if err != nil {
		return err
	}
	now := s.now()
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	z, err := s.Store.Zone(ctx, s.Store.DB, pm.Zone)
	if err != nil {
		return err
	}
	req := domain.StartRequest{Plate: f.Plate, Country: f.Country, StartAt: f.StartAt, EndAt: f.EndAt, ReceivedAt: now}
	if req.PermitSessions, err = repo.PermitIntervals(ctx, s.Store.DB, z, pm.ID, req.Window(z), 0); err != nil {
		return err
	}
	q, err := domain.QuoteSession(z, pm.StateAt(z, now), req)
	if err != nil {
		return err
	}
	parked, err := repo.PlateParked(ctx, s.Store.DB, z.Code, q.Plate, domain.Interval{Start: q.StartAt, End: q.PlannedEndAt}, 0)
	if err != nil {
		return err
	}
	if parked {
		return domain.PlateAlreadyParked(q.Plate, z.Code)
	}
	notices := q.Notices
	if notices == nil {
		notices = []domain.Notice{}
	}
	writeJSON(w, http.StatusOK, jobs.Quote{StartAt: q.StartAt.UTC(), PlannedEndAt: q.PlannedEndAt.UTC(),
		ReservedMinutes: q.ReservedMinutes, CostCents: q.CostCents, Notices: notices})
	return nil
}

// getPermit: GET /v1/permits/{permit_id} (resident, eloket).
func (s *Server) getPermit(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pm.View())
	return nil
}

// Ledger page sizes.
const (
	DefaultLedgerLimit = 50
	MaxLedgerLimit     = 500
)

// ledger: GET /v1/permits/{permit_id}/ledger?limit=&before= (resident, eloket),
// newest first. next is the before= of the following page, absent on the last.
func (s *Server) ledger(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	q := r.URL.Query()
	limit := DefaultLedgerLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxLedgerLimit {
			return badRequest("limit", "must be a whole number from 1 to %d", MaxLedgerLimit)
		}
		limit = n
	}
	var before int64
	if q.Has("before") {
		id, ok := repo.ParseID(q.Get("before"))
		if !ok {
			return badRequest("before", "must be a ledger entry ID (the next of a previous page)")
		}
		before = id
	}
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.LedgerPage(ctx, s.Store.DB, pm.ID, before, limit+1) // one more says whether there is a next page
	if err != nil {
		return err
	}
	type page struct {
		Entries []jobs.LedgerEntry `json:"entries"`
		Next    string             `json:"next,omitempty"`
	}
	var out page
	if len(rows) > limit {
		rows = rows[:limit]
		out.Next = repo.FormatID(rows[limit-1].ID)
	}
	out.Entries = make([]jobs.LedgerEntry, len(rows))
	for i := range rows {
		out.Entries[i] = rows[i].View()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// statements: GET /v1/permits/{permit_id}/statements (resident, eloket).
func (s *Server) statements(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.PermitStatements(ctx, s.Store.DB, pm.ID)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []jobs.Statement{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"statements": rows})
	return nil
}

// getRequest: GET /v1/requests/{request_id}: the requester's, or any for an
// operator (who steers the queues and must see what is stuck).
func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	id := r.PathValue("request_id")
	if !jobs.ValidRequestID(id) {
		return errNotFound("request %s not found", truncate(id, 64))
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rec, err := repo.GetRequest(ctx, s.Store.DB, id)
	if errors.Is(err, repo.ErrNotFound) {
		return errNotFound("request %s not found", id)
	}
	if err != nil {
		return err
	}
	mine := rec.Subject != nil && *rec.Subject == p.Subject()
	if p.Role != identity.RoleOperator && !mine {
		return errForbidden("request " + id + " was not made by you")
	}
	out := jobs.Outcome{RequestID: rec.RequestID, Type: rec.Type, Status: rec.Status, Error: rec.Error, Result: rec.Result}
	if p.Role == identity.RoleOperator || !mine {
		// Operators see what a request did, not who parked where (openapi.yaml):
		// plates masked as the console and the logs show them.
		if out.Result, err = masked(rec.Result); err != nil {
			return fmt.Errorf("request %s: recorded result: %w", id, err)
		}
		if out.Error, err = masked(rec.Error); err != nil {
			return fmt.Errorf("request %s: recorded error: %w", id, err)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// masked is a recorded JSON document with its plates masked; nil stays nil.
func masked(b json.RawMessage) (json.RawMessage, error) {
	if len(b) == 0 {
		return b, nil
	}
	return domain.MaskPlatesInJSON(b, "")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
