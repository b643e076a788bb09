package intake

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/repo"
)

// rightBody is the enforcement answer (openapi.yaml), with the question
// echoed (the plate as normalised) so that a scan car can log what it was
// told.
type rightBody struct {
	Valid     bool   `json:"valid"`
	Reason    string `json:"reason"`
	SessionID string `json:"session_id,omitempty"`
	Plate     string `json:"plate"`
	// Country is the plate's country in the session that makes the answer
	// valid (the question names none; the scan car compares it).
	Country string    `json:"country,omitempty"`
	Zone    string    `json:"zone"`
	Place   string    `json:"place"`
	At      time.Time `json:"at"`
}

// rights: GET /v1/rights?plate=&zone=&place=&at= (enforcement). The rules are
// domain.CheckRight's; Postgres only says which session, if any, covers the
// instant (one lookup in the sessions_rights index). The session ID is shown
// only when the session is what makes the answer valid.
func (s *Server) rights(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	q := r.URL.Query()
	rawPlate := q.Get("plate")
	if rawPlate == "" {
		return badRequest("plate", "is required")
	}
	if err := text("plate", rawPlate); err != nil {
		return err
	}
	plate, err := domain.NormalizePlate(rawPlate)
	if err != nil {
		msg := err.Error()
		if rule, ok := domain.AsRule(err); ok {
			msg = rule.Message
		}
		return badRequest("plate", "%s", msg)
	}
	code := q.Get("zone")
	if code == "" {
		return badRequest("zone", "is required")
	}
	if err := text("zone", code); err != nil {
		return err
	}
	kind, err := domain.ParsePlaceKind(q.Get("place"))
	if err != nil {
		return badRequest("place", "must be one of permit_holder, paid, short_stay, car_free")
	}
	at := s.now()
	if q.Has("at") {
		// An unescaped "+01:00" arrives as " 01:00" (a + in a query string is a
		// space); RFC 3339 has no spaces, so the meaning is not in doubt.
		if at, err = parseInstant("at", strings.ReplaceAll(q.Get("at"), " ", "+")); err != nil {
			return err
		}
	}
	if !domain.ValidZoneCode(code) {
		return errNotFound("zone %s not found", truncate(code, 40))
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	// One round trip fetches the zone and the covering session together: the
	// probe of the session index costs less than a second round trip would
	// when the rules turn out to need it.
	z, cov, covered, err := s.Store.RightsLookup(ctx, s.Store.DB, plate, code, at)
	if errors.Is(err, repo.ErrNotFound) {
		return errNotFound("zone %s not found", code)
	}
	if err != nil {
		return err
	}
	out := rightBody{Plate: plate, Zone: z.Code, Place: string(kind), At: at}
	right := domain.CheckRight(z, kind, at, covered)
	if right.Reason == domain.ReasonSession {
		out.SessionID, out.Country = repo.FormatID(cov.SessionID), cov.Country
	}
	out.Valid, out.Reason = right.Valid, right.Reason
	writeJSON(w, http.StatusOK, out)
	return nil
}
