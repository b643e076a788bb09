package domain_test

import (
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
)

func TestIssueRules(t *testing.T) {
	ok := domain.IssueFacts{AddressKnown: true, AddressZone: "CENTRUM", Registered: true}
	tests := []struct {
		name string
		edit func(*domain.IssueFacts)
		code domain.Code
	}{
		{name: "all rules met", edit: func(*domain.IssueFacts) {}},
		{name: "unknown address", edit: func(f *domain.IssueFacts) { f.AddressKnown = false }, code: domain.CodeNotFound},
		{name: "not registered", edit: func(f *domain.IssueFacts) { f.Registered = false }, code: domain.CodeNotRegistered},
		{name: "address in no zone", edit: func(f *domain.IssueFacts) { f.AddressZone = "" }, code: domain.CodeAddressNotInZone},
		{name: "permit exists", edit: func(f *domain.IssueFacts) { f.ActivePermitExists = true }, code: domain.CodePermitExistsForAddress},
		// Order: an unknown address first, then the rules in the order of DOMAIN.md.
		{name: "unknown address wins over everything", edit: func(f *domain.IssueFacts) {
			*f = domain.IssueFacts{AddressKnown: false, ActivePermitExists: true}
		}, code: domain.CodeNotFound},
		{name: "not registered before no zone and existing permit", edit: func(f *domain.IssueFacts) {
			f.Registered, f.AddressZone, f.ActivePermitExists = false, "", true
		}, code: domain.CodeNotRegistered},
		{name: "no zone before existing permit", edit: func(f *domain.IssueFacts) {
			f.AddressZone, f.ActivePermitExists = "", true
		}, code: domain.CodeAddressNotInZone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok
			tt.edit(&f)
			wantCode(t, domain.CheckIssue(f), tt.code)
		})
	}
}

func TestTopupWholeHoursAndPurchaseLimit(t *testing.T) {
	z := centrum(t) // 210 cents an hour, 500 hours a year
	ten := zone(t, func(s *domain.ZoneSpec) { s.AnnualPurchaseLimitHours, s.TariffCentsPerHour = 10, 350 })
	const limit = 500 * 60
	bought := func(min int) domain.PermitState { return domain.PermitState{Active: true, PurchasedMinutes: min} }
	tests := []struct {
		name    string
		z       *domain.Zone
		p       domain.PermitState
		hours   int
		ref     string
		code    domain.Code
		minutes int
		cents   int64
	}{
		{name: "one hour", p: bought(0), hours: 1, minutes: 60, cents: 210},
		{name: "ten hours", p: bought(0), hours: 10, minutes: 600, cents: 2100},
		{name: "500 hours at once", p: bought(0), hours: 500, minutes: limit, cents: 105_000},
		{name: "last hour reaches the limit exactly", p: bought(limit - 60), hours: 1, minutes: 60, cents: 210},
		{name: "two hours with one left: rejected whole", p: bought(limit - 60), hours: 2, code: domain.CodeAnnualPurchaseLimit},
		{name: "limit reached", p: bought(limit), hours: 1, code: domain.CodeAnnualPurchaseLimit},
		{name: "501 hours at once", p: bought(0), hours: 501, code: domain.CodeAnnualPurchaseLimit},
		{name: "a minute short of an hour left", p: bought(limit - 59), hours: 1, code: domain.CodeAnnualPurchaseLimit},
		{name: "absurd hours do not overflow", p: bought(0), hours: 1 << 60, code: domain.CodeAnnualPurchaseLimit},
		{name: "absurd hours on a used year", p: bought(limit - 60), hours: 1 << 60, code: domain.CodeAnnualPurchaseLimit},
		{name: "zero hours", p: bought(0), hours: 0, code: domain.CodeInvalidTopup},
		{name: "negative hours", p: bought(0), hours: -1, code: domain.CodeInvalidTopup},
		{name: "very negative hours", p: bought(0), hours: -(1 << 60), code: domain.CodeInvalidTopup},
		{name: "empty payment reference", p: bought(0), hours: 1, ref: "-", code: domain.CodeInvalidTopup},
		{name: "blank payment reference", p: bought(0), hours: 1, ref: "   ", code: domain.CodeInvalidTopup},
		{name: "payment reference of 129", p: bought(0), hours: 1, ref: strings.Repeat("r", 129), code: domain.CodeInvalidTopup},
		{name: "payment reference of 128", p: bought(0), hours: 1, ref: strings.Repeat("r", 128), minutes: 60, cents: 210},
		{name: "ended permit", p: domain.PermitState{PurchasedMinutes: 0}, hours: 1, code: domain.CodePermitNotActive},
		{name: "ended permit, bad hours too", p: domain.PermitState{}, hours: 0, code: domain.CodePermitNotActive},
		{name: "other zone: tariff 350", z: ten, p: bought(0), hours: 3, minutes: 180, cents: 1050},
		{name: "other zone: its limit of 10 hours", z: ten, p: bought(0), hours: 10, minutes: 600, cents: 3500},
		{name: "other zone: 11 hours", z: ten, p: bought(0), hours: 11, code: domain.CodeAnnualPurchaseLimit},
		{name: "other zone: 1 hour over its limit", z: ten, p: bought(600), hours: 1, code: domain.CodeAnnualPurchaseLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zz := tt.z
			if zz == nil {
				zz = z
			}
			ref := tt.ref
			switch ref {
			case "":
				ref = "PSP-123"
			case "-":
				ref = ""
			}
			got, err := domain.PlanTopup(zz, tt.p, tt.hours, ref)
			if tt.code != "" && got != (domain.Topup{}) {
				t.Errorf("rejected top-up still returned %+v", got)
			}
			if !wantCode(t, err, tt.code) {
				return
			}
			if got.Minutes != tt.minutes || got.Cents != tt.cents {
				t.Errorf("top-up %+v, want %d minutes for %d cents", got, tt.minutes, tt.cents)
			}
			if got.Cents != int64(tt.hours)*zz.TariffCentsPerHour || got.Minutes != tt.hours*60 {
				t.Errorf("top-up %+v is not %d whole hours at %d cents", got, tt.hours, zz.TariffCentsPerHour)
			}
		})
	}
	if got := z.TopupCents(7); got != 1470 {
		t.Errorf("TopupCents(7) = %d, want 1470", got)
	}
}

// A payment reference is used once in the whole system: the same permit and
// hours again is the same top-up; another permit or other hours is
// payment_ref_reused.
func TestPaymentRefUsedOnce(t *testing.T) {
	tests := []struct {
		name   string
		prior  *domain.PriorPayment
		hours  int
		repeat bool
		code   domain.Code
	}{
		{name: "a new reference", prior: nil, hours: 10},
		{name: "same permit, same hours: the same top-up", prior: &domain.PriorPayment{SamePermit: true, Minutes: 600}, hours: 10, repeat: true},
		{name: "same permit, one hour more", prior: &domain.PriorPayment{SamePermit: true, Minutes: 600}, hours: 11, code: domain.CodePaymentRefReused},
		{name: "same permit, one hour less", prior: &domain.PriorPayment{SamePermit: true, Minutes: 600}, hours: 9, code: domain.CodePaymentRefReused},
		{name: "another permit, same hours", prior: &domain.PriorPayment{SamePermit: false, Minutes: 600}, hours: 10, code: domain.CodePaymentRefReused},
		{name: "another permit, other hours", prior: &domain.PriorPayment{SamePermit: false, Minutes: 60}, hours: 10, code: domain.CodePaymentRefReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repeat, err := domain.CheckPaymentRef(tt.prior, tt.hours)
			if wantCode(t, err, tt.code) && repeat != tt.repeat {
				t.Errorf("repeat = %v, want %v", repeat, tt.repeat)
			}
			if err != nil && repeat {
				t.Errorf("repeat along with an error")
			}
		})
	}
}
