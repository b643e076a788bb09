package domain

// Quote is what a start would do now (DOMAIN.md "Quote"): its plan, and what
// its reservation costs at the zone's tariff.
type Quote struct {
	SessionPlan
	CostCents int64
}

// QuoteSession answers a quote: exactly the decision PlanSession makes for the
// same request (the same rules, times, notices and rejections, from the same
// function), plus its cost, CostCents of the reserved minutes. It changes
// nothing; the caller reads the permit without locking it for a write, and
// gives the same PermitSessions a start would get.
func QuoteSession(z *Zone, p PermitState, req StartRequest) (Quote, error) {
	plan, err := PlanSession(z, p, req)
	if err != nil {
		return Quote{}, err
	}
	return Quote{SessionPlan: plan, CostCents: z.CostCents(plan.ReservedMinutes)}, nil
}
