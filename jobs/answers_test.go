package jobs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// TestAnswersKeepTheirJSON: every answer type encodes as the contract has it,
// byte for byte: field names, order, which fields are left out when empty, and
// instants in UTC to the microsecond. The expected strings are what the types
// encoded to when they lived in package repo.
func TestAnswersKeepTheirJSON(t *testing.T) {
	at := time.Date(2026, 6, 10, 12, 0, 0, 123456000, time.UTC)
	end := at.Add(time.Hour)
	charged := 30
	cents := int64(210)
	sid, rid, ref := "7", "req-1", "PAY-1"
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"settled session", jobs.Session{ID: "7", PermitID: "3", Zone: "CENTRUM", Plate: "AB12CD", Country: "NL", Status: "stopped",
			StartAt: at, PlannedEndAt: end, EndAt: &end, ReservedMinutes: 60, ChargedMinutes: &charged,
			Notices:      []domain.Notice{{Code: "x", Message: "m", At: at}},
			Registration: jobs.Registration{Status: jobs.RegistrationRegistered, Version: 2, RegisteredAt: &end}},
			`{"id":"7","permit_id":"3","zone":"CENTRUM","plate":"AB12CD","country":"NL","status":"stopped","start_at":"2026-06-10T12:00:00.123456Z","planned_end_at":"2026-06-10T13:00:00.123456Z","end_at":"2026-06-10T13:00:00.123456Z","reserved_minutes":60,"charged_minutes":30,"notices":[{"code":"x","message":"m","at":"2026-06-10T12:00:00.123456Z"}],"registration":{"status":"registered","version":2,"registered_at":"2026-06-10T13:00:00.123456Z"}}`},
		{"open session", jobs.Session{ID: "7", PermitID: "3", Zone: "CENTRUM", Plate: "AB12CD", Country: "NL", Status: "active",
			StartAt: at, PlannedEndAt: end, ReservedMinutes: 60, Notices: []domain.Notice{},
			Registration: jobs.Registration{Status: jobs.RegistrationOff}},
			`{"id":"7","permit_id":"3","zone":"CENTRUM","plate":"AB12CD","country":"NL","status":"active","start_at":"2026-06-10T12:00:00.123456Z","planned_end_at":"2026-06-10T13:00:00.123456Z","reserved_minutes":60,"notices":[],"registration":{"status":"off","version":0}}`},
		{"ended permit", jobs.Permit{ID: "3", Zone: "CENTRUM", AddressID: "A1", ResidentID: "R1", Status: "ended", BalanceMinutes: 120,
			Year: jobs.PermitYear{StartsAt: at, EndsAt: end, PurchasedMinutes: 180, UsedMinutes: 60}, EndedAt: &end},
			`{"id":"3","zone":"CENTRUM","address_id":"A1","resident_id":"R1","status":"ended","balance_minutes":120,"year":{"starts_at":"2026-06-10T12:00:00.123456Z","ends_at":"2026-06-10T13:00:00.123456Z","purchased_minutes":180,"used_minutes":60,"reserved_minutes":0},"ended_at":"2026-06-10T13:00:00.123456Z"}`},
		{"active permit", jobs.Permit{ID: "3", Zone: "CENTRUM", AddressID: "A1", ResidentID: "R1", Status: "active", BalanceMinutes: 120,
			Year: jobs.PermitYear{StartsAt: at, EndsAt: end, PurchasedMinutes: 180, UsedMinutes: 60, ReservedMinutes: 5}},
			`{"id":"3","zone":"CENTRUM","address_id":"A1","resident_id":"R1","status":"active","balance_minutes":120,"year":{"starts_at":"2026-06-10T12:00:00.123456Z","ends_at":"2026-06-10T13:00:00.123456Z","purchased_minutes":180,"used_minutes":60,"reserved_minutes":5}}`},
		{"top-up entry", jobs.LedgerEntry{ID: "9", Kind: "topup", Minutes: 60, Cents: &cents, SessionID: &sid, RequestID: &rid, PaymentRef: &ref, At: at},
			`{"id":"9","kind":"topup","minutes":60,"cents":210,"session_id":"7","request_id":"req-1","payment_ref":"PAY-1","at":"2026-06-10T12:00:00.123456Z"}`},
		{"bare entry", jobs.LedgerEntry{ID: "9", Kind: "expire", Minutes: -60, At: at},
			`{"id":"9","kind":"expire","minutes":-60,"at":"2026-06-10T12:00:00.123456Z"}`},
		// expired_minutes is always there (0 without a cap): intake/openapi.yaml
		// lists it.
		{"statement", jobs.Statement{YearStartsAt: at, YearEndsAt: end, PurchasedMinutes: 1, UsedMinutes: 2, CarriedOverMinutes: 3},
			`{"year_starts_at":"2026-06-10T12:00:00.123456Z","year_ends_at":"2026-06-10T13:00:00.123456Z","purchased_minutes":1,"used_minutes":2,"carried_over_minutes":3,"expired_minutes":0}`},
		{"capped statement", jobs.Statement{YearStartsAt: at, YearEndsAt: end, PurchasedMinutes: 1, UsedMinutes: 2, CarriedOverMinutes: 3, ExpiredMinutes: 4},
			`{"year_starts_at":"2026-06-10T12:00:00.123456Z","year_ends_at":"2026-06-10T13:00:00.123456Z","purchased_minutes":1,"used_minutes":2,"carried_over_minutes":3,"expired_minutes":4}`},
		{"favourite", jobs.Favourite{Plate: "AB12CD", Name: "Oma", CreatedAt: at},
			`{"plate":"AB12CD","name":"Oma","created_at":"2026-06-10T12:00:00.123456Z"}`},
		{"quote", jobs.Quote{StartAt: at, PlannedEndAt: end, ReservedMinutes: 60, CostCents: 210, Notices: []domain.Notice{}},
			`{"start_at":"2026-06-10T12:00:00.123456Z","planned_end_at":"2026-06-10T13:00:00.123456Z","reserved_minutes":60,"cost_cents":210,"notices":[]}`},
		{"rejection", jobs.Rejection{Code: "invalid_plate", Message: "no"}, `{"code":"invalid_plate","message":"no"}`},
		{"applied outcome", jobs.Outcome{RequestID: "r1", Type: jobs.TypeSessionStart, Status: "applied", Result: json.RawMessage(`{"id": "7"}`)},
			`{"request_id":"r1","type":"session:start","status":"applied","result":{"id":"7"}}`},
		{"rejected outcome", jobs.Outcome{RequestID: "r1", Type: jobs.TypePermitTopup, Status: "rejected", Error: json.RawMessage(`{"code": "x", "message": "y"}`)},
			`{"request_id":"r1","type":"permit:topup","status":"rejected","error":{"code":"x","message":"y"}}`},
		{"pending outcome", jobs.Outcome{RequestID: "r1", Type: jobs.TypeSessionStop, Status: "pending"},
			`{"request_id":"r1","type":"session:stop","status":"pending"}`},
		{"the 202 of a pending write", jobs.Outcome{RequestID: "r1", Status: "pending"}, `{"request_id":"r1","status":"pending"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(b) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, b, c.want)
		}
	}
}
