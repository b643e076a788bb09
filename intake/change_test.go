package intake_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
)

func (e *env) patch(s jobs.Session, token string, body map[string]any) *resp {
	e.t.Helper()
	return e.do("PATCH", "/v1/sessions/"+s.ID+"?wait=10s", token, body)
}

func (e *env) permitView(r resident) jobs.Permit {
	e.t.Helper()
	var pv jobs.Permit
	e.mustDo("GET", "/v1/permits/"+r.permit, r.token, nil, http.StatusOK, &pv)
	return pv
}

func noticeCodes(ns []domain.Notice) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Code)
	}
	return out
}

// PATCH /v1/sessions/{id}: extend (cut by the balance, with its notice),
// shorten (released at once), correct the plate within 2 minutes of the start
// and not after, and session_not_open for a stopped session whatever the body.
func TestChangeSessionThroughHTTP(t *testing.T) {
	e := setup(t, options{})
	now := time.Now().UTC().Truncate(time.Second)

	t.Run("ExtendCutByBalance", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(1) // 60 minutes
		s := e.startSession(r, "EXT-1", map[string]any{"start_at": now, "end_at": now.Add(30 * time.Minute)})
		var c jobs.Session
		if res := e.patch(s, r.token, map[string]any{"end_at": now.Add(2 * time.Hour)}); res.Status != http.StatusOK {
			t.Fatalf("extend: %s", res)
		} else if err := jsonInto(res, &c); err != nil {
			t.Fatal(err)
		}
		if !c.PlannedEndAt.Equal(now.Add(time.Hour)) || c.ReservedMinutes != 60 || c.Country != "NL" {
			t.Fatalf("extended: %+v, want an end at %s, 60 minutes", c, now.Add(time.Hour))
		}
		if codes := noticeCodes(c.Notices); len(codes) == 0 || codes[0] != domain.NoticeCutByBalance {
			t.Fatalf("notices %v, want %s", codes, domain.NoticeCutByBalance)
		}
		if pv := e.permitView(r); pv.BalanceMinutes != 0 || pv.Year.ReservedMinutes != 60 {
			t.Fatalf("permit after the extension: %+v", pv)
		}
	})

	t.Run("ShortenReleasesAtOnce", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(5)
		s := e.startSession(r, "SHORT-1", nil)
		var c jobs.Session
		e.mustDo("PATCH", "/v1/sessions/"+s.ID+"?wait=10s", r.token, map[string]any{"end_at": s.StartAt.Add(time.Hour)}, http.StatusOK, &c)
		if c.ReservedMinutes != 60 || !c.PlannedEndAt.Equal(s.StartAt.Add(time.Hour)) {
			t.Fatalf("shortened: %+v", c)
		}
		if pv := e.permitView(r); pv.BalanceMinutes != 240 {
			t.Fatalf("balance after shortening: %d, want 240", pv.BalanceMinutes)
		}
		var ledger struct{ Entries []jobs.LedgerEntry }
		e.mustDo("GET", "/v1/permits/"+r.permit+"/ledger", r.token, nil, http.StatusOK, &ledger)
		if l := ledger.Entries[0]; l.Kind != "release" || l.Minutes != 120 {
			t.Fatalf("newest ledger entry %+v, want a release of 120", l)
		}
	})

	t.Run("PlateCorrectionWindow", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(10)
		// Starts may lie up to 5 minutes back: one a minute ago, one four.
		recent := e.startSession(r, "TYPO-1", map[string]any{"start_at": time.Now().UTC().Add(-time.Minute)})
		old := e.startSession(r, "TYPO-2", map[string]any{"start_at": time.Now().UTC().Add(-4 * time.Minute)})
		var c jobs.Session
		e.mustDo("PATCH", "/v1/sessions/"+recent.ID+"?wait=10s", r.token, map[string]any{"plate": "ty-po 9"}, http.StatusOK, &c)
		if c.Plate != "TYPO9" || !c.PlannedEndAt.Equal(recent.PlannedEndAt) || c.ReservedMinutes != recent.ReservedMinutes {
			t.Fatalf("corrected: %+v", c)
		}
		wantError(t, e.patch(old, r.token, map[string]any{"plate": "TYPO8"}),
			http.StatusUnprocessableEntity, string(domain.CodePlateChangeWindowClosed))
		wantError(t, e.patch(recent, r.token, map[string]any{"plate": "TYPO-2"}),
			http.StatusUnprocessableEntity, string(domain.CodePlateAlreadyParked))
		wantError(t, e.patch(recent, r.token, map[string]any{"plate": "ТУРО1"}), // Cyrillic
			http.StatusUnprocessableEntity, string(domain.CodeInvalidPlate))
	})

	t.Run("SessionNotOpenBeforeAnyOtherCheck", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(5)
		s := e.startSession(r, "GONE-1", nil)
		e.mustDo("POST", "/v1/sessions/"+s.ID+"/stop?wait=10s", r.token, nil, http.StatusOK, nil)
		for _, body := range []map[string]any{
			{"end_at": time.Now().UTC().Add(time.Hour)},
			{"plate": "???"},
			{},
		} {
			wantError(t, e.patch(s, r.token, body), http.StatusUnprocessableEntity, string(domain.CodeSessionNotOpen))
		}
		open := e.startSession(r, "OPEN-1", nil)
		wantError(t, e.patch(open, r.token, map[string]any{}), http.StatusBadRequest, "bad_request")
		wantError(t, e.patch(open, r.token, map[string]any{"end_at": "tomorrow"}), http.StatusBadRequest, "bad_request", "end_at")
		wantError(t, e.patch(open, r.token, map[string]any{"colour": "red"}), http.StatusBadRequest, "bad_request")
	})

	t.Run("OnlyTheHoldersSessions", func(t *testing.T) {
		e := e.in(t)
		r, other := e.resident(5), e.resident(5)
		s := e.startSession(r, "MINE-1", nil)
		wantError(t, e.patch(s, other.token, map[string]any{"end_at": s.StartAt.Add(time.Hour)}), http.StatusForbidden, "forbidden")
		wantError(t, e.do("PATCH", "/v1/sessions/999999", r.token, map[string]any{"plate": "X"}), http.StatusNotFound, "not_found")
		enf := e.token(identity.RoleEnforcement, "scan")
		wantError(t, e.patch(s, enf, map[string]any{"plate": "X"}), http.StatusForbidden, "forbidden")
	})
}

// POST /v1/permits/{id}/quotes: the start's own decision, with its cost, and
// nothing written anywhere; a rule the start would break is its 422.
func TestQuoteThroughHTTP(t *testing.T) {
	e := setup(t, options{})

	t.Run("QuoteIsTheStartsDecision", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(5)
		at := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
		for _, body := range []map[string]any{
			{"plate": "QUO-1", "start_at": at},
			{"plate": "QUO-2", "country": "DE", "start_at": at, "end_at": at.Add(47 * time.Minute)},
		} {
			var q jobs.Quote
			e.mustDo("POST", "/v1/permits/"+r.permit+"/quotes", r.token, body, http.StatusOK, &q)
			var s jobs.Session
			e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &s)
			if !q.StartAt.Equal(s.StartAt) || !q.PlannedEndAt.Equal(s.PlannedEndAt) || q.ReservedMinutes != s.ReservedMinutes ||
				len(q.Notices) != len(s.Notices) {
				t.Fatalf("quote %+v, start %+v: want the same times, minutes and notices", q, s)
			}
			if want := (int64(q.ReservedMinutes)*210 + 59) / 60; q.CostCents != want {
				t.Fatalf("cost %d, want %d", q.CostCents, want)
			}
		}
		// The balance left covers 300-180-47 = 73 minutes: the quote cuts as the start.
		var q jobs.Quote
		e.mustDo("POST", "/v1/permits/"+r.permit+"/quotes", r.token, map[string]any{"plate": "QUO-3"}, http.StatusOK, &q)
		if q.ReservedMinutes != 73 || len(q.Notices) == 0 || q.Notices[0].Code != domain.NoticeCutByBalance {
			t.Fatalf("quote cut by the balance: %+v", q)
		}
	})

	t.Run("QuoteChangesNothing", func(t *testing.T) {
		e := e.in(t)
		r := e.resident(5)
		e.startSession(r, "BUSY-1", nil)
		other := e.resident(1)
		before := e.rowCounts()
		pv := e.permitView(r)
		var q jobs.Quote
		e.mustDo("POST", "/v1/permits/"+r.permit+"/quotes", r.token, map[string]any{"plate": "FREE-1"}, http.StatusOK, &q)
		wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/quotes", r.token, map[string]any{"plate": "BUSY-1"}),
			http.StatusUnprocessableEntity, string(domain.CodePlateAlreadyParked))
		wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/quotes", r.token, map[string]any{"plate": "FREE-1", "start_at": time.Now().Add(-time.Hour)}),
			http.StatusUnprocessableEntity, string(domain.CodeStartInPast))
		wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/quotes", r.token, map[string]any{"plate": 7}),
			http.StatusBadRequest, "bad_request", "plate")
		wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/quotes", other.token, map[string]any{"plate": "FREE-1"}),
			http.StatusForbidden, "forbidden")
		if after := e.rowCounts(); after != before {
			t.Fatalf("rows before a quote %+v, after %+v", before, after)
		}
		if after := e.permitView(r); after.BalanceMinutes != pv.BalanceMinutes || after.Year != pv.Year {
			t.Fatalf("permit before a quote %+v, after %+v", pv, after)
		}
	})

	t.Run("TooManySessions", func(t *testing.T) {
		c := *e.in(t)
		c.zone = "CAP1"
		c.mustDo("PUT", "/v1/admin/zones/CAP1", c.token(identity.RoleOperator, "op"), map[string]any{
			"name": "Cap", "tariff_cents_per_hour": 210, "invalid_weekdays": []string{}, "max_concurrent_sessions": 1,
		}, http.StatusOK, nil)
		r := c.resident(10)
		now := time.Now().UTC().Truncate(time.Second)
		first := c.startSession(r, "CAP-1", map[string]any{"end_at": now.Add(time.Hour)})
		body := map[string]any{"plate": "CAP-2", "end_at": now.Add(30 * time.Minute)}
		wantError(t, c.do("POST", "/v1/permits/"+r.permit+"/quotes", r.token, body),
			http.StatusUnprocessableEntity, string(domain.CodeTooManySessions))
		wantError(t, c.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body),
			http.StatusUnprocessableEntity, string(domain.CodeTooManySessions))
		later := c.startSession(r, "CAP-2", map[string]any{"start_at": now.Add(2 * time.Hour)})
		wantError(t, c.patch(first, r.token, map[string]any{"end_at": first.StartAt.Add(170 * time.Minute)}),
			http.StatusUnprocessableEntity, string(domain.CodeTooManySessions))
		// Up to the later one's start is one at a time.
		var moved jobs.Session
		c.mustDo("PATCH", "/v1/sessions/"+first.ID+"?wait=10s", r.token, map[string]any{"end_at": later.StartAt}, http.StatusOK, &moved)
		if !moved.PlannedEndAt.Equal(later.StartAt) {
			t.Fatalf("moved up to the next session: %+v", moved)
		}
	})
}

// rowCounts counts what a write would leave behind: in Postgres and in Redis.
type rowCounts struct{ sessions, ledger, requests, outbox, tasks int }

func (e *env) rowCounts() rowCounts {
	e.t.Helper()
	var c rowCounts
	for table, n := range map[string]*int{"sessions": &c.sessions, "ledger": &c.ledger, "requests": &c.requests, "outbox": &c.outbox} {
		v, err := e.store.DB.NewSelect().TableExpr(table).Count(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		*n = int(v)
	}
	// Every task asynq holds, in any queue and state, is a hash of its own.
	keys, err := e.rdb.Keys(e.ctx, "asynq:{*}:t:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	c.tasks = len(keys)
	return c
}

func jsonInto(r *resp, v any) error { return json.Unmarshal(r.Body, v) }
