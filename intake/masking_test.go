package intake_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
)

// An operator reading a request's outcome sees its plates masked but for the
// last two characters, as the console and the logs show them; the resident who
// made the request sees the full plate.
func TestOperatorReadsRequestsWithPlatesMasked(t *testing.T) {
	e := setup(t, options{})
	a, b := e.resident(5), e.resident(5)
	op := e.token(identity.RoleOperator, "op")
	key := uid("mask")
	e.mustDo("POST", "/v1/permits/"+a.permit+"/sessions?wait=10s", a.token, map[string]any{"plate": "xq-71-zv"},
		http.StatusCreated, nil, "Idempotency-Key", key)
	plate := func(tok string) (string, string) {
		t.Helper()
		var out outcome
		res := e.mustDo("GET", "/v1/requests/"+key, tok, nil, http.StatusOK, &out)
		var s jobs.Session
		if err := json.Unmarshal(out.Result, &s); err != nil {
			t.Fatal(err)
		}
		return string(s.Plate), string(res.Body)
	}
	if got, _ := plate(a.token); got != "XQ71ZV" {
		t.Errorf("the resident who made it reads %q, want the full plate", got)
	}
	got, body := plate(op)
	if got != "****ZV" || strings.Contains(body, "XQ71ZV") {
		t.Errorf("an operator reads %q in %s, want ****ZV and no full plate", got, body)
	}

	// A rejection that names the plate names it masked, for everyone.
	rej := uid("mask-rej")
	wantError(t, e.do("POST", "/v1/permits/"+b.permit+"/sessions?wait=10s", b.token, map[string]any{"plate": "XQ 71 ZV"}, "Idempotency-Key", rej),
		http.StatusUnprocessableEntity, string(domain.CodePlateAlreadyParked))
	res := e.mustDo("GET", "/v1/requests/"+rej, op, nil, http.StatusOK, nil)
	if strings.Contains(string(res.Body), "XQ71ZV") || !strings.Contains(string(res.Body), "****ZV") {
		t.Errorf("operator's view of the rejection: %s", res.Body)
	}
}
