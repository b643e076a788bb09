package intake_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// A request the database refuses for good (here a CHECK constraint on the
// plate, as the schema's 1-8 check would refuse a 9-12 character plate once the
// rules allow one) ends as 422 request_failed, recorded, readable at
// /v1/requests/{id}; before, it was retried for an hour and the client got 202.
// The message names the problem, not the plate nor the schema.
func TestRefusedForGoodIs422RequestFailed(t *testing.T) {
	ll := &lineLog{}
	e := setup(t, options{log: slog.New(slog.NewJSONHandler(ll, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	r := e.resident(5)
	if _, err := e.store.DB.ExecContext(e.ctx, "ALTER TABLE sessions ADD CONSTRAINT no_zz_plates CHECK (plate <> 'ZZ99ZZ')"); err != nil {
		t.Fatal(err)
	}
	key := uid("refused")
	res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "zz-99-zz"}, "Idempotency-Key", key)
	wantError(t, res, http.StatusUnprocessableEntity, string(domain.CodeRequestFailed))
	for _, leak := range []string{"ZZ99ZZ", "zz-99-zz", "no_zz_plates", "sessions"} {
		if strings.Contains(string(res.Body), leak) {
			t.Errorf("the answer shows %q: %s", leak, res.Body)
		}
	}
	if !strings.Contains(string(res.Body), "of a session") {
		t.Errorf("the answer does not say what was refused: %s", res.Body)
	}
	for _, tok := range []string{r.token, e.token(identity.RoleOperator, "op")} {
		var out outcome
		e.mustDo("GET", "/v1/requests/"+key, tok, nil, http.StatusOK, &out)
		if out.Status != repo.RequestRejected || out.Error == nil || out.Error.Code != string(domain.CodeRequestFailed) {
			t.Fatalf("outcome %+v", out)
		}
	}
	var balance jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &balance)
	if balance.BalanceMinutes != 300 {
		t.Fatalf("balance %d, want 300 untouched", balance.BalanceMinutes)
	}
	if raw, _ := ll.lines(t); strings.Contains(strings.ToUpper(raw), "ZZ99ZZ") || strings.Contains(strings.ToUpper(raw), "ZZ-99-ZZ") {
		t.Errorf("the log shows the plate:\n%s", grep(raw, "ZZ"))
	}
}
