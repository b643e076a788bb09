package intake_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// TestWriteAfterStartReadsNoHolder: a resident's stop or change right after
// its start is let through on the holder the start's answer left behind: the
// pair reads no permit's or session's holder from Postgres (issue 16), once
// the permit's holder is known (here from the resident's top-up).
func TestWriteAfterStartReadsNoHolder(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	for name, write := range map[string]func(e *env, s jobs.Session) *resp{
		"stop": func(e *env, s jobs.Session) *resp {
			return e.do("POST", "/v1/sessions/"+s.ID+"/stop?wait=10s", r.token, nil)
		},
		"change": func(e *env, s jobs.Session) *resp {
			return e.patch(s, r.token, map[string]any{"end_at": s.PlannedEndAt.Add(-time.Hour)})
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := e.in(t)
			before := e.api.HolderReads()
			s := e.startSession(r, plate(), nil)
			if res := write(e, s); res.Status != http.StatusOK {
				t.Fatalf("%s right after the start: %s", name, res)
			}
			if n := e.api.HolderReads() - before; n != 0 {
				t.Errorf("%d reads of a holder for a start and its %s, want none", n, name)
			}
		})
	}
}

// TestHolderNotFoundIsNotRemembered: a permit or session asked for before it
// exists (403 and 404, as ever) is found once it does: "not found" is never
// remembered. The IDs are the ones the next issue and start get (identity
// columns, one after another in the test's own database).
func TestHolderNotFoundIsNotRemembered(t *testing.T) {
	e := setup(t, options{})
	first := e.resident(5)

	t.Run("permit", func(t *testing.T) {
		e := e.in(t)
		id, _ := repo.ParseID(first.permit)
		next := repo.FormatID(id + 1)
		rid := uid("R")
		tok := e.token(identity.RoleResident, rid)
		calls := []struct {
			method, path string
			body         func() any
			ok           int
		}{
			{"GET", "/v1/permits/" + next, nil, http.StatusOK},
			{"POST", "/v1/permits/" + next + "/topups?wait=10s", func() any { return map[string]any{"hours": 1, "payment_ref": uid("pay")} }, http.StatusCreated},
			{"POST", "/v1/permits/" + next + "/sessions?wait=10s", func() any { return map[string]any{"plate": plate()} }, http.StatusCreated},
		}
		for _, c := range calls {
			var body any
			if c.body != nil {
				body = c.body()
			}
			wantError(t, e.do(c.method, c.path, tok, body), http.StatusForbidden, intake.CodeForbidden)
		}
		if r := e.residentAs(rid, 0); r.permit != next {
			t.Fatalf("the permit issued is %s, not %s: the test's guess of the next ID is wrong", r.permit, next)
		}
		for _, c := range calls {
			var body any
			if c.body != nil {
				body = c.body()
			}
			if res := e.do(c.method, c.path, tok, body); res.Status != c.ok {
				t.Errorf("%s %s once issued: %s, want %d", c.method, c.path, res, c.ok)
			}
		}
	})

	t.Run("session", func(t *testing.T) {
		e := e.in(t)
		id, _ := repo.ParseID(e.startSession(first, plate(), nil).ID)
		next := repo.FormatID(id + 1)
		stop := "/v1/sessions/" + next + "/stop?wait=10s"
		wantError(t, e.do("POST", stop, first.token, nil), http.StatusNotFound, intake.CodeNotFound)
		// Started without awaiting its outcome (202), so that no answer of
		// its start tells the intake about it.
		key := uid("start")
		e.mustDo("POST", "/v1/permits/"+first.permit+"/sessions?wait=0", first.token, map[string]any{"plate": plate()},
			http.StatusAccepted, nil, "Idempotency-Key", key)
		var out struct {
			Status string
			Result jobs.Session
		}
		for deadline := time.Now().Add(10 * time.Second); out.Status != repo.RequestApplied && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			e.mustDo("GET", "/v1/requests/"+key, first.token, nil, http.StatusOK, &out)
		}
		if out.Status != repo.RequestApplied || out.Result.ID != next {
			t.Fatalf("the start: %+v, want session %s applied", out, next)
		}
		before := e.api.HolderReads()
		e.mustDo("POST", stop, first.token, nil, http.StatusOK, nil)
		if n := e.api.HolderReads() - before; n != 1 {
			t.Errorf("%d reads of the session's holder, want 1: it was not remembered", n)
		}
	})
}

// TestOthersRefusedOnRememberedHolders: a permit's and a session's holder
// remembered by the intake still refuse everyone else with 403, as a fresh
// read would: another resident, and the holder itself through a token whose
// permits claim leaves that permit out.
func TestOthersRefusedOnRememberedHolders(t *testing.T) {
	e := setup(t, options{})
	a, b := e.resident(5), e.resident(5)
	s := e.startSession(a, plate(), nil) // a's permit and this session are remembered now
	narrowed := e.token(identity.RoleResident, a.id, b.permit)
	before := e.api.HolderReads()
	calls := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/permits/" + a.permit, nil},
		{"POST", "/v1/permits/" + a.permit + "/topups?wait=10s", map[string]any{"hours": 1, "payment_ref": uid("pay")}},
		{"POST", "/v1/permits/" + a.permit + "/sessions?wait=10s", map[string]any{"plate": plate()}},
		{"GET", "/v1/sessions/" + s.ID, nil},
		{"POST", "/v1/sessions/" + s.ID + "/stop?wait=10s", nil},
		{"PATCH", "/v1/sessions/" + s.ID + "?wait=10s", map[string]any{"end_at": s.PlannedEndAt.Add(-time.Hour)}},
	}
	for _, c := range calls {
		for name, tok := range map[string]struct{ token, says string }{
			"another resident":          {b.token, "you hold"},
			"the holder, narrowed away": {narrowed, "your token's permits"},
		} {
			res := e.do(c.method, c.path, tok.token, c.body)
			wantError(t, res, http.StatusForbidden, intake.CodeForbidden)
			if !strings.Contains(string(res.Body), tok.says) {
				t.Errorf("%s %s by %s: %s", c.method, c.path, name, res.Body)
			}
		}
	}
	if n := e.api.HolderReads() - before; n != 0 {
		t.Errorf("%d reads of a holder, want none: the refusals were not decided on the remembered holders", n)
	}
	// Nothing happened to a's session: its holder still stops it.
	var st jobs.Session
	e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop?wait=10s", a.token, nil, http.StatusOK, &st)
	if st.Status != domain.StatusStopped {
		t.Fatalf("a's stop: %+v", st)
	}
}
