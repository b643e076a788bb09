package repo_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// BenchmarkRollover1M rolls over the permit years of 1,000,000 active permits
// (three in four in Amsterdam, ending 1 January; one in four in New York, ending
// 1 April), each with a balance and a top-up in the ledger, exactly as the
// nightly permit:rollover does: repo.RollOver in batches of repo.RolloverBatch.
// Setup (one INSERT ... SELECT generate_series per table) is not timed.
//
//	go test -run '^$' -bench BenchmarkRollover1M -benchtime 1x ./repo/
//
// It reports the seconds per rollover, permits per second, the peak resident
// memory of this Go process (VmHWM) and of the Postgres backends serving it.
func BenchmarkRollover1M(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	st, _ := repotest.NewDB(b)
	db := st.DB
	ams, err := domain.CompileZone("AMS", domain.ZoneSpec{Name: "Amsterdam", TariffCentsPerHour: 210})
	if err != nil {
		b.Fatal(err)
	}
	nyc, err := domain.CompileZone("NYC", domain.ZoneSpec{Name: "New York", TimeZone: "America/New_York", TariffCentsPerHour: 400, YearStarts: "04-01"})
	if err != nil {
		b.Fatal(err)
	}
	for _, z := range []*domain.Zone{ams, nyc} {
		if err := repo.PutZone(ctx, db, z); err != nil {
			b.Fatal(err)
		}
	}
	issued := time.Date(2026, time.June, 1, 12, 0, 0, 0, time.UTC)
	amsStart, amsEnd := ams.PermitYear(issued)
	nycStart, nycEnd := nyc.PermitYear(issued)
	now := time.Date(2027, time.June, 1, 0, 5, 0, 0, time.UTC) // both years ended, once

	setupStart := time.Now()
	for _, q := range []string{
		`INSERT INTO addresses (id, zone)
		 SELECT 'B' || g, CASE WHEN g % 4 = 0 THEN 'NYC' ELSE 'AMS' END FROM generate_series(1, ?0) g`,
		`INSERT INTO permits (resident_id, address_id, zone, status, balance_minutes, year_starts_at, year_ends_at,
		                      purchased_minutes, used_minutes, issued_at, request_id)
		 SELECT 'R' || g, 'B' || g, CASE WHEN g % 4 = 0 THEN 'NYC' ELSE 'AMS' END, 'active', (g % 50) * 60,
		        CASE WHEN g % 4 = 0 THEN ?1::timestamptz ELSE ?2::timestamptz END,
		        CASE WHEN g % 4 = 0 THEN ?3::timestamptz ELSE ?4::timestamptz END,
		        (g % 50) * 60, 0, ?5, 'bench-' || g
		 FROM generate_series(1, ?0) g`,
		`INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at)
		 SELECT id, 'topup', balance_minutes, balance_minutes * 4, 'pay-' || id, issued_at FROM permits WHERE balance_minutes > 0`,
	} {
		if _, err := db.NewRaw(q, n, nycStart, amsStart, nycEnd, amsEnd, issued).Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// As autovacuum would have, long before the night the years end.
	if _, err := db.ExecContext(ctx, "VACUUM ANALYZE permits, permit_years, zones"); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d permits in %s", n, time.Since(setupStart).Round(time.Millisecond))

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i > 0 {
			b.StopTimer()
			for _, q := range []string{
				"TRUNCATE permit_years",
				`UPDATE permits SET year_starts_at = CASE WHEN zone = 'NYC' THEN ?0::timestamptz ELSE ?1::timestamptz END,
				                    year_ends_at = CASE WHEN zone = 'NYC' THEN ?2::timestamptz ELSE ?3::timestamptz END`,
				"VACUUM ANALYZE permits, permit_years",
			} {
				if _, err := db.NewRaw(q, nycStart, amsStart, nycEnd, amsEnd).Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		start := time.Now()
		res, err := repo.RollOver(ctx, db, now, repo.RolloverBatch)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if res.Years != n || res.Left != 0 {
			b.Fatalf("rolled %+v, want %d years", res, n)
		}
	}
	b.StopTimer()

	var years int
	if err := db.NewRaw("SELECT count(*) FROM permit_years").Scan(ctx, &years); err != nil || years != n {
		b.Fatalf("%d statements (%v), want %d", years, err, n)
	}
	var wrong int
	if err := db.NewRaw(`SELECT count(*) FROM permits WHERE year_starts_at <> CASE WHEN zone = 'NYC' THEN ?0::timestamptz ELSE ?1::timestamptz END
		OR year_ends_at <> CASE WHEN zone = 'NYC' THEN ?2::timestamptz ELSE ?3::timestamptz END OR purchased_minutes <> 0`,
		nycEnd, amsEnd, nyc.NextYearEnd(nycEnd), ams.NextYearEnd(amsEnd)).Scan(ctx, &wrong); err != nil || wrong != 0 {
		b.Fatalf("%d permits with the wrong new year (%v)", wrong, err)
	}
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per, "s/rollover")
	b.ReportMetric(float64(n)/per, "permits/s")
	b.ReportMetric(float64(vmHWM(b, "self"))/1024, "go-peak-RSS-MB")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Sys)/(1<<20), "go-sys-MB")
	var pids []int
	if err := db.NewRaw("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").Scan(ctx, &pids); err == nil {
		peak := 0
		for _, pid := range pids {
			peak = max(peak, vmHWM(b, strconv.Itoa(pid)))
		}
		if peak > 0 {
			b.ReportMetric(float64(peak)/1024, "pg-backend-peak-RSS-MB")
		}
	}
}

// vmHWM reads the peak resident set size (kB) of a process from /proc; 0 when it
// cannot (another OS, or another user's process).
func vmHWM(b *testing.B, pid string) int {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}
