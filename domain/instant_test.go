package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// Instants outside the years 2000-2199 (counted in UTC, as instants are stored)
// are bad requests (DOMAIN.md "Money and time, precisely").
func TestInstantsOutsideTheYears2000To2199AreBadRequests(t *testing.T) {
	minus12 := time.FixedZone("-12", -12*3600)
	plus1 := time.FixedZone("+01", 3600)
	tests := []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"the zero time (year 1)", time.Time{}, false},
		{"9999-12-31T23:59:59-12:00 (year 10000 in UTC)", time.Date(9999, 12, 31, 23, 59, 59, 0, minus12), false},
		{"last nanosecond of 1999", time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), false},
		{"2000-01-01T00:30+01:00 is 1999 in UTC", time.Date(2000, 1, 1, 0, 30, 0, 0, plus1), false},
		{"first instant of 2000", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"today", time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), true},
		{"last nanosecond of 2199", time.Date(2199, 12, 31, 23, 59, 59, 999999999, time.UTC), true},
		{"first instant of 2200", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"2199-12-31T23:30-01:00 is 2200 in UTC", time.Date(2199, 12, 31, 23, 30, 0, 0, time.FixedZone("-01", -3600)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.InstantInRange(tt.at); got != tt.ok {
				t.Fatalf("InstantInRange = %v, want %v", got, tt.ok)
			}
			err := domain.CheckInstant("start_at", tt.at)
			if tt.ok {
				wantCode(t, err, "")
				return
			}
			wantCode(t, err, domain.CodeBadRequest)
			if err != nil && !strings.Contains(err.Error(), "start_at") {
				t.Fatalf("%v does not name the field", err)
			}
		})
	}
}
