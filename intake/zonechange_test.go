package intake_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
)

type rightAnswer struct {
	Valid     bool
	Reason    string
	SessionID string `json:"session_id"`
}

func (e *env) right(plate, place string, at time.Time) rightAnswer {
	e.t.Helper()
	var out rightAnswer
	q := url.Values{"plate": {plate}, "zone": {e.zone}, "place": {place}, "at": {at.Format(time.RFC3339Nano)}}
	e.mustDo("GET", "/v1/rights?"+q.Encode(), e.token(identity.RoleEnforcement, "scan"), nil, http.StatusOK, &out)
	return out
}

// Zone changes apply forward (DOMAIN.md): an operator who makes every weekday
// invalid, sets a one-minute maximum, another tariff, time zone, regime and
// year start takes back nothing granted. Enforcement still answers from the
// session as it was granted, the permit's running year keeps its bounds, and
// only what starts afterwards meets the new zone.
func TestZoneChangeKeepsGrantedRights(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	s := e.startSession(r, "GRANT1", nil)
	var before jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &before)

	e.mustDo("PUT", "/v1/admin/zones/"+e.zone, e.token(identity.RoleOperator, "op"), map[string]any{
		"name": "Test", "tariff_cents_per_hour": 999, "time_zone": "America/Santiago",
		"invalid_weekdays":    []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"},
		"max_session_minutes": 1, "year_starts": "09-05",
		"paid_hours": []map[string]any{{"days": []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, "from": "00:00", "to": "24:00"}},
	}, http.StatusOK, nil)

	at := s.StartAt.Add(time.Minute)
	for _, place := range []string{string(domain.PlacePermitHolder), string(domain.PlacePaid)} {
		if got := e.right("GRANT1", place, at); !got.Valid || got.Reason != domain.ReasonSession || got.SessionID != s.ID {
			t.Fatalf("%s, a session granted before the change: %+v, want valid %s", place, got, domain.ReasonSession)
		}
	}
	if got := e.right("GRANT1", string(domain.PlacePermitHolder), s.PlannedEndAt.Add(-time.Second)); !got.Valid {
		t.Fatalf("the last second of the interval granted: %+v", got)
	}
	if got := e.right("NOBODY", string(domain.PlacePermitHolder), at); got.Valid || got.Reason != domain.ReasonNotValidOnDay {
		t.Fatalf("no session: %+v, want %s", got, domain.ReasonNotValidOnDay)
	}

	var after jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &after)
	if !after.Year.StartsAt.Equal(before.Year.StartsAt) || !after.Year.EndsAt.Equal(before.Year.EndsAt) {
		t.Fatalf("the running year moved from [%s, %s) to [%s, %s)", before.Year.StartsAt, before.Year.EndsAt, after.Year.StartsAt, after.Year.EndsAt)
	}
	// A start now meets the zone as it is now.
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "LATER1"}),
		http.StatusUnprocessableEntity, string(domain.CodeNotValidOnDay))
}
