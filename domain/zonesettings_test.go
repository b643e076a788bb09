package domain_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
)

func intp(n int) *int { return &n }

// The zone settings of DOMAIN.md "What residents can do besides start and stop"
// and "Telling others": each invalid value is invalid_zone naming the field.
func TestZoneSettingsValidation(t *testing.T) {
	reg := func(manager, area, usage string) func(*domain.ZoneSpec) {
		return func(s *domain.ZoneSpec) {
			s.Registration = &domain.ZoneRegistration{AreaManagerID: manager, AreaID: area, UsageID: usage}
		}
	}
	tests := []struct {
		name  string
		edit  func(*domain.ZoneSpec)
		field string // named in the rejection; "" means accepted
	}{
		{"max concurrent null", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = nil }, ""},
		{"max concurrent 1", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(1) }, ""},
		{"max concurrent 100", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(100) }, ""},
		{"max concurrent 0", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(0) }, "max_concurrent_sessions"},
		{"max concurrent negative", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(-1) }, "max_concurrent_sessions"},
		{"max concurrent 101", func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(101) }, "max_concurrent_sessions"},

		{"default end max_duration", func(s *domain.ZoneSpec) { s.DefaultEnd = "max_duration" }, ""},
		{"default end paid_regime_end", func(s *domain.ZoneSpec) { s.DefaultEnd = "paid_regime_end" }, ""},
		{"default end capitalised", func(s *domain.ZoneSpec) { s.DefaultEnd = "Paid_Regime_End" }, "default_end"},
		{"default end unknown", func(s *domain.ZoneSpec) { s.DefaultEnd = "midnight" }, "default_end"},
		{"default end with space", func(s *domain.ZoneSpec) { s.DefaultEnd = "max_duration " }, "default_end"},

		{"carry over null", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = nil }, ""},
		{"carry over 0 (all expires)", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(0) }, ""},
		{"carry over 50 (Den Haag)", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(50) }, ""},
		{"carry over 8784", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(8784) }, ""},
		{"carry over 8785", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(8785) }, "carry_over_max_hours"},
		{"carry over negative", func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(-1) }, "carry_over_max_hours"},

		{"ending notice 1", func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = 1 }, ""},
		{"ending notice 60", func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = 60 }, ""},
		{"ending notice 61", func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = 61 }, "ending_notice_minutes"},
		{"ending notice negative", func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = -10 }, "ending_notice_minutes"},

		{"registration null", func(s *domain.ZoneSpec) { s.Registration = nil }, ""},
		{"registration of the contract", reg("361", "ALK01", "BEZOEKP"), ""},
		{"registration of 10 characters with _ and -", reg("A_b-9", "0123456789", "x"), ""},
		{"registration area manager empty", reg("", "ALK01", "BEZOEKP"), "registration.area_manager_id"},
		{"registration area of 11 characters", reg("361", "ABCDEFGHIJK", "BEZOEKP"), "registration.area_id"},
		{"registration usage with space", reg("361", "ALK01", "BEZOEK P"), "registration.usage_id"},
		{"registration usage with accent", reg("361", "ALK01", "BEZOEKÉ"), "registration.usage_id"},
		{"registration area with dot", reg("361", "ALK.01", "BEZOEKP"), "registration.area_id"},
		{"registration area with newline", reg("361", "ALK01\n", "BEZOEKP"), "registration.area_id"},
		{"registration all empty", reg("", "", ""), "registration.area_manager_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := centrumSpec()
			tt.edit(&spec)
			z, err := domain.CompileZone("CENTRUM", spec)
			if tt.field == "" {
				wantCode(t, err, "")
				return
			}
			wantCode(t, err, domain.CodeInvalidZone)
			if err != nil && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			if z != nil {
				t.Errorf("CompileZone returned a zone along with its error")
			}
		})
	}
}

// Defaults keep today's behaviour (issue 14): no cap on sessions at once, a
// start without an end runs the maximum duration, the whole balance carries
// over, the ending notice 10 minutes ahead, nothing registered.
func TestZoneSettingsDefaults(t *testing.T) {
	z := centrum(t)
	if z.MaxConcurrentSessions != 0 || z.DefaultEnd != domain.DefaultEndMaxDuration || z.CarryOverCapped ||
		z.EndingNoticeMinutes != 10 || z.Registration != nil {
		t.Errorf("defaults: %+v", z)
	}
	s := z.Spec
	if s.MaxConcurrentSessions != nil || s.DefaultEnd != "max_duration" || s.CarryOverMaxHours != nil ||
		s.EndingNoticeMinutes != 10 || s.Registration != nil {
		t.Errorf("normalised spec: %+v", s)
	}

	// Explicit values are kept, and the zone holds copies: the caller's spec
	// changed afterwards changes nothing.
	spec := centrumSpec()
	spec.MaxConcurrentSessions, spec.CarryOverMaxHours = intp(2), intp(50)
	spec.DefaultEnd, spec.EndingNoticeMinutes = domain.DefaultEndPaidRegimeEnd, 15
	spec.Registration = &domain.ZoneRegistration{AreaManagerID: "361", AreaID: "ALK01", UsageID: "BEZOEKP"}
	z, err := domain.CompileZone("CENTRUM", spec)
	if !wantCode(t, err, "") {
		return
	}
	*spec.MaxConcurrentSessions, *spec.CarryOverMaxHours, spec.Registration.AreaID = 9, 9, "CHANGED"
	want := domain.ZoneRegistration{AreaManagerID: "361", AreaID: "ALK01", UsageID: "BEZOEKP"}
	if z.MaxConcurrentSessions != 2 || *z.Spec.MaxConcurrentSessions != 2 || z.DefaultEnd != "paid_regime_end" ||
		!z.CarryOverCapped || z.CarryOverMaxMinutes != 3000 || *z.Spec.CarryOverMaxHours != 50 ||
		z.EndingNoticeMinutes != 15 || *z.Registration != want || *z.Spec.Registration != want {
		t.Errorf("explicit values not kept: %+v / %+v", z, z.Spec)
	}
	// The zone's own registration and its spec's are not one value either.
	z.Registration.AreaID = "OTHER"
	if z.Spec.Registration.AreaID != "ALK01" {
		t.Errorf("the zone's registration and its spec's share memory")
	}
}

// contractZone is intake/openapi.yaml's zone example (ZoneSpec), as written
// there.
const contractZone = `{"name": "Centrum", "time_zone": "Europe/Amsterdam", "tariff_cents_per_hour": 210,
 "paid_hours": [{"days": ["mon","tue","wed","thu","fri","sat"], "from": "09:00", "to": "21:00"},
                {"days": ["sun"], "from": "12:00", "to": "17:00"}],
 "invalid_weekdays": ["sat"], "max_session_minutes": 180, "max_plan_ahead_days": 7,
 "annual_purchase_limit_hours": 500, "annual_usage_limit_hours": 500, "year_starts": "01-01",
 "max_concurrent_sessions": null, "default_end": "max_duration", "carry_over_max_hours": null,
 "ending_notice_minutes": 10, "registration": null}`

// specJSON compiles spec and marshals its normalised form; it checks too that
// the JSON, read back strictly (as the intake reads a PUT body) and compiled
// again, is the very same zone.
func specJSON(t *testing.T, code string, spec domain.ZoneSpec) []byte {
	t.Helper()
	z, err := domain.CompileZone(code, spec)
	if err != nil {
		t.Fatalf("CompileZone: %v", err)
	}
	b, err := json.Marshal(z.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var back domain.ZoneSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	z2, err := domain.CompileZone(code, back)
	if err != nil {
		t.Fatalf("CompileZone of %s: %v", b, err)
	}
	if !reflect.DeepEqual(z2.Spec, z.Spec) {
		t.Errorf("read back: %+v, want %+v", z2.Spec, z.Spec)
	}
	return b
}

// The PUT answer shows every field with its default filled in and unset limits
// as null (intake/openapi.yaml): the normalised spec of a zone that names only
// its name and tariff marshals byte for byte as the contract's example, in its
// order.
func TestZoneSpecMarshalsAsTheContract(t *testing.T) {
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(contractZone)); err != nil {
		t.Fatal(err)
	}
	if got := specJSON(t, "CENTRUM", domain.ZoneSpec{Name: "Centrum", TariffCentsPerHour: 210}); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("normalised spec marshals as\n%s\nwant\n%s", got, want.Bytes())
	}
	// The example itself, sent as a PUT body, is that very zone.
	var spec domain.ZoneSpec
	if err := json.Unmarshal([]byte(contractZone), &spec); err != nil {
		t.Fatal(err)
	}
	if got := specJSON(t, "CENTRUM", spec); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("the contract's example compiles to\n%s\nwant\n%s", got, want.Bytes())
	}

	// Set limits and a registration show their values; a zone valid every day
	// shows [] (not null, and not dropped: read back it would mean Saturday).
	spec = domain.ZoneSpec{Name: "Oost", TariffCentsPerHour: 180, InvalidWeekdays: []string{}, PaidHours: []domain.PaidWindow{},
		MaxConcurrentSessions: intp(2), CarryOverMaxHours: intp(0), DefaultEnd: "paid_regime_end", EndingNoticeMinutes: 5,
		Registration: &domain.ZoneRegistration{AreaManagerID: "361", AreaID: "ALK01", UsageID: "BEZOEKP"}}
	const wantSet = `{"name":"Oost","time_zone":"Europe/Amsterdam","tariff_cents_per_hour":180,"paid_hours":[],` +
		`"invalid_weekdays":[],"max_session_minutes":180,"max_plan_ahead_days":7,"annual_purchase_limit_hours":500,` +
		`"annual_usage_limit_hours":500,"year_starts":"01-01","max_concurrent_sessions":2,"default_end":"paid_regime_end",` +
		`"carry_over_max_hours":0,"ending_notice_minutes":5,` +
		`"registration":{"area_manager_id":"361","area_id":"ALK01","usage_id":"BEZOEKP"}}`
	if got := specJSON(t, "OOST", spec); string(got) != wantSet {
		t.Errorf("spec with every setting marshals as\n%s\nwant\n%s", got, wantSet)
	}
}
