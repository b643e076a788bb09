package repo_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// insertSessionSQL writes a session of permit ?0 with plate ?1 from ?2 (open
// when ?3 is NULL, else stopped then) and the outcomes its start and stop
// would have recorded, both showing the plate.
const insertSessionSQL = `
WITH s AS (
	INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes,
	                      charged_minutes, request_id, settled_at)
	SELECT p.id, p.zone, ?1, CASE WHEN ?3::timestamptz IS NULL THEN 'open' ELSE 'stopped' END,
	       ?2::timestamptz, ?2::timestamptz + interval '2 hours', ?3::timestamptz, 120,
	       CASE WHEN ?3::timestamptz IS NULL THEN NULL ELSE 60 END, 'start-' || ?1,
	       ?3::timestamptz
	FROM permits p WHERE p.id = ?0
	RETURNING *
), r AS (
	INSERT INTO requests (request_id, type, body_hash, status, result)
	SELECT x.rid, x.typ, CASE x.typ WHEN 'session:start' THEN 'hash-' || s.plate ELSE 'hash-' || s.id END, 'applied',
	       jsonb_build_object('id', s.id::text, 'plate', s.plate, 'country', s.country, 'zone', s.zone)
	FROM s, (VALUES ('start-' || ?1, 'session:start'), ('stop-' || ?1, 'session:stop')) x(rid, typ)
)
SELECT id FROM s`

func TestErasePlatesOfSessionsEndedBeforeTheRetention(t *testing.T) {
	w := newWorld(t)
	w.zone("TEST", "Europe/Amsterdam", "01-01")
	issued := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	p := w.permit("TEST", issued, 600)
	cutoff := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	session := func(plate string, start time.Time, end *time.Time) int64 {
		var id int64
		if err := w.store.DB.NewRaw(insertSessionSQL, p.ID, plate, start, end).Scan(w.ctx, &id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	at := func(d time.Duration) *time.Time { e := cutoff.Add(d); return &e }
	var old []int64
	for _, plate := range []string{"OLDA1", "OLDB2", "OLDC3", "OLDD4", "OLDE5"} {
		old = append(old, session(plate, cutoff.Add(-5*time.Hour), at(-4*time.Hour)))
	}
	young := session("YOUNG1", cutoff.Add(-time.Hour), at(time.Minute))
	open := session("OPEN1", cutoff.Add(-time.Hour), nil)
	// An outcome of another kind naming the same ID is not a session's.
	if _, err := w.store.DB.ExecContext(w.ctx, `INSERT INTO requests (request_id, type, body_hash, status, result)
		VALUES ('issue-x', 'permit:issue', 'h', 'applied', jsonb_build_object('id', ?::text, 'resident_id', 'R1'))`, old[0]); err != nil {
		t.Fatal(err)
	}

	// Each session's events show its plate masked (two of each: a start and a stop).
	if _, err := w.store.DB.ExecContext(w.ctx, `INSERT INTO events (type, occurred_at, permit_id, session_id, data)
		SELECT t, now(), permit_id, id, jsonb_build_object('id', id::text, 'plate', '***' || right(plate, 2), 'status', 'x')
		FROM sessions, (VALUES ('session.started'), ('session.stopped')) x(t)`); err != nil {
		t.Fatal(err)
	}

	// Refused starts: no session, a hash of a fingerprint naming the plate.
	if _, err := w.store.DB.ExecContext(w.ctx, `INSERT INTO requests (request_id, type, body_hash, status, error, updated_at)
		VALUES ('refused-old', 'session:start', 'hash-OLDREFUSED', 'rejected', '{"code": "plate_already_parked"}', ?),
		       ('refused-young', 'session:change', 'hash-YOUNGREFUSED', 'rejected', '{"code": "plate_already_parked"}', ?)`,
		cutoff.Add(-time.Hour), cutoff.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	res, err := repo.ErasePlates(w.ctx, w.store.DB, cutoff, 2) // batches of 2: three statements, and one for the refusals
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions != 5 || res.Requests != 11 || res.Batches != 4 {
		t.Fatalf("erased %+v, want 5 sessions, 11 request rows in 4 batches", res)
	}
	for _, id := range old {
		s, err := repo.GetSession(w.ctx, w.store.DB, id)
		if err != nil || s.Plate != "" || s.Country != "NL" || *s.ChargedMinutes != 60 {
			t.Fatalf("session %d after retention: %+v (%v), want no plate, country and charge kept", id, s, err)
		}
		b, _ := json.Marshal(s.View(cutoff))
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil || v["plate"] != nil {
			t.Fatalf("answer %s, want plate null", b)
		}
	}
	for id, plate := range map[int64]string{young: "YOUNG1", open: "OPEN1"} {
		if s, err := repo.GetSession(w.ctx, w.store.DB, id); err != nil || s.Plate != plate {
			t.Fatalf("session %d: %+v (%v), want its plate %s kept", id, s, err, plate)
		}
	}
	var erasedEvents, keptEvents int
	if err := w.store.DB.NewRaw(`SELECT count(*) FILTER (WHERE data->'plate' = 'null'::jsonb AND data->>'status' = 'x' AND session_id IN (?)),
		count(*) FILTER (WHERE data->>'plate' IN ('***G1', '***N1') AND session_id NOT IN (?)) FROM events`, bun.In(old), bun.In(old)).
		Scan(w.ctx, &erasedEvents, &keptEvents); err != nil || erasedEvents != 10 || keptEvents != 4 {
		t.Fatalf("%d events' plates erased (want 10: the old sessions'), %d kept (want 4), %v", erasedEvents, keptEvents, err)
	}
	var leftovers []string
	if err := w.store.DB.NewRaw(`SELECT request_id FROM requests WHERE result::text ~ 'OLD' OR body_hash ~ 'OLD'`).Scan(w.ctx, &leftovers); err != nil || len(leftovers) != 0 {
		t.Fatalf("requests still naming an erased plate: %v (%v)", leftovers, err)
	}
	var erasedHashes, kept int
	if err := w.store.DB.NewRaw(`SELECT count(*) FILTER (WHERE body_hash = 'erased'), count(*) FILTER (WHERE result::text ~ 'YOUNG1|OPEN1' OR body_hash = 'hash-YOUNGREFUSED') FROM requests`).
		Scan(w.ctx, &erasedHashes, &kept); err != nil || erasedHashes != 6 || kept != 5 {
		t.Fatalf("%d hashes erased (want 5 starts and a refusal), %d young rows kept (want 5), %v", erasedHashes, kept, err)
	}
	var other jobs.Session
	r, err := repo.GetRequest(w.ctx, w.store.DB, "issue-x")
	if err != nil || json.Unmarshal(r.Result, &other) != nil || string(r.Result) == "" || r.BodyHash != "h" {
		t.Fatalf("permit outcome touched: %s %v", r.Result, err)
	}
	w.checkLedger()

	// An open session may not lose its plate, whoever tries.
	if _, err := w.store.DB.ExecContext(w.ctx, "UPDATE sessions SET plate = NULL WHERE id = ?", open); err == nil {
		t.Fatal("an open session's plate was erased")
	}
	// A second run finds nothing.
	if res, err := repo.ErasePlates(w.ctx, w.store.DB, cutoff, 2); err != nil || res.Sessions != 0 || res.Requests != 0 {
		t.Fatalf("second run %+v %v", res, err)
	}
}

// BenchmarkRetention1M erases the plates of 1,000,000 stopped sessions (100
// per permit over 10,000 permits), each with a start and a stop outcome that
// show the plate, as privacy:retention does: repo.ErasePlates in batches of
// repo.RetentionBatch. Meanwhile a start-like insert of an open session runs
// every 20ms, and its longest wait is reported beside the longest statement.
//
//	go test -run '^$' -bench BenchmarkRetention1M -benchtime 1x ./repo/
func BenchmarkRetention1M(b *testing.B) {
	const permits, per = 10_000, 100
	ctx := context.Background()
	st, _ := repotest.NewDB(b)
	db := st.DB
	if _, err := db.ExecContext(ctx, `INSERT INTO zones (code, name, time_zone, tariff_cents_per_hour, paid_hours,
		max_session_minutes, max_plan_ahead_days, annual_purchase_limit_hours, annual_usage_limit_hours, year_starts)
		VALUES ('BIG', 'Big', 'Europe/Amsterdam', 100, '{}', 1440, 30, 100, 100, '01-01')`); err != nil {
		b.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	setup := time.Now()
	for _, q := range []string{
		`INSERT INTO addresses (id, zone) SELECT 'B' || g, 'BIG' FROM generate_series(1, ?0) g`,
		`INSERT INTO permits (resident_id, address_id, zone, status, year_starts_at, year_ends_at, issued_at, request_id)
		 SELECT 'R' || g, 'B' || g, 'BIG', 'active', ?2, ?2::timestamptz + interval '1 year', ?2, 'issue-' || g
		 FROM generate_series(1, ?0) g`,
		`INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes,
		                      charged_minutes, request_id, settled_at)
		 SELECT p, 'BIG', 'P' || g, 'stopped', ?2::timestamptz + g * interval '10 seconds',
		        ?2::timestamptz + g * interval '10 seconds' + interval '2 hours',
		        ?2::timestamptz + g * interval '10 seconds' + interval '1 hour', 120, 60, 'start-' || g,
		        ?2::timestamptz + g * interval '10 seconds' + interval '1 hour'
		 FROM generate_series(1, ?0 * ?1) g, LATERAL (SELECT 1 + (g % ?0) AS p) x`,
		`INSERT INTO requests (request_id, type, body_hash, status, result)
		 SELECT x.pre || s.id, x.typ, md5(s.plate), 'applied',
		        jsonb_build_object('id', s.id::text, 'permit_id', s.permit_id::text, 'zone', s.zone, 'plate', s.plate,
		                           'country', s.country, 'status', 'stopped', 'reserved_minutes', 120, 'notices', '[]'::jsonb)
		 FROM sessions s, (VALUES ('start-', 'session:start'), ('stop-', 'session:stop')) x(pre, typ)`,
		`VACUUM ANALYZE sessions, requests`,
	} {
		if _, err := db.NewRaw(q, permits, per, base).Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("setup: %d sessions, %d outcomes in %s", permits*per, 2*permits*per, time.Since(setup).Round(time.Millisecond))
	cutoff := base.Add(time.Duration(permits*per)*10*time.Second + 2*time.Hour) // every session ended before

	// What the migrations' two indexes cost to build on this much (they are
	// built in its transaction, holding off writes to the table meanwhile).
	for _, ix := range []struct{ name, create string }{
		{"sessions_plate_due_ended", `CREATE INDEX sessions_plate_due_ended ON sessions ((least(end_at, settled_at)), id) WHERE plate IS NOT NULL AND state <> 'open'`},
		{"requests_session_plate", `CREATE INDEX requests_session_plate ON requests ((result->>'id')) WHERE jsonb_typeof(result->'plate') = 'string'`},
	} {
		if _, err := db.ExecContext(ctx, "DROP INDEX "+ix.name); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := db.ExecContext(ctx, ix.create); err != nil {
			b.Fatal(err)
		}
		b.Logf("migration: %s built in %s", ix.name, time.Since(t0).Round(time.Millisecond))
	}

	// Starts meanwhile: an open session on permit 1, one after another.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var worstStart time.Duration
	var starts int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			t0 := time.Now()
			if _, err := db.ExecContext(ctx, `INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at,
				reserved_minutes, request_id) VALUES (1, 'BIG', ?, 'open', ?, ?, 60, ?)`,
				"LIVE"+time.Now().Format("150405")+string(rune('A'+i%26)), cutoff.Add(time.Duration(i)*time.Hour),
				cutoff.Add(time.Duration(i)*time.Hour+time.Hour), "live"); err != nil {
				b.Error(err)
				return
			}
			worstStart = max(worstStart, time.Since(t0))
			starts++
		}
	}()
	b.ResetTimer()
	res, err := repo.ErasePlates(ctx, db, cutoff, repo.RetentionBatch)
	b.StopTimer()
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	if res.Sessions != permits*per || res.Requests != 2*permits*per {
		b.Fatalf("erased %+v, want %d sessions", res, permits*per)
	}
	b.Logf("retention: %d sessions, %d outcomes, %d statements in %s; longest statement %s; %d starts meanwhile, longest %s",
		res.Sessions, res.Requests, res.Batches, res.Total.Round(time.Millisecond), res.Longest.Round(time.Millisecond),
		starts, worstStart.Round(time.Millisecond))
	b.ReportMetric(res.Total.Seconds(), "s/retention")
	b.ReportMetric(float64(res.Longest.Milliseconds()), "ms-longest-statement")
	b.ReportMetric(float64(worstStart.Milliseconds()), "ms-longest-start")
}

// The retention's choice of sessions is a scan of the head of the index
// sessions_plate_due_ended (least(end_at, settled_at): when a session ended,
// a cancelled one at its cancellation), never a scan of the table, and in
// order of it; and a cancelled session planned days ahead is due from its
// cancellation on.
func TestRetentionReadsTheIndexOfWhenSessionsEnded(t *testing.T) {
	w := newWorld(t)
	ctx := w.ctx
	w.zone("TEST", "Europe/Amsterdam", "01-01")
	p := w.permit("TEST", time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC), 600)
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	// 20,000 stopped sessions, and one cancelled at base+1h with a planned
	// start (its end_at) a week later.
	if _, err := w.store.DB.ExecContext(ctx, `
		INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes,
		                      charged_minutes, request_id, settled_at)
		SELECT ?0, 'TEST', 'P' || g, 'stopped', ?1::timestamptz + g * interval '1 minute',
		       ?1::timestamptz + g * interval '1 minute' + interval '2 hours', ?1::timestamptz + g * interval '1 minute' + interval '1 hour',
		       120, 60, 'seed-' || g, ?1::timestamptz + g * interval '1 minute' + interval '1 hour'
		FROM generate_series(1, 20000) g;
		INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes,
		                      charged_minutes, request_id, settled_at)
		VALUES (?0, 'TEST', 'CANCELLED1', 'cancelled', ?1::timestamptz + interval '7 days', ?1::timestamptz + interval '7 days 2 hours',
		        ?1::timestamptz + interval '7 days', 120, 0, 'seed-cancelled', ?1::timestamptz + interval '1 hour');
		ANALYZE sessions`, p.ID, base); err != nil {
		t.Fatal(err)
	}
	cutoff := base.Add(2 * time.Hour)
	q, args := repo.ErasePlatesQuery(cutoff, 100)
	var plan []string
	if err := w.store.DB.NewRaw("EXPLAIN "+q, args...).Scan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "Index Scan using sessions_plate_due_ended on sessions s0") || strings.Contains(text, "Seq Scan on sessions s0") ||
		strings.Contains(text, "Sort") {
		t.Fatalf("the retention's choice is not an ordered index scan of sessions_plate_due_ended:\n%s", text)
	}
	res, err := repo.ErasePlates(ctx, w.store.DB, cutoff, 100)
	if err != nil {
		t.Fatal(err)
	}
	var cancelledPlate *string
	if err := w.store.DB.NewRaw("SELECT plate FROM sessions WHERE request_id = 'seed-cancelled'").Scan(ctx, &cancelledPlate); err != nil {
		t.Fatal(err)
	}
	// Sessions 1-60 ended (end_at = base + g min + 1 h) before base + 2 h,
	// and the one cancelled at base + 1 h.
	if cancelledPlate != nil || res.Sessions != 60 {
		t.Fatalf("erased %+v; the cancelled session's plate %v: want 60 sessions, the cancelled one among them", res, cancelledPlate)
	}
}
