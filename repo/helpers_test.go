package repo_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestMain runs the package's tests 8 at a time unless -parallel says
// otherwise: each waits on a Postgres database of its own, hardly on the CPU,
// so the default (GOMAXPROCS, 2 on a small machine) leaves them mostly
// waiting in line. They hold a handful of connections at a time.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given && runtime.GOMAXPROCS(0) < 8 {
		if err := flag.Set("test.parallel", "8"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// subtest is a case of a test that runs on a database of its own.
type subtest struct {
	name string
	run  func(t *testing.T)
}

// parallel runs the cases as subtests, in parallel with each other and with
// the package's other tests: each has a database of its own, so none can see
// another's rows or wait for its locks.
func parallel(t *testing.T, cases ...subtest) {
	t.Parallel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

// world is a test's own database (repotest.NewDB) with what most tests of
// repo start from: zones and permits made straight through the repo.
type world struct {
	t     *testing.T
	ctx   context.Context
	store *repo.Store
	zones map[string]*domain.Zone
	n     int
}

func newWorld(t *testing.T) *world {
	st, _ := repotest.NewDB(t)
	return &world{t: t, ctx: context.Background(), store: st, zones: map[string]*domain.Zone{}}
}

func (w *world) zone(code, tz, yearStarts string) *domain.Zone {
	w.t.Helper()
	z, err := domain.CompileZone(code, domain.ZoneSpec{Name: code, TimeZone: tz, TariffCentsPerHour: 100, YearStarts: yearStarts})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := repo.PutZone(w.ctx, w.store.DB, z); err != nil {
		w.t.Fatal(err)
	}
	w.zones[code] = z
	return z
}

// permit issues a permit in zone at the instant issued, with balance minutes
// bought (a top-up entry, so the ledger invariant holds).
func (w *world) permit(code string, issued time.Time, balance int) *repo.Permit {
	w.t.Helper()
	w.n++
	addr := fmt.Sprintf("A%d", w.n)
	if err := repo.PutAddress(w.ctx, w.store.DB, &repo.Address{ID: addr, Zone: &code}); err != nil {
		w.t.Fatal(err)
	}
	p, err := repo.InsertPermit(w.ctx, w.store.DB, w.zones[code], fmt.Sprintf("R%d", w.n), addr, fmt.Sprintf("issue-%d", w.n), issued)
	if err != nil {
		w.t.Fatal(err)
	}
	if balance > 0 {
		if err := repo.ApplyTopup(w.ctx, w.store.DB, p, domain.Topup{Minutes: balance, Cents: int64(balance)}, fmt.Sprintf("pay-%d", w.n), fmt.Sprintf("topup-%d", w.n), issued); err != nil {
			w.t.Fatal(err)
		}
	}
	return p
}

func (w *world) reload(p *repo.Permit) *repo.Permit {
	w.t.Helper()
	got, err := repo.GetPermit(w.ctx, w.store.DB, p.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	return got
}

func (w *world) statements(p *repo.Permit) []jobs.Statement {
	w.t.Helper()
	st, err := repo.PermitStatements(w.ctx, w.store.DB, p.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) checkLedger() {
	w.t.Helper()
	bad, err := repo.LedgerMismatches(w.ctx, w.store.DB)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(bad) > 0 {
		w.t.Fatalf("balance != sum(ledger): %+v", bad)
	}
}
