package intake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

func TestSessionLifecycleThroughHTTP(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10) // 600 minutes

	var p jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &p)
	if p.BalanceMinutes != 600 || p.Status != "active" || p.Zone != e.zone || p.Year.PurchasedMinutes != 600 {
		t.Fatalf("permit after top-up = %+v", p)
	}

	key := uid("start")
	var s jobs.Session
	res := e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions", r.token, map[string]any{"plate": "ab-12-cd"},
		http.StatusCreated, &s, "Idempotency-Key", key)
	if s.Plate != "AB12CD" || s.Status != domain.StatusActive || s.ReservedMinutes != 180 || s.PermitID != r.permit {
		t.Fatalf("started session = %+v", s)
	}
	if res.Header.Get("X-Request-Id") != key {
		t.Fatalf("X-Request-Id = %q, want %q", res.Header.Get("X-Request-Id"), key)
	}

	var got jobs.Session
	e.mustDo("GET", "/v1/sessions/"+s.ID, r.token, nil, http.StatusOK, &got)
	if got.ID != s.ID || got.Status != domain.StatusActive {
		t.Fatalf("GET session = %+v", got)
	}
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions?status=active", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != s.ID {
		t.Fatalf("active sessions = %+v", list.Sessions)
	}
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions?status=stopped", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 0 {
		t.Fatalf("stopped sessions before the stop = %+v", list.Sessions)
	}

	// The outcome is readable by its requester.
	var out struct {
		RequestID, Type, Status string
		Result                  jobs.Session
	}
	e.mustDo("GET", "/v1/requests/"+key, r.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestApplied || out.Type != "session:start" || out.Result.ID != s.ID {
		t.Fatalf("outcome = %+v", out)
	}

	// Stop with an empty body: now.
	var st jobs.Session
	e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop", r.token, nil, http.StatusOK, &st)
	if st.Status != domain.StatusStopped || st.ChargedMinutes == nil || *st.ChargedMinutes != 1 {
		t.Fatalf("stopped session = %+v", st)
	}
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions?status=stopped", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("stopped sessions = %+v", list.Sessions)
	}
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("all sessions = %+v", list.Sessions)
	}
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &p)
	if p.BalanceMinutes != 599 || p.Year.UsedMinutes != 1 {
		t.Fatalf("permit after stop = %+v", p)
	}

	// The ledger: topup, reserve, release, charge; newest first, in pages of 3.
	var page struct {
		Entries []jobs.LedgerEntry
		Next    string
	}
	e.mustDo("GET", "/v1/permits/"+r.permit+"/ledger?limit=3", r.token, nil, http.StatusOK, &page)
	if len(page.Entries) != 3 || page.Next == "" {
		t.Fatalf("first ledger page = %+v", page)
	}
	kinds := []string{}
	sum := 0
	for _, en := range page.Entries {
		kinds = append(kinds, en.Kind)
		sum += en.Minutes
	}
	first := page.Entries
	next := page.Next
	page.Entries, page.Next = nil, ""
	e.mustDo("GET", "/v1/permits/"+r.permit+"/ledger?limit=3&before="+next, r.token, nil, http.StatusOK, &page)
	if len(page.Entries) != 1 || page.Next != "" || page.Entries[0].Kind != repo.LedgerTopup {
		t.Fatalf("second ledger page = %+v", page)
	}
	kinds = append(kinds, page.Entries[0].Kind)
	sum += page.Entries[0].Minutes
	if strings.Join(kinds, ",") != "charge,release,reserve,topup" && strings.Join(kinds, ",") != "release,charge,reserve,topup" {
		t.Fatalf("ledger kinds newest first = %v", kinds)
	}
	if sum != p.BalanceMinutes {
		t.Fatalf("sum of ledger = %d, balance = %d", sum, p.BalanceMinutes)
	}
	for i := 1; i < len(first); i++ {
		a, _ := repo.ParseID(first[i-1].ID)
		b, _ := repo.ParseID(first[i].ID)
		if a <= b {
			t.Fatalf("ledger not newest first: %s then %s", first[i-1].ID, first[i].ID)
		}
	}
	if first[len(first)-1].ID != next {
		t.Fatalf("next = %s, want the last entry's ID %s", next, first[len(first)-1].ID)
	}

	var stm struct{ Statements []jobs.Statement }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/statements", r.token, nil, http.StatusOK, &stm)
	if stm.Statements == nil || len(stm.Statements) != 0 {
		t.Fatalf("statements of a first-year permit = %+v", stm)
	}
	// The E-loket reads permits, ledgers and statements too.
	el := e.token(identity.RoleEloket, "eloket")
	e.mustDo("GET", "/v1/permits/"+r.permit, el, nil, http.StatusOK, nil)
	e.mustDo("GET", "/v1/permits/"+r.permit+"/ledger", el, nil, http.StatusOK, nil)
	e.mustDo("GET", "/v1/permits/"+r.permit+"/statements", el, nil, http.StatusOK, nil)
}

func TestPlannedSessionAndStopAt(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	start := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	s := e.startSession(r, "PLAN1", map[string]any{"start_at": start.Format(time.RFC3339), "end_at": start.Add(time.Hour).Format(time.RFC3339)})
	if s.Status != domain.StatusPlanned || !s.StartAt.Equal(start) || s.ReservedMinutes != 60 {
		t.Fatalf("planned session = %+v", s)
	}
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions?status=planned", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("planned = %+v", list)
	}
	// A stop before the start cancels it.
	var st jobs.Session
	e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop", r.token, map[string]any{}, http.StatusOK, &st)
	if st.Status != domain.StatusCancelled {
		t.Fatalf("stopped planned session = %+v", st)
	}
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions?status=cancelled", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("cancelled = %+v", list)
	}
	// A stop naming a future instant shortens an active session.
	a := e.startSession(r, "SHORT1", nil)
	at := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	e.mustDo("POST", "/v1/sessions/"+a.ID+"/stop", r.token, map[string]any{"at": at.Format(time.RFC3339)}, http.StatusOK, &st)
	if !st.PlannedEndAt.Equal(at) || st.Status != domain.StatusActive {
		t.Fatalf("shortened = %+v", st)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	key := uid("idem")
	path := "/v1/permits/" + r.permit + "/sessions?wait=10s"
	first := e.mustDo("POST", path, r.token, map[string]any{"plate": "IDEM1"}, http.StatusCreated, nil, "Idempotency-Key", key)
	again := e.mustDo("POST", path, r.token, map[string]any{"plate": "IDEM1"}, http.StatusCreated, nil, "Idempotency-Key", key)
	if !bytes.Equal(first.Body, again.Body) {
		t.Fatalf("same key, same body, different answers:\n%s\n%s", first.Body, again.Body)
	}
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("one request, %d sessions", len(list.Sessions))
	}
	// The same key with another body, or for another kind of request: 409.
	wantError(t, e.do("POST", path, r.token, map[string]any{"plate": "IDEM2"}, "Idempotency-Key", key),
		http.StatusConflict, intake.CodeIdempotencyConflict)
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/topups", r.token, map[string]any{"hours": 1, "payment_ref": "x"}, "Idempotency-Key", key),
		http.StatusConflict, intake.CodeIdempotencyConflict)
	// Another resident reusing the key: on the first resident's permit it is
	// refused before the key is looked at (403, even with a token naming that
	// permit); on its own permit it is another request: 409. Either way it
	// learns nothing of the first resident's request.
	other := e.resident(1)
	otherTok := e.token(identity.RoleResident, other.id, other.permit, r.permit)
	wantError(t, e.do("POST", path, otherTok, map[string]any{"plate": "IDEM1"}, "Idempotency-Key", key),
		http.StatusForbidden, intake.CodeForbidden)
	wantError(t, e.do("POST", "/v1/permits/"+other.permit+"/sessions?wait=10s", other.token, map[string]any{"plate": "IDEM1"}, "Idempotency-Key", key),
		http.StatusConflict, intake.CodeIdempotencyConflict)
	wantError(t, e.do("GET", "/v1/requests/"+key, other.token, nil), http.StatusForbidden, intake.CodeForbidden)
	// An operator sees every request.
	e.mustDo("GET", "/v1/requests/"+key, e.token(identity.RoleOperator, "op"), nil, http.StatusOK, nil)
	wantError(t, e.do("GET", "/v1/requests/"+uid("nope"), r.token, nil), http.StatusNotFound, intake.CodeNotFound)
}

func TestRuleRejectionIs422AndRecorded(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	key := uid("bad-plate")
	path := "/v1/permits/" + r.permit + "/sessions?wait=10s"
	first := e.do("POST", path, r.token, map[string]any{"plate": "NOT A PLATE!"}, "Idempotency-Key", key)
	wantError(t, first, http.StatusUnprocessableEntity, string(domain.CodeInvalidPlate))
	again := e.do("POST", path, r.token, map[string]any{"plate": "NOT A PLATE!"}, "Idempotency-Key", key)
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("repeat of a rejection: %s, first %s", again, first)
	}
	var out struct {
		Status string
		Error  struct{ Code, Message string }
	}
	e.mustDo("GET", "/v1/requests/"+key, r.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestRejected || out.Error.Code != string(domain.CodeInvalidPlate) {
		t.Fatalf("outcome = %+v", out)
	}
	// More rules, each with its own code.
	wantError(t, e.do("POST", path, r.token, map[string]any{"plate": "PAST1", "start_at": time.Now().Add(-time.Hour).Format(time.RFC3339)}),
		http.StatusUnprocessableEntity, string(domain.CodeStartInPast))
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/topups?wait=10s", r.token, map[string]any{"hours": 0, "payment_ref": "p"}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidTopup))
	e.startSession(r, "TWICE1", nil)
	wantError(t, e.do("POST", path, r.token, map[string]any{"plate": "twice-1"}),
		http.StatusUnprocessableEntity, string(domain.CodePlateAlreadyParked))
	poor := e.resident(0)
	wantError(t, e.do("POST", "/v1/permits/"+poor.permit+"/sessions?wait=10s", poor.token, map[string]any{"plate": "POOR1"}),
		http.StatusUnprocessableEntity, string(domain.CodeInsufficientBalance))
	// A permit that does not exist is no resident's, whatever its token names:
	// 403, as for another's permit (nobody learns which IDs exist).
	ghost := e.token(identity.RoleResident, "ghost", "999999")
	wantError(t, e.do("POST", "/v1/permits/999999/sessions?wait=10s", ghost, map[string]any{"plate": "GHOST1"}),
		http.StatusForbidden, intake.CodeForbidden)
}

func TestPendingThen202ThenOutcome(t *testing.T) {
	e := setup(t, options{noWorker: true})
	op, el := e.token(identity.RoleOperator, "op"), e.token(identity.RoleEloket, "eloket")
	e.mustDo("POST", "/v1/admin/addresses", op, map[string]any{"address_id": "ADDR-P", "zone": e.zone}, http.StatusCreated, nil)
	e.mustDo("POST", "/v1/admin/registrations", op, map[string]any{"resident_id": "RES-P", "address_id": "ADDR-P"}, http.StatusCreated, nil)

	// No worker runs: the answer must be 202 with where to look.
	res := e.do("POST", "/v1/permits?wait=0", el, map[string]any{"resident_id": "RES-P", "address_id": "ADDR-P"})
	if res.Status != http.StatusAccepted {
		t.Fatalf("got %s, want 202", res)
	}
	var pending struct {
		RequestID string `json:"request_id"`
		Status    string
	}
	_ = json.Unmarshal(res.Body, &pending)
	if pending.Status != "pending" || !strings.HasPrefix(pending.RequestID, "req_") {
		t.Fatalf("pending body = %s", res.Body)
	}
	loc := res.Header.Get("Location")
	if loc != "/v1/requests/"+pending.RequestID {
		t.Fatalf("Location = %q", loc)
	}
	var out struct{ Status string }
	e.mustDo("GET", loc, el, nil, http.StatusOK, &out)
	if out.Status != repo.RequestPending {
		t.Fatalf("outcome before the worker runs = %+v", out)
	}
	// A short wait with nothing happening also answers 202, after the wait.
	t0 := time.Now()
	res = e.do("POST", "/v1/permits?wait=300ms", el, map[string]any{"resident_id": "RES-P", "address_id": "ADDR-P"},
		"Idempotency-Key", pending.RequestID)
	if res.Status != http.StatusAccepted || time.Since(t0) < 300*time.Millisecond {
		t.Fatalf("wait=300ms: %s after %s", res, time.Since(t0))
	}

	e.start()
	deadline := time.Now().Add(10 * time.Second)
	for out.Status == repo.RequestPending && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		e.mustDo("GET", loc, el, nil, http.StatusOK, &out)
	}
	if out.Status != repo.RequestApplied {
		t.Fatalf("outcome after the worker ran = %+v", out)
	}
	// The repeat now answers the recorded outcome at once.
	e.mustDo("POST", "/v1/permits?wait=0", el, map[string]any{"resident_id": "RES-P", "address_id": "ADDR-P"},
		http.StatusCreated, nil, "Idempotency-Key", pending.RequestID)
}

func TestPermitIssueAndEnd(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(2)
	el := e.token(identity.RoleEloket, "eloket")
	// A second permit for the same address is refused by its rule.
	var p jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, el, nil, http.StatusOK, &p)
	wantError(t, e.do("POST", "/v1/permits?wait=10s", el, map[string]any{"resident_id": r.id, "address_id": p.AddressID}),
		http.StatusUnprocessableEntity, string(domain.CodePermitExistsForAddress))
	wantError(t, e.do("POST", "/v1/permits?wait=10s", el, map[string]any{"resident_id": "nobody", "address_id": p.AddressID}),
		http.StatusUnprocessableEntity, string(domain.CodeNotRegistered))
	wantError(t, e.do("POST", "/v1/permits?wait=10s", el, map[string]any{"resident_id": "nobody", "address_id": "no-such-address"}),
		http.StatusNotFound, intake.CodeNotFound)

	s := e.startSession(r, "END1", nil)
	var ended jobs.Permit
	e.mustDo("POST", "/v1/permits/"+r.permit+"/end?wait=10s", el, map[string]any{"reason": "moved"}, http.StatusOK, &ended)
	if ended.Status != "ended" || ended.BalanceMinutes != 0 || ended.EndedAt == nil {
		t.Fatalf("ended permit = %+v", ended)
	}
	var sv jobs.Session
	e.mustDo("GET", "/v1/sessions/"+s.ID, r.token, nil, http.StatusOK, &sv)
	if sv.Status != domain.StatusStopped {
		t.Fatalf("session after the permit ended = %+v", sv)
	}
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "LATE1"}),
		http.StatusUnprocessableEntity, string(domain.CodePermitNotActive))
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/end?wait=10s", el, map[string]any{}),
		http.StatusBadRequest, intake.CodeBadRequest, "reason")
}

func TestRoles(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	s := e.startSession(r, "ROLE1", nil)
	other := e.resident(10)
	otherSession := e.startSession(other, "ROLE2", nil)

	tok := map[string]string{
		identity.RoleResident:    r.token,
		identity.RoleEloket:      e.token(identity.RoleEloket, "eloket"),
		identity.RoleEnforcement: e.token(identity.RoleEnforcement, "scan-1"),
		identity.RoleOperator:    e.token(identity.RoleOperator, "op"),
	}
	rights := "/v1/rights?plate=ROLE1&zone=" + e.zone + "&place=permit_holder"
	type call struct {
		method, path string
		body         any
		ok           []string // the roles that may; every other role gets 403
	}
	calls := []call{
		{"POST", "/v1/permits/" + r.permit + "/sessions?wait=10s", map[string]any{"plate": "ROLE3"}, []string{identity.RoleResident}},
		{"GET", "/v1/sessions/" + s.ID, nil, []string{identity.RoleResident}},
		{"GET", "/v1/permits/" + r.permit + "/sessions", nil, []string{identity.RoleResident}},
		{"GET", "/v1/permits/" + r.permit, nil, []string{identity.RoleResident, identity.RoleEloket}},
		{"POST", "/v1/permits/" + r.permit + "/topups?wait=10s", map[string]any{"hours": 1, "payment_ref": uid("p")}, []string{identity.RoleResident}},
		{"GET", "/v1/permits/" + r.permit + "/ledger", nil, []string{identity.RoleResident, identity.RoleEloket}},
		{"GET", "/v1/permits/" + r.permit + "/statements", nil, []string{identity.RoleResident, identity.RoleEloket}},
		{"GET", "/v1/permits/" + r.permit + "/favourites", nil, []string{identity.RoleResident}},
		{"PUT", "/v1/permits/" + r.permit + "/favourites/ROLE4", map[string]any{"name": "Oma"}, []string{identity.RoleResident}},
		{"DELETE", "/v1/permits/" + r.permit + "/favourites/ROLE4", nil, []string{identity.RoleResident}},
		{"POST", "/v1/permits?wait=10s", map[string]any{"resident_id": "x", "address_id": "y"}, []string{identity.RoleEloket}},
		{"GET", rights, nil, []string{identity.RoleEnforcement}},
		{"PUT", "/v1/admin/zones/ROLES", map[string]any{"name": "R", "tariff_cents_per_hour": 100}, []string{identity.RoleOperator}},
		{"POST", "/v1/admin/addresses", map[string]any{"address_id": "role-addr", "zone": e.zone}, []string{identity.RoleOperator}},
		{"POST", "/v1/admin/registrations", map[string]any{"resident_id": "rr", "address_id": "role-addr"}, []string{identity.RoleOperator}},
		// Last: it ends the resident's permit.
		{"POST", "/v1/permits/" + other.permit + "/end?wait=10s", map[string]any{"reason": "test"}, []string{identity.RoleEloket}},
	}
	for _, c := range calls {
		for _, role := range []string{identity.RoleResident, identity.RoleEloket, identity.RoleEnforcement, identity.RoleOperator} {
			res := e.do(c.method, c.path, tok[role], c.body)
			allowed := false
			for _, a := range c.ok {
				allowed = allowed || a == role
			}
			if allowed {
				if res.Status >= 400 && res.Status != http.StatusUnprocessableEntity && res.Status != http.StatusNotFound {
					t.Errorf("%s %s as %s: %s, want success", c.method, c.path, role, res)
				}
				continue
			}
			if code, _ := res.errCode(); res.Status != http.StatusForbidden || code != intake.CodeForbidden {
				t.Errorf("%s %s as %s: %s, want 403 forbidden", c.method, c.path, role, res)
			}
			// Without a token: 401 for everyone.
			if role == identity.RoleResident {
				wantError(t, e.do(c.method, c.path, "", c.body), http.StatusUnauthorized, intake.CodeUnauthenticated)
			}
		}
	}

	// A resident reaches only its own permits and their sessions: 403 for
	// another's, whether or not it exists; 404 for a session that does not.
	for _, path := range []string{
		"/v1/permits/" + other.permit, "/v1/permits/" + other.permit + "/sessions",
		"/v1/permits/" + other.permit + "/ledger", "/v1/permits/" + other.permit + "/statements",
		"/v1/sessions/" + otherSession.ID, "/v1/permits/424242",
	} {
		wantError(t, e.do("GET", path, r.token, nil), http.StatusForbidden, intake.CodeForbidden)
	}
	wantError(t, e.do("POST", "/v1/permits/"+other.permit+"/sessions", r.token, map[string]any{"plate": "X1"}),
		http.StatusForbidden, intake.CodeForbidden)
	wantError(t, e.do("POST", "/v1/permits/"+other.permit+"/topups", r.token, map[string]any{"hours": 1, "payment_ref": "x"}),
		http.StatusForbidden, intake.CodeForbidden)
	wantError(t, e.do("POST", "/v1/sessions/"+otherSession.ID+"/stop", r.token, nil), http.StatusForbidden, intake.CodeForbidden)
	wantError(t, e.do("GET", "/v1/sessions/987654321", r.token, nil), http.StatusNotFound, intake.CodeNotFound)
	wantError(t, e.do("POST", "/v1/sessions/987654321/stop", r.token, nil), http.StatusNotFound, intake.CodeNotFound)
	wantError(t, e.do("GET", "/v1/sessions/not-an-id", r.token, nil), http.StatusNotFound, intake.CodeNotFound)
	// A permit that does not exist: 403 for a resident, even one whose token
	// names it; 404 for the E-loket, which may see any permit.
	ghost := e.token(identity.RoleResident, "ghost", "424242")
	wantError(t, e.do("GET", "/v1/permits/424242", ghost, nil), http.StatusForbidden, intake.CodeForbidden)
	wantError(t, e.do("GET", "/v1/permits/424242", tok[identity.RoleEloket], nil), http.StatusNotFound, intake.CodeNotFound)
}

func TestUnauthenticated(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(1)
	path := "/v1/permits/" + r.permit
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": r.id, "role": "resident", "permits": []string{r.permit}, "exp": time.Now().Add(time.Hour).Unix()}
	}
	// The valid token works, so each failure below is the variation's doing.
	e.mustDo("GET", path, sign(jwt.SigningMethodHS256, e.secret, valid()), nil, http.StatusOK, nil)

	expired := valid()
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	noExp := valid()
	delete(noExp, "exp")
	badRole := valid()
	badRole["role"] = "admin"
	noSub := valid()
	delete(noSub, "sub")
	numPermits := valid()
	numPermits["permits"] = []int{1}
	hs256 := sign(jwt.SigningMethodHS256, e.secret, valid())
	parts := strings.Split(hs256, ".")

	cases := map[string]string{
		"expired":         sign(jwt.SigningMethodHS256, e.secret, expired),
		"no expiry":       sign(jwt.SigningMethodHS256, e.secret, noExp),
		"wrong key":       sign(jwt.SigningMethodHS256, []byte("another-secret"), valid()),
		"alg none":        sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()),
		"HS512":           sign(jwt.SigningMethodHS512, e.secret, valid()),
		"unknown role":    sign(jwt.SigningMethodHS256, e.secret, badRole),
		"no sub":          sign(jwt.SigningMethodHS256, e.secret, noSub),
		"numeric permits": sign(jwt.SigningMethodHS256, e.secret, numPermits),
		"unsigned":        parts[0] + "." + parts[1] + ".",
		"garbage":         "not.a.token",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.do("GET", path, tok, nil), http.StatusUnauthorized, intake.CodeUnauthenticated)
		})
	}
	for _, h := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer "} {
		res := e.do("GET", path, "", nil, "Authorization", h)
		wantError(t, res, http.StatusUnauthorized, intake.CodeUnauthenticated)
		if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: %v", res.Header)
		}
	}
}

func TestBadRequests(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	start := "/v1/permits/" + r.permit + "/sessions"
	huge := `{"plate":"AB12CD","x":"` + strings.Repeat("a", intake.MaxBodyBytes) + `"}`
	cases := []struct {
		name, path, body, field string
		headers                 []string
	}{
		{"oversize body", start, huge, "body", nil},
		{"unknown field", start, `{"plate":"AB12CD","colour":"red"}`, "colour", nil},
		{"wrong type", start, `{"plate":12}`, "plate", nil},
		{"malformed JSON", start, `{"plate":"AB12CD"`, "body", nil},
		{"syntax error", start, `{"plate" "AB12CD"}`, "body", nil},
		{"not an object", start, `["AB12CD"]`, "body", nil},
		{"empty body", start, ``, "body", nil},
		{"two objects", start, `{"plate":"A1"}{"plate":"B2"}`, "body", nil},
		{"missing plate", start, `{}`, "plate", nil},
		{"malformed start_at", start, `{"plate":"AB12CD","start_at":"tomorrow"}`, "start_at", nil},
		{"start_at without zone", start, `{"plate":"AB12CD","start_at":"2026-03-01T14:00:00"}`, "start_at", nil},
		{"malformed end_at", start, `{"plate":"AB12CD","end_at":"2026-13-01T14:00:00Z"}`, "end_at", nil},
		{"start_at a number", start, `{"plate":"AB12CD","start_at":1700000000}`, "start_at", nil},
		{"non-UTF-8 plate", start, "{\"plate\":\"AB\xff\xfe12\"}", "plate", nil},
		{"lone surrogate plate", start, `{"plate":"AB\udc0012"}`, "plate", nil},
		{"bad wait", start + "?wait=soon", `{"plate":"AB12CD"}`, "wait", nil},
		{"negative wait", start + "?wait=-1s", `{"plate":"AB12CD"}`, "wait", nil},
		{"wait over max", start + "?wait=11s", `{"plate":"AB12CD"}`, "wait", nil},
		{"bad idempotency key", start, `{"plate":"AB12CD"}`, "Idempotency-Key", []string{"Idempotency-Key", "has spaces in it"}},
		{"empty idempotency key", start, `{"plate":"AB12CD"}`, "Idempotency-Key", []string{"Idempotency-Key", ""}},
		{"hours a string", "/v1/permits/" + r.permit + "/topups", `{"hours":"3","payment_ref":"p"}`, "hours", nil},
		{"hours a fraction", "/v1/permits/" + r.permit + "/topups", `{"hours":1.5,"payment_ref":"p"}`, "hours", nil},
		{"hours missing", "/v1/permits/" + r.permit + "/topups", `{"payment_ref":"p"}`, "hours", nil},
		{"stop at malformed", "", `{"at":"now"}`, "at", nil},
		{"NUL in plate", start, `{"plate":"AB\u000012"}`, "plate", nil},
		{"NUL in payment_ref", "/v1/permits/" + r.permit + "/topups", `{"hours":1,"payment_ref":"a\u0000b"}`, "payment_ref", nil},
	}
	s := e.startSession(r, "BAD1", nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/v1/sessions/" + s.ID + "/stop"
			}
			wantError(t, e.do("POST", path, r.token, c.body, c.headers...), http.StatusBadRequest, intake.CodeBadRequest, c.field)
		})
	}
	// Two Idempotency-Key headers: which one would be meant?
	t.Run("idempotency key twice", func(t *testing.T) {
		req, err := http.NewRequest("POST", e.srv.URL+start, strings.NewReader(`{"plate":"AB12CD"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Add("Idempotency-Key", "twice-a")
		req.Header.Add("Idempotency-Key", "twice-b")
		res, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		wantError(t, &resp{Status: res.StatusCode, Header: res.Header, Body: b}, http.StatusBadRequest, intake.CodeBadRequest, "Idempotency-Key")
	})
	// Nothing of a bad request reached the queue or the database.
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", start, r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("sessions after bad requests: %d, want 1", len(list.Sessions))
	}

	reads := []struct{ path, field string }{
		{start + "?status=parked", "status"},
		{"/v1/permits/" + r.permit + "/ledger?limit=0", "limit"},
		{"/v1/permits/" + r.permit + "/ledger?limit=501", "limit"},
		{"/v1/permits/" + r.permit + "/ledger?limit=ten", "limit"},
		{"/v1/permits/" + r.permit + "/ledger?before=x", "before"},
	}
	for _, c := range reads {
		wantError(t, e.do("GET", c.path, r.token, nil), http.StatusBadRequest, intake.CodeBadRequest, c.field)
	}
	el := e.token(identity.RoleEloket, "eloket")
	wantError(t, e.do("POST", "/v1/permits", el, `{"resident_id":"","address_id":"a"}`), http.StatusBadRequest, intake.CodeBadRequest, "resident_id")
	wantError(t, e.do("POST", "/v1/permits", el, `{"resident_id":"r","address_id":"`+strings.Repeat("a", 65)+`"}`), http.StatusBadRequest, intake.CodeBadRequest, "address_id")
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/end", el, `{"reason":"x","at":"yesterday"}`), http.StatusBadRequest, intake.CodeBadRequest, "at")
	// NUL (\u0000) is valid JSON but no field's text, and Postgres cannot hold it:
	// 400 naming the field on every body, queued or written directly (it was a
	// 500 on the admin endpoints, request_failed on queued writes).
	wantError(t, e.do("POST", "/v1/permits", el, `{"resident_id":"R\u0000X","address_id":"a"}`), http.StatusBadRequest, intake.CodeBadRequest, "resident_id")
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/end", el, `{"reason":"x\u0000y"}`), http.StatusBadRequest, intake.CodeBadRequest, "reason")
	op := e.token(identity.RoleOperator, "op")
	wantError(t, e.do("PUT", "/v1/admin/zones/ZY", op, `{"name":"a\u0000b","tariff_cents_per_hour":1}`), http.StatusBadRequest, intake.CodeBadRequest, "name")
	wantError(t, e.do("PUT", "/v1/admin/zones/ZY", op, `{"name":"a","tariff_cents_per_hour":1,"paid_hours":[{"days":["mon"],"from":"09:00","to":"1\u00007:00"}]}`),
		http.StatusBadRequest, intake.CodeBadRequest, "paid_hours[0].to")
	wantError(t, e.do("POST", "/v1/admin/addresses", op, `{"address_id":"A\u0000","zone":"TEST"}`), http.StatusBadRequest, intake.CodeBadRequest, "address_id")
	wantError(t, e.do("POST", "/v1/admin/registrations", op, `{"resident_id":"A\u0000","address_id":"a"}`), http.StatusBadRequest, intake.CodeBadRequest, "resident_id")

	// Not an endpoint, and not a method: the contract's error shape too.
	wantError(t, e.do("GET", "/v1/nothing", r.token, nil), http.StatusNotFound, intake.CodeNotFound)
	res := e.do("DELETE", "/v1/permits/"+r.permit, r.token, nil)
	wantError(t, res, http.StatusMethodNotAllowed, intake.CodeMethodNotAllowed)
	if !strings.Contains(res.Header.Get("Allow"), "GET") {
		t.Fatalf("405 Allow = %q", res.Header.Get("Allow"))
	}
}

func TestRights(t *testing.T) {
	e := setup(t, options{})
	op := e.token(identity.RoleOperator, "op")
	// OTHER's paid regime is every day 09:00-21:00 Amsterdam time; it is valid every day.
	e.mustDo("PUT", "/v1/admin/zones/OTHER", op, map[string]any{"name": "Other", "tariff_cents_per_hour": 100,
		"invalid_weekdays": []string{}, "paid_hours": []map[string]any{{"days": []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, "from": "09:00", "to": "21:00"}}},
		http.StatusOK, nil)
	r := e.resident(10)
	s := e.startSession(r, "RIGHT1", nil)
	enf := e.token(identity.RoleEnforcement, "scan-1")
	ask := func(q string) (out struct {
		Valid     bool
		Reason    string
		SessionID string `json:"session_id"`
		Plate     string
	}) {
		t.Helper()
		e.mustDo("GET", "/v1/rights?"+q, enf, nil, http.StatusOK, &out)
		return out
	}
	now := time.Now().UTC()
	if got := ask("plate=right-1&zone=TEST&place=permit_holder"); !got.Valid || got.Reason != domain.ReasonSession || got.SessionID != s.ID || got.Plate != "RIGHT1" {
		t.Fatalf("covered: %+v", got)
	}
	if got := ask("plate=RIGHT1&zone=TEST&place=short_stay"); got.Valid || got.Reason != domain.ReasonNotValidHere {
		t.Fatalf("short_stay: %+v", got)
	}
	if got := ask("plate=RIGHT1&zone=TEST&place=car_free"); got.Valid || got.Reason != domain.ReasonNotValidHere {
		t.Fatalf("car_free: %+v", got)
	}
	if got := ask("plate=NOBODY&zone=TEST&place=permit_holder"); got.Valid || got.Reason != domain.ReasonNoSession || got.SessionID != "" {
		t.Fatalf("no session: %+v", got)
	}
	// Another zone's permit does not count.
	if got := ask("plate=RIGHT1&zone=OTHER&place=permit_holder"); got.Valid || got.Reason != domain.ReasonNoSession {
		t.Fatalf("other zone: %+v", got)
	}
	// Before the session started, and after it ends.
	before := now.Add(-time.Hour).Format(time.RFC3339)
	if got := ask("plate=RIGHT1&zone=TEST&place=permit_holder&at=" + before); got.Valid {
		t.Fatalf("before the start: %+v", got)
	}
	after := s.PlannedEndAt.Add(time.Minute).Format(time.RFC3339)
	if got := ask("plate=RIGHT1&zone=TEST&place=permit_holder&at=" + after); got.Valid {
		t.Fatalf("after the end: %+v", got)
	}
	// A paid place outside the regime needs no session (03:00 Amsterdam).
	night := time.Date(2026, 3, 4, 3, 0, 0, 0, mustLoc(t, "Europe/Amsterdam")).Format(time.RFC3339)
	if got := ask("plate=NOBODY&zone=OTHER&place=paid&at=" + night); !got.Valid || got.Reason != domain.ReasonNoRightNeeded {
		t.Fatalf("paid at night: %+v", got)
	}
	noon := url.QueryEscape(time.Date(2026, 3, 4, 12, 0, 0, 0, mustLoc(t, "Europe/Amsterdam")).Format(time.RFC3339))
	if got := ask("plate=NOBODY&zone=OTHER&place=paid&at=" + noon); got.Valid || got.Reason != domain.ReasonNoSession {
		t.Fatalf("paid at noon: %+v", got)
	}
	// After a stop, the right ends with it.
	e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop", r.token, nil, http.StatusOK, nil)
	if got := ask("plate=RIGHT1&zone=TEST&place=permit_holder&at=" + time.Now().Add(time.Second).UTC().Format(time.RFC3339)); got.Valid {
		t.Fatalf("after the stop: %+v", got)
	}

	bad := []struct{ q, field string }{
		{"zone=TEST&place=paid", "plate"},
		{"plate=AB-12-CD-EF-GH-IJK&zone=TEST&place=paid", "plate"},
		{"plate=%D0%90B12&zone=TEST&place=paid", "plate"},
		{"plate=AB%E2%80%8B12&zone=TEST&place=paid", "plate"},
		{"plate=AB%FF&zone=TEST&place=paid", "plate"},
		{"plate=AB12&place=paid", "zone"},
		{"plate=AB12&zone=TEST&place=garden", "place"},
		{"plate=AB12&zone=TEST", "place"},
		{"plate=AB12&zone=TEST&place=paid&at=noon", "at"},
	}
	for _, c := range bad {
		wantError(t, e.do("GET", "/v1/rights?"+c.q, enf, nil), http.StatusBadRequest, intake.CodeBadRequest, c.field)
	}
	wantError(t, e.do("GET", "/v1/rights?plate=AB12&zone=NOWHERE&place=paid", enf, nil), http.StatusNotFound, intake.CodeNotFound)
	wantError(t, e.do("GET", "/v1/rights?plate=AB12&zone=no-such&place=paid", enf, nil), http.StatusNotFound, intake.CodeNotFound)
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestAdmin(t *testing.T) {
	e := setup(t, options{})
	op := e.token(identity.RoleOperator, "op")
	var z map[string]any
	e.mustDo("PUT", "/v1/admin/zones/CENTRUM", op, map[string]any{"name": "Centrum", "tariff_cents_per_hour": 210}, http.StatusOK, &z)
	if z["code"] != "CENTRUM" || z["time_zone"] != "Europe/Amsterdam" || fmt.Sprint(z["invalid_weekdays"]) != "[sat]" || z["max_session_minutes"].(float64) != 180 {
		t.Fatalf("zone with defaults = %v", z)
	}
	wantError(t, e.do("PUT", "/v1/admin/zones/CENTRUM", op, map[string]any{"name": "C", "tariff_cents_per_hour": 0}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidZone))
	wantError(t, e.do("PUT", "/v1/admin/zones/lower", op, map[string]any{"name": "C", "tariff_cents_per_hour": 10}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidZone))
	wantError(t, e.do("PUT", "/v1/admin/zones/CENTRUM", op, map[string]any{"name": "C", "tariff_cents_per_hour": 10, "time_zone": "Mars/Olympus"}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidZone))
	wantError(t, e.do("PUT", "/v1/admin/zones/CENTRUM", op, `{"name":"C","tariff_cents_per_hour":"210"}`),
		http.StatusBadRequest, intake.CodeBadRequest, "tariff_cents_per_hour")
	wantError(t, e.do("PUT", "/v1/admin/zones/CENTRUM", op, `{"name":"C","tariff_cents_per_hour":210,"colour":"red"}`),
		http.StatusBadRequest, intake.CodeBadRequest, "colour")
	wantError(t, e.do("PUT", "/v1/admin/zones/CENTRUM", op, `{"name":"C",`), http.StatusBadRequest, intake.CodeBadRequest, "body")

	// An address in no zone: a permit for it is refused by its rule.
	e.mustDo("POST", "/v1/admin/addresses", op, `{"address_id":"OUT-1","zone":null,"postcode":"1011AB","house_number":"1"}`, http.StatusCreated, nil)
	e.mustDo("POST", "/v1/admin/registrations", op, map[string]any{"resident_id": "R-OUT", "address_id": "OUT-1"}, http.StatusCreated, nil)
	e.mustDo("POST", "/v1/admin/registrations", op, map[string]any{"resident_id": "R-OUT", "address_id": "OUT-1"}, http.StatusCreated, nil)
	wantError(t, e.do("POST", "/v1/permits?wait=10s", e.token(identity.RoleEloket, "el"), map[string]any{"resident_id": "R-OUT", "address_id": "OUT-1"}),
		http.StatusUnprocessableEntity, string(domain.CodeAddressNotInZone))

	wantError(t, e.do("POST", "/v1/admin/addresses", op, `{"address_id":"A-2"}`), http.StatusBadRequest, intake.CodeBadRequest, "zone")
	wantError(t, e.do("POST", "/v1/admin/addresses", op, `{"address_id":"A-2","zone":7}`), http.StatusBadRequest, intake.CodeBadRequest, "zone")
	wantError(t, e.do("POST", "/v1/admin/addresses", op, `{"address_id":"A-2","zone":"NOWHERE"}`), http.StatusNotFound, intake.CodeNotFound)
	wantError(t, e.do("POST", "/v1/admin/registrations", op, `{"resident_id":"R","address_id":"no-such"}`), http.StatusNotFound, intake.CodeNotFound)
	wantError(t, e.do("POST", "/v1/admin/registrations", op, `{"resident_id":"R"}`), http.StatusBadRequest, intake.CodeBadRequest, "address_id")
}

func TestHealthMetricsAndOpenAPI(t *testing.T) {
	e := setup(t, options{})
	e.mustDo("GET", "/healthz", "", nil, http.StatusOK, nil)
	var ready struct {
		Ready  bool
		Checks map[string]string
	}
	e.mustDo("GET", "/readyz", "", nil, http.StatusOK, &ready)
	if !ready.Ready || ready.Checks["postgres"] != "ok" || ready.Checks["redis"] != "ok" {
		t.Fatalf("readyz = %+v", ready)
	}
	if res := e.mustDo("GET", "/metrics", "", nil, http.StatusOK, nil); !bytes.Contains(res.Body, []byte("go_goroutines")) {
		t.Fatalf("metrics: %.200s", res.Body)
	}
	res := e.mustDo("GET", "/v1/openapi.yaml", "", nil, http.StatusOK, nil)
	if !bytes.Equal(res.Body, intake.OpenAPI) {
		t.Fatal("served OpenAPI document differs from the embedded one")
	}
}

func TestRateLimited(t *testing.T) {
	e := setup(t, options{rate: 1, burst: 3})
	el := e.token(identity.RoleEloket, "busy")
	for i := 0; i < 3; i++ {
		wantError(t, e.do("GET", "/v1/permits/777", el, nil), http.StatusNotFound, intake.CodeNotFound)
	}
	res := e.do("GET", "/v1/permits/777", el, nil)
	wantError(t, res, http.StatusTooManyRequests, intake.CodeRateLimited)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// Another subject has its own bucket.
	wantError(t, e.do("GET", "/v1/permits/777", e.token(identity.RoleEloket, "calm"), nil), http.StatusNotFound, intake.CodeNotFound)
}

func TestPanicIsA500WithoutDetails(t *testing.T) {
	// A Server without a Store is a wiring bug: the handler panics on it.
	api := &intake.Server{Secret: []byte("k"), Log: quietLog(), RateLimit: -1}
	e := &env{t: t, secret: []byte("k"), hc: &http.Client{}}
	e.srv = httptest.NewServer(api.Handler())
	defer e.srv.Close()
	res := e.do("GET", "/v1/permits/1", e.token(identity.RoleEloket, "el"), nil)
	wantError(t, res, http.StatusInternalServerError, intake.CodeInternal)
	if bytes.Contains(res.Body, []byte("goroutine")) || bytes.Contains(res.Body, []byte(".go:")) {
		t.Fatalf("500 shows internals: %s", res.Body)
	}
}

// tbRecorder collects the errors a validating transport reports.
type tbRecorder struct {
	testing.TB
	errs []string
}

func (r *tbRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestOpenAPICheckCatchesDrift: the OpenAPI check of every answer is not a
// formality: an answer missing a field, or with an undocumented status, fails.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/sessions/1":
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"id":"1","status":"parked"}`))
		case "/v1/permits/1":
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(`{"error":{"code":"teapot","message":"no"}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no"}}`))
		}
	}))
	defer fake.Close()
	for path, bad := range map[string]bool{"/v1/sessions/1": true, "/v1/permits/1": true, "/v1/sessions/2": false} {
		rec := &tbRecorder{TB: t}
		hc := &http.Client{Transport: &validating{t: rec, next: http.DefaultTransport}}
		res, err := hc.Get(fake.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := len(rec.errs) > 0; got != bad {
			t.Errorf("%s: validation errors %v, want errors: %v", path, rec.errs, bad)
		}
	}
}

// A stop or a permit end naming an instant more than 60 seconds before the
// request was received is 422 and changes nothing: the right enforcement was
// told of stands.
func TestBackdatedEndsAreRefused(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	enf := e.token(identity.RoleEnforcement, "scan-1")
	start := time.Now().Add(-4 * time.Minute).UTC().Truncate(time.Second)
	s := e.startSession(r, "BACK-1", map[string]any{"start_at": start.Format(time.RFC3339)})
	valid := func(at time.Time) bool {
		t.Helper()
		var out struct{ Valid bool }
		e.mustDo("GET", "/v1/rights?plate=BACK1&zone=TEST&place=permit_holder&at="+url.QueryEscape(at.Format(time.RFC3339)), enf, nil, http.StatusOK, &out)
		return out.Valid
	}
	if !valid(start.Add(time.Minute)) {
		t.Fatal("the session's right is not there")
	}
	stopPath := "/v1/sessions/" + s.ID + "/stop?wait=10s"
	for _, at := range []time.Time{start, time.Now().Add(-90 * time.Second)} {
		wantError(t, e.do("POST", stopPath, r.token, map[string]any{"at": at.Format(time.RFC3339)}),
			http.StatusUnprocessableEntity, string(domain.CodeInvalidStopTime))
	}
	var got jobs.Session
	e.mustDo("GET", "/v1/sessions/"+s.ID, r.token, nil, http.StatusOK, &got)
	if got.Status != domain.StatusActive || got.ChargedMinutes != nil || !valid(start.Add(time.Minute)) {
		t.Fatalf("after refused stops: %+v", got)
	}
	at := time.Now().Add(-30 * time.Second).UTC().Truncate(time.Second)
	e.mustDo("POST", stopPath, r.token, map[string]any{"at": at.Format(time.RFC3339)}, http.StatusOK, &got)
	if got.Status != domain.StatusStopped || !got.EndAt.Equal(at) || *got.ChargedMinutes != domain.Minutes(at.Sub(start)) {
		t.Fatalf("stop 30 s back: %+v", got)
	}
	if !valid(start.Add(time.Minute)) {
		t.Fatal("the stopped session no longer covers its interval")
	}

	el := e.token(identity.RoleEloket, "eloket")
	other := e.resident(2)
	e.startSession(other, "BACK-2", nil)
	endPath := "/v1/permits/" + other.permit + "/end?wait=10s"
	wantError(t, e.do("POST", endPath, el, map[string]any{"reason": "moved", "at": time.Now().Add(-2 * time.Minute).Format(time.RFC3339)}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidEndTime))
	var p jobs.Permit
	e.mustDo("GET", "/v1/permits/"+other.permit, el, nil, http.StatusOK, &p)
	if p.Status != domain.PermitActive || p.Year.ReservedMinutes != 120 {
		t.Fatalf("a refused end changed the permit: %+v", p)
	}
	e.mustDo("POST", endPath, el, map[string]any{"reason": "moved"}, http.StatusOK, &p)
	if p.Status != domain.PermitEnded {
		t.Fatalf("end now: %+v", p)
	}
}

// One payment reference, one top-up in the whole system: on another permit or
// with other hours it is 422 payment_ref_reused (and recorded so); the same
// permit and hours under a new key is the same top-up, 201 with nothing added.
func TestPaymentRefUsedOnce(t *testing.T) {
	e := setup(t, options{})
	a, b := e.resident(0), e.resident(0)
	ref := uid("PAY-X")
	topup := func(r resident, hours int) *resp {
		t.Helper()
		return e.do("POST", "/v1/permits/"+r.permit+"/topups?wait=10s", r.token,
			map[string]any{"hours": hours, "payment_ref": ref}, "Idempotency-Key", uid("topup"))
	}
	var p jobs.Permit
	if res := topup(a, 2); res.Status != http.StatusCreated || json.Unmarshal(res.Body, &p) != nil || p.BalanceMinutes != 120 {
		t.Fatalf("first top-up: %s", res)
	}
	refused := topup(b, 2)
	wantError(t, refused, http.StatusUnprocessableEntity, string(domain.CodePaymentRefReused))
	wantError(t, topup(a, 3), http.StatusUnprocessableEntity, string(domain.CodePaymentRefReused))
	if res := topup(a, 2); res.Status != http.StatusCreated || json.Unmarshal(res.Body, &p) != nil || p.BalanceMinutes != 120 || p.Year.PurchasedMinutes != 120 {
		t.Fatalf("the same top-up again: %s", res)
	}
	e.mustDo("GET", "/v1/permits/"+b.permit, b.token, nil, http.StatusOK, &p)
	if p.BalanceMinutes != 0 {
		t.Fatalf("permit b was credited: %+v", p)
	}
	var out struct {
		Status string
		Error  struct{ Code string }
	}
	e.mustDo("GET", "/v1/requests/"+refused.Header.Get("X-Request-Id"), b.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestRejected || out.Error.Code != string(domain.CodePaymentRefReused) {
		t.Fatalf("recorded outcome of the refused top-up: %+v", out)
	}
}

// Plates as people type and paste them, with their country: accepted at start,
// shown with the country in every session answer and outcome, and found by the
// rights check in any spelling.
func TestPlatesWithCountryThroughHTTP(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	enf := e.token(identity.RoleEnforcement, "scan-1")
	de := e.startSession(r, "GÖ-AB 123", map[string]any{"country": "DE"})
	if de.Plate != "GOAB123" || de.Country != "DE" {
		t.Fatalf("German start: %+v", de)
	}
	ie := e.startSession(r, "132\u2013WW\u00a0123456", map[string]any{"country": "IE"})
	if ie.Plate != "132WW123456" || ie.Country != "IE" {
		t.Fatalf("Irish start: %+v", ie)
	}
	nl := e.startSession(r, "xk-12-ab", nil)
	if nl.Country != domain.DefaultCountry {
		t.Fatalf("start without a country: %+v", nl)
	}
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	countries := map[string]string{}
	for _, s := range list.Sessions {
		countries[string(s.Plate)] = s.Country
	}
	if countries["GOAB123"] != "DE" || countries["132WW123456"] != "IE" || countries["XK12AB"] != "NL" {
		t.Fatalf("session list: %+v", list.Sessions)
	}
	for q, country := range map[string]string{"g%C3%B6-ab+123": "DE", "GO%CC%88AB123": "DE", "132%E2%80%93WW%C2%A0123456": "IE", "132.WW.123456": "IE", "XK12AB": "NL"} {
		var out struct {
			Valid   bool
			Plate   string
			Country string
		}
		e.mustDo("GET", "/v1/rights?zone=TEST&place=permit_holder&plate="+q, enf, nil, http.StatusOK, &out)
		if !out.Valid || out.Country != country {
			t.Errorf("rights of %s: %+v, want valid, country %s", q, out, country)
		}
	}
	key := uid("country")
	res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "NEW-1", "country": "xx"},
		"Idempotency-Key", key)
	wantError(t, res, http.StatusUnprocessableEntity, string(domain.CodeInvalidCountry))
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "NEW-1", "country": "NLD"}),
		http.StatusUnprocessableEntity, string(domain.CodeInvalidCountry))
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "NEW-1", "country": 31}),
		http.StatusBadRequest, intake.CodeBadRequest, "country")
	// Same plate, another country, same zone: the plate is parked already.
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "GOAB123", "country": "AT"}),
		http.StatusUnprocessableEntity, string(domain.CodePlateAlreadyParked))
	// The outcome shows the session as the API does, country included.
	var out struct{ Result jobs.Session }
	stop := e.mustDo("POST", "/v1/sessions/"+de.ID+"/stop", r.token, nil, http.StatusOK, nil)
	e.mustDo("GET", "/v1/requests/"+stop.Header.Get("X-Request-Id"), r.token, nil, http.StatusOK, &out)
	if out.Result.Country != "DE" || out.Result.Plate != "GOAB123" {
		t.Fatalf("stop outcome: %+v", out.Result)
	}
	// The same key with another country is another request.
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "NEW-1", "country": "BE"},
		"Idempotency-Key", key), http.StatusConflict, intake.CodeIdempotencyConflict)
}
