package intake_test

import (
	"errors"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
)

// A resident's export holds its permits, sessions, ledger, statements and
// favourites; the resident itself or an operator may read it, nobody else.
// Erase is refused while a permit is active; once it ended, the plates of
// every session of the resident are gone from the sessions and their request
// outcomes (answers show plate null), and money and minutes stay.
func TestExportAndEraseResident(t *testing.T) {
	e := setup(t, options{})
	r, other := e.resident(4), e.resident(1)
	op, el := e.token(identity.RoleOperator, "op"), e.token(identity.RoleEloket, "eloket")
	s := e.startSession(r, "ERASEME1", nil)
	e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop?wait=10s", r.token, map[string]any{}, http.StatusOK, nil)
	e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/ERASEME2", r.token, map[string]any{"name": "Oma"}, http.StatusOK, nil)
	keep := e.startSession(other, "KEEPME1", nil)
	// Starts waiting in Redis for later (an upstream app's), one per resident.
	later := func(permit, plate string) string {
		task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: uid("later"), PermitID: permit, Plate: plate})
		if err != nil {
			t.Fatal(err)
		}
		info, err := e.client.Enqueue(task, asynq.ProcessIn(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	theirs, others := later(r.permit, "ERASEME3"), later(other.permit, "KEEPME2")
	ins := asynq.NewInspectorFromRedisClient(e.rdb)

	var ex jobs.Export
	e.mustDo("GET", "/v1/residents/"+r.id+"/export", r.token, nil, http.StatusOK, &ex)
	if ex.ResidentID != r.id || len(ex.Permits) != 1 || ex.Permits[0].ID != r.permit || len(ex.Sessions) != 1 ||
		ex.Sessions[0].Plate != "ERASEME1" || len(ex.Ledger[r.permit]) < 3 || len(ex.Favourites[r.permit]) != 1 {
		t.Fatalf("export = %+v", ex)
	}
	e.mustDo("GET", "/v1/residents/"+r.id+"/export", op, nil, http.StatusOK, nil)
	wantError(t, e.do("GET", "/v1/residents/"+r.id+"/export", other.token, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.do("GET", "/v1/residents/"+r.id+"/export", el, nil), http.StatusForbidden, "forbidden")
	wantError(t, e.do("POST", "/v1/residents/"+r.id+"/erase", r.token, nil), http.StatusForbidden, "forbidden")
	// A token narrowed by a permits claim to another permit sees nothing of
	// this one in the export either (it was shown the lot, plates included).
	narrowed := e.token(identity.RoleResident, r.id, other.permit)
	var thin jobs.Export
	e.mustDo("GET", "/v1/residents/"+r.id+"/export", narrowed, nil, http.StatusOK, &thin)
	if len(thin.Permits) != 0 || len(thin.Sessions) != 0 || len(thin.Favourites) != 0 || len(thin.Ledger) != 0 {
		t.Fatalf("export to a token narrowed to permit %s = %+v", other.permit, thin)
	}
	// A resident ID is text: NUL or a byte that is not UTF-8 is a 400 naming it.
	for _, bad := range []string{"%00x", "x%FF"} {
		wantError(t, e.do("GET", "/v1/residents/"+bad+"/export", op, nil), http.StatusBadRequest, "bad_request", "resident_id")
		wantError(t, e.do("POST", "/v1/residents/"+bad+"/erase", op, nil), http.StatusBadRequest, "bad_request", "resident_id")
	}

	// Active permit: refused, nothing erased.
	wantError(t, e.do("POST", "/v1/residents/"+r.id+"/erase", op, nil), http.StatusUnprocessableEntity, string(domain.CodePermitActive))
	var got jobs.Session
	e.mustDo("GET", "/v1/sessions/"+s.ID, r.token, nil, http.StatusOK, &got)
	if got.Plate != "ERASEME1" {
		t.Fatalf("refused erase erased %+v", got)
	}

	e.mustDo("POST", "/v1/permits/"+r.permit+"/end?wait=10s", el, map[string]any{"reason": "moved"}, http.StatusOK, nil)
	var erased struct {
		ErasedSessions int `json:"erased_sessions"`
	}
	e.mustDo("POST", "/v1/residents/"+r.id+"/erase", op, nil, http.StatusOK, &erased)
	if erased.ErasedSessions != 1 {
		t.Fatalf("erased %+v, want 1 session", erased)
	}
	e.mustDo("GET", "/v1/residents/"+r.id+"/export", op, nil, http.StatusOK, &ex)
	if len(ex.Sessions) != 1 || ex.Sessions[0].Plate != "" || ex.Sessions[0].ChargedMinutes == nil || len(ex.Favourites[r.permit]) != 0 ||
		len(ex.Ledger[r.permit]) < 3 {
		t.Fatalf("export after erase = %+v", ex)
	}
	var hits int
	if err := e.store.DB.NewRaw(`SELECT (SELECT count(*) FROM requests WHERE result::text LIKE '%ERASEME%' OR body_hash LIKE '%ERASEME%')
		+ (SELECT count(*) FROM sessions WHERE plate LIKE 'ERASEME%') + (SELECT count(*) FROM favourites WHERE plate LIKE 'ERASEME%')`).
		Scan(e.ctx, &hits); err != nil || hits != 0 {
		t.Fatalf("%d rows still hold an erased plate (%v)", hits, err)
	}
	if _, err := ins.GetTaskInfo(jobs.QueueCritical, theirs); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("the erased resident's task naming a plate is still in Redis: %v", err)
	}
	if _, err := ins.GetTaskInfo(jobs.QueueCritical, others); err != nil {
		t.Fatalf("another resident's task: %v", err)
	}
	e.mustDo("GET", "/v1/sessions/"+keep.ID, other.token, nil, http.StatusOK, &got)
	if got.Plate != "KEEPME1" {
		t.Fatalf("another resident's session lost its plate: %+v", got)
	}
	// Again: nothing more.
	e.mustDo("POST", "/v1/residents/"+r.id+"/erase", op, nil, http.StatusOK, &erased)
	if erased.ErasedSessions != 0 {
		t.Fatalf("second erase %+v", erased)
	}
}
