package intake_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
)

// Instants outside the years 2000-2199 are 400 bad_request wherever a client
// names one, in a query parameter or a body field, and nothing is queued.
func TestInstantsOutsideTheYearsAreBadRequests(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	s := e.startSession(r, "RANGE1", nil)
	enf := e.token(identity.RoleEnforcement, "scan")
	out := []string{
		"0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59-12:00", // year 10000 in UTC
		"1999-12-31T23:59:59Z",
		"2000-01-01T00:30:00+01:00", // 1999 in UTC
		"2200-01-01T00:00:00Z",
		"2199-12-31T23:30:00-01:00", // 2200 in UTC
	}
	for _, at := range out {
		t.Run("rights at "+at, func(t *testing.T) {
			q := url.Values{"plate": {"RANGE1"}, "zone": {e.zone}, "place": {"permit_holder"}, "at": {at}}
			wantError(t, e.do("GET", "/v1/rights?"+q.Encode(), enf, nil), http.StatusBadRequest, intake.CodeBadRequest, "at")
		})
	}
	t.Run("rights at offset +01:60", func(t *testing.T) {
		q := url.Values{"plate": {"RANGE1"}, "zone": {e.zone}, "place": {"permit_holder"}, "at": {"2026-12-01T10:00:00+01:60"}}
		wantError(t, e.do("GET", "/v1/rights?"+q.Encode(), enf, nil), http.StatusBadRequest, intake.CodeBadRequest, "at")
	})
	for _, at := range []string{"2000-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "2026-12-01T10:00:00+23:59", "2026-12-01T10:00:00-23:59"} {
		q := url.Values{"plate": {"RANGE1"}, "zone": {e.zone}, "place": {"permit_holder"}, "at": {at}}
		e.mustDo("GET", "/v1/rights?"+q.Encode(), enf, nil, http.StatusOK, nil)
	}

	el := e.token(identity.RoleEloket, "eloket")
	writes := []struct {
		name, path, token, field string
		body                     map[string]any
	}{
		{"start_at 9999 -12:00", "/v1/permits/" + r.permit + "/sessions", r.token, "start_at", map[string]any{"plate": "AB12CD", "start_at": out[1]}},
		{"start_at year 1", "/v1/permits/" + r.permit + "/sessions", r.token, "start_at", map[string]any{"plate": "AB12CD", "start_at": out[0]}},
		{"end_at 2200", "/v1/permits/" + r.permit + "/sessions", r.token, "end_at", map[string]any{"plate": "AB12CD", "end_at": out[4]}},
		{"stop at year 1", "/v1/sessions/" + s.ID + "/stop", r.token, "at", map[string]any{"at": out[0]}},
		{"stop at 1999", "/v1/sessions/" + s.ID + "/stop", r.token, "at", map[string]any{"at": out[2]}},
		{"permit end at 9999 -12:00", "/v1/permits/" + r.permit + "/end", el, "at", map[string]any{"reason": "moved", "at": out[1]}},
		// Offsets RFC 3339 does not have, which Go's parser takes (a day and
		// an hour away from what a typo meant).
		{"start_at offset +24:00", "/v1/permits/" + r.permit + "/sessions", r.token, "start_at", map[string]any{"plate": "AB12CD", "start_at": "2026-12-01T10:00:00+24:00"}},
		{"end_at offset +00:60", "/v1/permits/" + r.permit + "/sessions", r.token, "end_at", map[string]any{"plate": "AB12CD", "end_at": "2026-12-01T10:00:00+00:60"}},
		{"stop at offset -24:00", "/v1/sessions/" + s.ID + "/stop", r.token, "at", map[string]any{"at": "2026-12-01T10:00:00.5-24:00"}},
	}
	for _, c := range writes {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, e.do("POST", c.path+"?wait=10s", c.token, c.body), http.StatusBadRequest, intake.CodeBadRequest, c.field)
		})
	}
	// Nothing of them reached the queue or the database.
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].Status != domain.StatusActive {
		t.Fatalf("sessions after bad requests: %+v, want the one active session", list.Sessions)
	}
	var p jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &p)
	if p.Status != domain.PermitActive {
		t.Fatalf("permit %s after a refused end", p.Status)
	}
}
