package jobs_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// Postgres's text cannot hold NUL, and no identifier, plate or reason contains
// it: a request naming one is a bad_request naming the field, found before
// anything is stored (in a constructor, or in the worker for a payload from
// elsewhere), never a database error.
func TestNULIsNotText(t *testing.T) {
	type window struct {
		From string `json:"from"`
	}
	type spec struct {
		Name    string              `json:"name"`
		Hours   []window            `json:"paid_hours"`
		Reg     *struct{ A string } `json:"registration"`
		Labels  map[string]string   `json:"labels"`
		skipped string
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"clean", spec{Name: "Centrum", Hours: []window{{From: "09:00"}}}, ""},
		{"top field", spec{Name: "a\x00b"}, "name"},
		{"list item", spec{Name: "x", Hours: []window{{From: "09:00"}, {From: "0\x00"}}}, "paid_hours[1].from"},
		{"pointer", spec{Reg: &struct{ A string }{A: "\x00"}}, "registration.A"},
		{"map value", spec{Labels: map[string]string{"k": "\x00"}}, "labels.k"},
		{"unexported ignored", spec{skipped: "\x00"}, ""},
		{"pointer to struct", &jobs.PermitTopup{RequestID: "r", PaymentRef: "PAY\x00"}, "payment_ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobs.NULField(tt.v); got != tt.want {
				t.Errorf("NULField = %q, want %q", got, tt.want)
			}
		})
	}
	now := time.Now()
	for _, req := range []jobs.Request{
		jobs.PermitTopup{RequestID: "t1", PermitID: "1", Hours: 1, PaymentRef: "a\x00b", ReceivedAt: now},
		jobs.PermitIssue{RequestID: "t2", ResidentID: "R\x00", AddressID: "A", ReceivedAt: now},
		jobs.PermitEnd{RequestID: "t3", PermitID: "1", Reason: "x\x00y", ReceivedAt: now},
		jobs.SessionStart{RequestID: "t4", PermitID: "1", Plate: "AB\x0012", ReceivedAt: now},
	} {
		err := jobs.Check(req)
		if rule, ok := domain.AsRule(err); !ok || rule.Code != domain.CodeBadRequest {
			t.Errorf("Check(%T) = %v, want bad_request", req, err)
		}
	}
	if _, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: "t5", PermitID: "1", Hours: 1, PaymentRef: "a\x00b"}); err == nil {
		t.Error("NewPermitTopup accepted a payment_ref with NUL")
	}
}
