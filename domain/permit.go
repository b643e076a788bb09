package domain

import "strings"

// Permit statuses.
const (
	PermitActive = "active"
	PermitEnded  = "ended"
)

// IssueFacts are what the issue rules look at; the repo gathers them under lock.
type IssueFacts struct {
	AddressKnown       bool
	AddressZone        string // "" when the address lies in no permit zone
	Registered         bool   // the resident is registered (BRP) at the address
	ActivePermitExists bool
}

// CheckIssue applies the issue rules of DOMAIN.md in their order.
func CheckIssue(f IssueFacts) error {
	switch {
	case !f.AddressKnown:
		return Reject(CodeNotFound, "address not found")
	case !f.Registered:
		return Reject(CodeNotRegistered, "the resident is not registered at this address")
	case f.AddressZone == "":
		return Reject(CodeAddressNotInZone, "the address lies in no permit zone")
	case f.ActivePermitExists:
		return Reject(CodePermitExistsForAddress, "the address already has an active visitor permit")
	}
	return nil
}

// MaxPaymentRefLen bounds a top-up's payment reference.
const MaxPaymentRefLen = 128

// PriorPayment is a top-up already booked under a payment reference, as the
// payment-reference rule sees it.
type PriorPayment struct {
	SamePermit bool // booked on the permit the new top-up names
	Minutes    int  // the minutes it bought
}

// CheckPaymentRef applies the rule that a payment reference is used once in the
// whole system. prior is the top-up already booked under the reference (nil:
// none). The same reference again for the same permit and hours is the same
// top-up, a repeat (an upstream app retrying under a new request ID): nothing is
// added, and the request is answered as the first was. For another permit or
// other hours it is payment_ref_reused: one payment never buys twice, and a
// repeat that differs is not silently taken for the first.
func CheckPaymentRef(prior *PriorPayment, hours int) (repeat bool, err error) {
	switch {
	case prior == nil:
		return false, nil
	case !prior.SamePermit:
		return false, Reject(CodePaymentRefReused, "this payment_ref already paid a top-up of another permit")
	case prior.Minutes != hours*60:
		return false, Reject(CodePaymentRefReused, "this payment_ref already paid a top-up of %d hours on this permit, not %d",
			prior.Minutes/60, hours)
	}
	return true, nil
}

// Topup is an accepted top-up.
type Topup struct {
	Minutes int
	Cents   int64
}

// PlanTopup applies the top-up rules: whole hours at the zone's tariff, and never
// past the annual purchase limit (a top-up that would cross it is refused whole).
func PlanTopup(z *Zone, p PermitState, hours int, paymentRef string) (Topup, error) {
	if !p.Active {
		return Topup{}, Reject(CodePermitNotActive, "the permit has ended")
	}
	if hours < 1 {
		return Topup{}, Reject(CodeInvalidTopup, "hours must be a whole number of at least 1, got %d", hours)
	}
	if strings.TrimSpace(paymentRef) == "" || len(paymentRef) > MaxPaymentRefLen {
		return Topup{}, Reject(CodeInvalidTopup, "payment_ref must be 1-%d characters", MaxPaymentRefLen)
	}
	limit := z.AnnualPurchaseLimitHours * 60
	if hours > z.AnnualPurchaseLimitHours || p.PurchasedMinutes+hours*60 > limit {
		return Topup{}, Reject(CodeAnnualPurchaseLimit,
			"buying %d hours would exceed the %d hours a permit year allows (%d minutes bought)",
			hours, z.AnnualPurchaseLimitHours, p.PurchasedMinutes)
	}
	return Topup{Minutes: hours * 60, Cents: z.TopupCents(hours)}, nil
}
