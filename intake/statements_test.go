package intake_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// TestStatementShowsExpiredMinutes: in a zone with carry_over_max_hours 50, a
// permit with 80 hours left at its year's end has 30 expire at the rollover:
// the statement says so (expired_minutes, carried_over_minutes what really
// carried, validated against the OpenAPI document), the ledger has the expire
// entry, and the balance is the ledger's sum.
func TestStatementShowsExpiredMinutes(t *testing.T) {
	e := setup(t, options{})
	e.mustDo("PUT", "/v1/admin/zones/"+e.zone, e.token(identity.RoleOperator, "op"), map[string]any{
		"name": "Test", "tariff_cents_per_hour": 210, "invalid_weekdays": []string{}, "carry_over_max_hours": 50,
	}, http.StatusOK, nil)
	r := e.resident(80)
	now := time.Now().UTC()
	// The permit's year ended an hour ago, as if it had been issued a year back.
	if _, err := e.store.DB.NewRaw("UPDATE permits SET year_starts_at = ?, year_ends_at = ? WHERE id = ?",
		now.AddDate(-1, 0, 0), now.Add(-time.Hour), r.permit).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := repo.RollOver(e.ctx, e.store.DB, now, 0); err != nil || res.Years != 1 {
		t.Fatalf("rollover: %+v %v", res, err)
	}
	var st struct{ Statements []jobs.Statement }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/statements", r.token, nil, http.StatusOK, &st)
	if len(st.Statements) != 1 || st.Statements[0].ExpiredMinutes != 30*60 || st.Statements[0].CarriedOverMinutes != 50*60 ||
		st.Statements[0].PurchasedMinutes != 80*60 {
		t.Fatalf("statements %+v, want 80 h bought, 50 h carried, 30 h expired", st.Statements)
	}
	var ledger struct{ Entries []jobs.LedgerEntry }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/ledger", r.token, nil, http.StatusOK, &ledger)
	sum := 0
	for _, l := range ledger.Entries {
		sum += l.Minutes
	}
	if len(ledger.Entries) != 2 || ledger.Entries[0].Kind != repo.LedgerExpire || ledger.Entries[0].Minutes != -30*60 {
		t.Fatalf("ledger %+v, want the top-up and an expire entry of -30 h", ledger.Entries)
	}
	var p jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &p)
	if p.BalanceMinutes != 50*60 || sum != p.BalanceMinutes {
		t.Fatalf("balance %d, ledger sums to %d; want both 50 h", p.BalanceMinutes, sum)
	}
}
