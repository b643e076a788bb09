package intake_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
)

// TestPutZoneAnswersEveryField: PUT /v1/admin/zones/{code} answers the zone as
// stored, byte for byte: its code first, then every field of the spec in the
// contract's order, defaults filled in, an empty list kept empty (not
// dropped, not defaulted).
func TestPutZoneAnswersEveryField(t *testing.T) {
	t.Parallel()
	e := setup(t, options{noWorker: true})
	op := e.token(identity.RoleOperator, "op")
	cases := []struct {
		name, body, want string
	}{
		{"defaults filled in", `{"name":" Centrum ","tariff_cents_per_hour":210}`,
			`{"code":"GOLD","name":"Centrum","time_zone":"Europe/Amsterdam","tariff_cents_per_hour":210,` +
				`"paid_hours":[{"days":["mon","tue","wed","thu","fri","sat"],"from":"09:00","to":"21:00"},{"days":["sun"],"from":"12:00","to":"17:00"}],` +
				`"invalid_weekdays":["sat"],"max_session_minutes":180,"max_plan_ahead_days":7,"annual_purchase_limit_hours":500,` +
				`"annual_usage_limit_hours":500,"year_starts":"01-01","max_concurrent_sessions":null,"default_end":"max_duration","carry_over_max_hours":null,"ending_notice_minutes":10,"registration":null}`},
		{"empty lists stay empty", `{"name":"Oost","tariff_cents_per_hour":100,"paid_hours":[],"invalid_weekdays":[]}`,
			`{"code":"GOLD","name":"Oost","time_zone":"Europe/Amsterdam","tariff_cents_per_hour":100,"paid_hours":[],` +
				`"invalid_weekdays":[],"max_session_minutes":180,"max_plan_ahead_days":7,"annual_purchase_limit_hours":500,` +
				`"annual_usage_limit_hours":500,"year_starts":"01-01","max_concurrent_sessions":null,"default_end":"max_duration","carry_over_max_hours":null,"ending_notice_minutes":10,"registration":null}`},
		{"every field given", `{"name":"Santiago","time_zone":"America/Santiago","tariff_cents_per_hour":90,` +
			`"paid_hours":[{"days":["sun"],"from":"00:00","to":"24:00"}],"invalid_weekdays":["mon","tue"],"max_session_minutes":1440,` +
			`"max_plan_ahead_days":366,"annual_purchase_limit_hours":8784,"annual_usage_limit_hours":1,"year_starts":"09-07",` +
			`"max_concurrent_sessions":2,"default_end":"paid_regime_end","carry_over_max_hours":50,"ending_notice_minutes":15,` +
			`"registration":{"area_manager_id":"361","area_id":"ALK01","usage_id":"BEZOEKP"}}`,
			`{"code":"GOLD","name":"Santiago","time_zone":"America/Santiago","tariff_cents_per_hour":90,` +
				`"paid_hours":[{"days":["sun"],"from":"00:00","to":"24:00"}],"invalid_weekdays":["mon","tue"],"max_session_minutes":1440,` +
				`"max_plan_ahead_days":366,"annual_purchase_limit_hours":8784,"annual_usage_limit_hours":1,"year_starts":"09-07",` +
				`"max_concurrent_sessions":2,"default_end":"paid_regime_end","carry_over_max_hours":50,"ending_notice_minutes":15,` +
				`"registration":{"area_manager_id":"361","area_id":"ALK01","usage_id":"BEZOEKP"}}`},
		{"nulls are absent", `{"name":"N","tariff_cents_per_hour":1,"paid_hours":null,"invalid_weekdays":null,"time_zone":null,` +
			`"max_concurrent_sessions":null,"carry_over_max_hours":null,"registration":null}`,
			`{"code":"GOLD","name":"N","time_zone":"Europe/Amsterdam","tariff_cents_per_hour":1,` +
				`"paid_hours":[{"days":["mon","tue","wed","thu","fri","sat"],"from":"09:00","to":"21:00"},{"days":["sun"],"from":"12:00","to":"17:00"}],` +
				`"invalid_weekdays":["sat"],"max_session_minutes":180,"max_plan_ahead_days":7,"annual_purchase_limit_hours":500,` +
				`"annual_usage_limit_hours":500,"year_starts":"01-01","max_concurrent_sessions":null,"default_end":"max_duration","carry_over_max_hours":null,"ending_notice_minutes":10,"registration":null}`},
	}
	for _, c := range cases {
		r := e.mustDo("PUT", "/v1/admin/zones/GOLD", op, c.body, http.StatusOK, nil)
		if got := string(r.Body); got != c.want+"\n" { // json.Encoder ends with a newline
			t.Errorf("%s: answered\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
	// Strict as ever: a field the spec does not have is a 400 naming it.
	wantError(t, e.do("PUT", "/v1/admin/zones/GOLD", op, `{"name":"C","tariff_cents_per_hour":210,"code":"GOLD"}`),
		http.StatusBadRequest, intake.CodeBadRequest, "code")
}

// TestPutZoneRefusesZeroForADefaultedSetting: a setting left out gets its
// default, but one given as 0 or "" is out of range and refused as
// invalid_zone naming it; the zone stays as it was.
func TestPutZoneRefusesZeroForADefaultedSetting(t *testing.T) {
	t.Parallel()
	e := setup(t, options{noWorker: true})
	op := e.token(identity.RoleOperator, "op")
	before := e.do("PUT", "/v1/admin/zones/ZERO", op, []byte(`{"name":"Zero","tariff_cents_per_hour":100}`))
	if before.Status != http.StatusOK {
		t.Fatalf("put zone: %s", before)
	}
	for _, c := range []struct{ field, value string }{
		{"max_session_minutes", "0"}, {"max_plan_ahead_days", "0"}, {"annual_purchase_limit_hours", "0"},
		{"annual_usage_limit_hours", "0"}, {"ending_notice_minutes", "0"},
		{"time_zone", `""`}, {"year_starts", `""`}, {"default_end", `""`},
	} {
		body := `{"name":"Zero","tariff_cents_per_hour":100,"` + c.field + `":` + c.value + `}`
		res := e.do("PUT", "/v1/admin/zones/ZERO", op, []byte(body))
		wantError(t, res, http.StatusUnprocessableEntity, "invalid_zone")
		if !strings.Contains(string(res.Body), c.field) {
			t.Errorf("%s = %s: the refusal does not name the setting: %s", c.field, c.value, res.Body)
		}
	}
	// Nothing stored changed: the zone is read back from Postgres.
	z, err := e.store.Zone(e.ctx, e.store.DB, "ZERO")
	if err != nil {
		t.Fatal(err)
	}
	if z.Spec.EndingNoticeMinutes != 10 || z.Spec.MaxSessionMinutes != 180 || z.Spec.TimeZone != "Europe/Amsterdam" {
		t.Fatalf("zone after refused puts: %+v", z.Spec)
	}
}
