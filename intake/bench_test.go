package intake_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/worker"
)

func fingerprintOf(t testing.TB, permitID, plate string) string {
	t.Helper()
	return jobs.SessionStart{PermitID: permitID, Plate: plate}.Fingerprint()
}

// seedSessions writes n sessions straight into the test database: n/4 plates
// B0000000…, each with one open session covering now (started an hour ago) and
// three settled ones on earlier days, the shape of a zone's history that the
// rights lookup has to skip through.
func seedSessions(t testing.TB, e *env, n int) {
	t.Helper()
	plates := max(n/4, 1)
	var permitID int64
	err := e.store.DB.NewRaw(`
		WITH a AS (INSERT INTO addresses (id, zone) VALUES ('SEED-ADDR', ?) RETURNING id)
		INSERT INTO permits (resident_id, address_id, zone, status, year_starts_at, year_ends_at, issued_at)
		SELECT 'seed', a.id, ?, 'active', now() - interval '30 days', now() + interval '335 days', now() - interval '30 days' FROM a
		RETURNING id`, e.zone, e.zone).Scan(e.ctx, &permitID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.store.DB.ExecContext(e.ctx, `
		INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at,
		                      reserved_minutes, charged_minutes, request_id, settled_at)
		SELECT ?, ?, 'B' || lpad((g % ?)::text, 7, '0'),
		       CASE WHEN g < ? THEN 'open' ELSE 'stopped' END,
		       now() - (g / ?) * interval '1 day' - interval '1 hour',
		       now() - (g / ?) * interval '1 day' + interval '2 hours',
		       CASE WHEN g < ? THEN NULL ELSE now() - (g / ?) * interval '1 day' + interval '1 hour' END,
		       180,
		       CASE WHEN g < ? THEN NULL ELSE 120 END,
		       'seed-' || g,
		       CASE WHEN g < ? THEN NULL ELSE now() - (g / ?) * interval '1 day' + interval '1 hour' END
		FROM generate_series(0, ? - 1) g`,
		permitID, e.zone, plates, plates, plates, plates, plates, plates, plates, plates, plates, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.DB.ExecContext(e.ctx, "ANALYZE sessions"); err != nil {
		t.Fatal(err)
	}
}

// latencies collects per-operation durations from many goroutines and reports
// their percentiles as benchmark metrics.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, unit time.Duration, name string) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	pct := func(p float64) float64 {
		return float64(l.d[min(int(p*float64(len(l.d))), len(l.d)-1)]) / float64(unit)
	}
	b.ReportMetric(pct(0.50), "p50-"+name)
	b.ReportMetric(pct(0.99), "p99-"+name)
}

// BenchmarkRights measures GET /v1/rights over HTTP against 10,000 sessions
// (2,500 plates), asking for a covered plate three times in four and an unknown
// plate otherwise, at several concurrencies (goroutines = parallelism ×
// GOMAXPROCS, reported as the "goroutines" metric).
//
//	go test -run '^$' -bench BenchmarkRights -benchtime 5s ./intake/
func BenchmarkRights(b *testing.B) {
	e := setup(b, options{noWorker: true, listenerDSN: "-", rate: -1})
	seedSessions(b, e, 10_000)
	enf := e.token(identity.RoleEnforcement, "scan-bench")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	// One check first, so that the benchmark cannot pass on wrong answers.
	e.mustDo("GET", "/v1/rights?plate=B0000042&zone="+e.zone+"&place=permit_holder", enf, nil, http.StatusOK, nil)
	var first struct{ Valid bool }
	e.mustDo("GET", "/v1/rights?plate=B0000042&zone="+e.zone+"&place=permit_holder", enf, nil, http.StatusOK, &first)
	if !first.Valid {
		b.Fatal("seeded plate B0000042 has no right")
	}

	// Warm up the connection pools (HTTP keep-alives, Postgres) to the highest
	// concurrency measured: dialing is not what is measured here.
	var warm sync.WaitGroup
	for range 16 * runtime.GOMAXPROCS(0) {
		warm.Go(func() {
			for range 5 {
				req, _ := http.NewRequest("GET", e.srv.URL+"/v1/rights?plate=B0000001&zone="+e.zone+"&place=permit_holder", nil)
				req.Header.Set("Authorization", "Bearer "+enf)
				if res, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		})
	}
	warm.Wait()

	for _, par := range []int{1, 4, 16} {
		goroutines := par * runtime.GOMAXPROCS(0)
		b.Run(fmt.Sprintf("http/goroutines=%d", goroutines), func(b *testing.B) {
			var lat latencies
			var n atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					i := n.Add(1)
					plate := fmt.Sprintf("B%07d", i%2500)
					if i%4 == 0 {
						plate = fmt.Sprintf("X%07d", i)
					}
					req, _ := http.NewRequest("GET", e.srv.URL+"/v1/rights?plate="+plate+"&zone="+e.zone+"&place=permit_holder", nil)
					req.Header.Set("Authorization", "Bearer "+enf)
					t0 := time.Now()
					res, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body) // drained, the connection is reused
					res.Body.Close()
					mine = append(mine, time.Since(t0))
					if res.StatusCode != http.StatusOK {
						b.Errorf("rights: %d", res.StatusCode)
						return
					}
				}
				lat.add(mine)
			})
			b.StopTimer()
			b.ReportMetric(float64(goroutines), "goroutines")
			lat.report(b, time.Microsecond, "µs")
		})
	}
	// The database part alone (RightsLookup: one round trip), no HTTP.
	b.Run("repo", func(b *testing.B) {
		var lat latencies
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				i := n.Add(1)
				t0 := time.Now()
				if _, _, _, err := e.store.RightsLookup(e.ctx, e.store.DB, fmt.Sprintf("B%07d", i%2500), e.zone, time.Now()); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			lat.add(mine)
		})
		lat.report(b, time.Microsecond, "µs")
	})
}

// BenchmarkSessionStart measures a session start through HTTP, from the request
// to its 201, with the real worker running and the outcome awaited through
// LISTEN/NOTIFY: serial is a lone client on an idle system, parallel several
// residents at once. It runs with the worker's TaskCheckInterval at parkd's
// default (10 ms) and at 1 ms: an idle asynq worker sleeps that long between
// looks at its queues, which is most of a lone request's latency.
//
//	go test -run '^$' -bench BenchmarkSessionStart -benchtime 400x ./intake/
func BenchmarkSessionStart(b *testing.B) {
	for _, check := range []time.Duration{worker.DefaultTaskCheckInterval, time.Millisecond} {
		e := setup(b, options{rate: -1, taskCheck: check})
		const residents = 8
		pool := make([]resident, residents)
		for i := range pool {
			pool[i] = e.resident(500) // 30,000 minutes: room for 30,000 one-minute sessions
		}
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		var plate atomic.Int64
		start := func(r resident) (time.Duration, error) {
			end := time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
			body := fmt.Sprintf(`{"plate":"S%07d","end_at":%q}`, plate.Add(1), end)
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/permits/"+r.permit+"/sessions?wait=10s", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+r.token)
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			res, err := hc.Do(req)
			if err != nil {
				return 0, err
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			d := time.Since(t0)
			if res.StatusCode != http.StatusCreated {
				return d, fmt.Errorf("start: %d", res.StatusCode)
			}
			return d, nil
		}
		// Warm up as many connections (HTTP, Postgres pool, Redis pool) as the
		// parallel run uses: a cold pool's dials are not what is measured here.
		var warm sync.WaitGroup
		for g := 0; g < 4*runtime.GOMAXPROCS(0); g++ {
			warm.Go(func() {
				for range 5 {
					if _, err := start(pool[g%residents]); err != nil {
						b.Error(err)
					}
				}
			})
		}
		warm.Wait()
		b.Run(fmt.Sprintf("check=%s/serial", check), func(b *testing.B) {
			var lat latencies
			mine := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				d, err := start(pool[i%residents])
				if err != nil {
					b.Fatal(err)
				}
				mine = append(mine, d)
			}
			lat.add(mine)
			lat.report(b, time.Millisecond, "ms")
		})
		b.Run(fmt.Sprintf("check=%s/parallel", check), func(b *testing.B) {
			var lat latencies
			var who atomic.Int64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				r := pool[int(who.Add(1))%residents]
				var mine []time.Duration
				for pb.Next() {
					d, err := start(r)
					if err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, d)
				}
				lat.add(mine)
			})
			b.ReportMetric(float64(4*runtime.GOMAXPROCS(0)), "goroutines")
			lat.report(b, time.Millisecond, "ms")
		})
		// The next round's Redis is this process's same test index: this
		// round's worker must not take its tasks.
		e.worker.Shutdown()
	}
}
