package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// The carry-over cap at rollover (DOMAIN.md "Carry-over cap"): the balance
// above the zone's carry_over_max_hours expires with an expire entry, in the
// statement that closes the year, on the nightly rollover and on use alike.
func TestRolloverCarryOverCap(t *testing.T) {
	parallel(t,
		subtest{"80 hours at a cap of 50: 30 expire", rolloverCapExpiresTheExcessOnce},
		subtest{"the SQL's cut is the domain's", rolloverCapSQLMatchesDomain},
		subtest{"on use it cuts as the nightly rollover does", rollPermitYearsCapsAsTheNightlyRollover},
		subtest{"a capped year's expiry and the end's write-off both book", cappedExpiryThenPermitEnd},
	)
}

// cappedZone stores a zone of Amsterdam whose years start on 1 January, with
// carry_over_max_hours hours (nil: no cap).
func (w *world) cappedZone(code string, hours *int) *domain.Zone {
	w.t.Helper()
	z, err := domain.CompileZone(code, domain.ZoneSpec{Name: code, TimeZone: "Europe/Amsterdam",
		TariffCentsPerHour: 100, CarryOverMaxHours: hours})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := repo.PutZone(w.ctx, w.store.DB, z); err != nil {
		w.t.Fatal(err)
	}
	w.zones[code] = z
	return z
}

// expiries are the permit's expire entries, newest first.
func (w *world) expiries(p *repo.Permit) []repo.LedgerEntry {
	w.t.Helper()
	rows, err := repo.LedgerPage(w.ctx, w.store.DB, p.ID, 0, 500)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []repo.LedgerEntry
	for _, e := range rows {
		if e.Kind == repo.LedgerExpire {
			out = append(out, e)
		}
	}
	return out
}

func hours(h int) *int { return &h }

// A balance of 80 hours at a cap of 50: the statement carries 50 and expires 30,
// one expire entry of -30 h at the rollover, the balance is 50 h and equals the
// ledger. A permit at or below the cap, and one in a zone without a cap, carry
// everything. A second rollover is a no-op; the year after, with the balance at
// the cap, nothing more expires.
func rolloverCapExpiresTheExcessOnce(t *testing.T) {
	w := newWorld(t)
	w.cappedZone("HAG", hours(50))
	w.cappedZone("AMS", nil)
	issued := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	over, at, uncapped := w.permit("HAG", issued, 80*60), w.permit("HAG", issued, 50*60), w.permit("AMS", issued, 80*60)
	now := time.Date(2027, time.January, 1, 3, 0, 0, 0, time.UTC)
	res, err := repo.RollOver(w.ctx, w.store.DB, now, 10)
	if err != nil || res.Years != 3 {
		t.Fatalf("rollover: %+v %v, want 3 years", res, err)
	}
	for _, c := range []struct {
		p                               *repo.Permit
		carried, expired, balance, nExp int
	}{
		{over, 50 * 60, 30 * 60, 50 * 60, 1},
		{at, 50 * 60, 0, 50 * 60, 0},
		{uncapped, 80 * 60, 0, 80 * 60, 0},
	} {
		st := w.statements(c.p)
		if len(st) != 1 || st[0].CarriedOverMinutes != c.carried || st[0].ExpiredMinutes != c.expired {
			t.Fatalf("permit %d (%s): statements %+v, want carried %d expired %d", c.p.ID, c.p.Zone, st, c.carried, c.expired)
		}
		if got := w.reload(c.p); got.BalanceMinutes != c.balance {
			t.Fatalf("permit %d: balance %d, want %d", c.p.ID, got.BalanceMinutes, c.balance)
		}
		exp := w.expiries(c.p)
		if len(exp) != c.nExp {
			t.Fatalf("permit %d: expire entries %+v, want %d", c.p.ID, exp, c.nExp)
		}
		if c.nExp == 1 && (exp[0].Minutes != -c.expired || !exp[0].At.Equal(now)) {
			t.Fatalf("permit %d: expire entry %+v, want %d minutes at %s", c.p.ID, exp[0], -c.expired, now)
		}
	}
	w.checkLedger()

	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 10); err != nil || res.Years != 0 {
		t.Fatalf("second rollover: %+v %v, want nothing", res, err)
	}
	if exp := w.expiries(over); len(exp) != 1 || w.reload(over).BalanceMinutes != 50*60 {
		t.Fatalf("second rollover expired again: %+v", exp)
	}

	// The year after: the balance is at the cap, nothing more expires; with 10
	// hours bought on top, those 10 expire.
	if err := repo.ApplyTopup(w.ctx, w.store.DB, w.reload(at), domain.Topup{Minutes: 600, Cents: 1000}, "pay-at-2027", "topup-at-2027", now); err != nil {
		t.Fatal(err)
	}
	next := time.Date(2028, time.January, 1, 3, 0, 0, 0, time.UTC)
	if res, err := repo.RollOver(w.ctx, w.store.DB, next, 10); err != nil || res.Years != 3 {
		t.Fatalf("next year's rollover: %+v %v", res, err)
	}
	if st := w.statements(over); len(st) != 2 || st[0].ExpiredMinutes != 0 || st[0].CarriedOverMinutes != 50*60 || len(w.expiries(over)) != 1 {
		t.Fatalf("a year at the cap: statements %+v", st)
	}
	if st := w.statements(at); len(st) != 2 || st[0].ExpiredMinutes != 600 || st[0].PurchasedMinutes != 600 || len(w.expiries(at)) != 1 {
		t.Fatalf("a year 10 hours above the cap: statements %+v", st)
	}
	w.checkLedger()
}

// The SQL's cut (sqlCarryOverExpired) is domain.Zone.CarryOver's: permits in
// zones capped at 0, 1 and 50 hours and in one without a cap, with balances
// around each cap, rolled over three missed years, each statement the domain's
// roll of the year before it.
func rolloverCapSQLMatchesDomain(t *testing.T) {
	w := newWorld(t)
	caps := map[string]*int{"CAP0": hours(0), "CAP1": hours(1), "CAP50": hours(50), "NOCAP": nil}
	issued := time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)
	var ps []*repo.Permit
	for code, h := range caps {
		w.cappedZone(code, h)
		for _, b := range []int{0, 1, 59, 60, 61, 119, 2999, 3000, 3001, 4800, 7 * 24 * 60} {
			ps = append(ps, w.permit(code, issued, b))
		}
	}
	now := time.Date(2028, time.February, 1, 0, 0, 0, 0, time.UTC)
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 7); err != nil || res.Left != 0 || res.Years != 3*len(ps) {
		t.Fatalf("rollover: %+v %v, want %d years", res, err, 3*len(ps))
	}
	for _, p := range ps {
		z := w.zones[p.Zone]
		st := w.statements(p)
		if len(st) != 3 {
			t.Fatalf("permit %d: %d statements, want 3", p.ID, len(st))
		}
		y := domain.YearState{StartsAt: p.YearStartsAt, EndsAt: p.YearEndsAt, BalanceMinutes: p.BalanceMinutes, PurchasedMinutes: p.PurchasedMinutes}
		expired := 0
		for i := len(st) - 1; i >= 0; i-- {
			want, next := domain.RollYear(z, y)
			if got := st[i]; !got.YearStartsAt.Equal(want.YearStartsAt) || got.PurchasedMinutes != want.PurchasedMinutes ||
				got.CarriedOverMinutes != want.CarriedOverMinutes || got.ExpiredMinutes != want.ExpiredMinutes {
				t.Fatalf("zone %s balance %d year %d: %+v, want %+v", p.Zone, p.BalanceMinutes, len(st)-i, got, want)
			}
			expired += want.ExpiredMinutes
			y = next
		}
		if got := w.reload(p); got.BalanceMinutes != y.BalanceMinutes {
			t.Fatalf("zone %s balance %d: now %d, want %d", p.Zone, p.BalanceMinutes, got.BalanceMinutes, y.BalanceMinutes)
		}
		sum := 0
		for _, e := range w.expiries(p) {
			sum -= e.Minutes
		}
		if sum != expired {
			t.Fatalf("zone %s balance %d: expire entries of %d minutes, statements say %d", p.Zone, p.BalanceMinutes, sum, expired)
		}
	}
	w.checkLedger()
}

// A request that rolls its permit's years itself (RollPermitYears) cuts the
// balance as the nightly rollover does: the same statements, the same expire
// entries, and the nightly rollover afterwards finds nothing.
func rollPermitYearsCapsAsTheNightlyRollover(t *testing.T) {
	w := newWorld(t)
	z := w.cappedZone("HAG", hours(50))
	issued := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	onUse, nightly := w.permit("HAG", issued, 80*60), w.permit("HAG", issued, 80*60)
	now := time.Date(2028, time.January, 1, 3, 0, 0, 0, time.UTC) // two years ended
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, err := repo.LockPermit(ctx, tx, onUse.ID)
		if err != nil {
			return err
		}
		_, err = repo.RollPermitYears(ctx, tx, z, locked, now)
		if err == nil && locked.BalanceMinutes != 50*60 {
			t.Errorf("reloaded permit: balance %d, want %d", locked.BalanceMinutes, 50*60)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 10); err != nil || res.Years != 2 {
		t.Fatalf("nightly: %+v %v, want only the other permit's 2 years", res, err)
	}
	a, b := w.statements(onUse), w.statements(nightly)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("statements %+v and %+v", a, b)
	}
	for i := range a {
		if a[i].CarriedOverMinutes != b[i].CarriedOverMinutes || a[i].ExpiredMinutes != b[i].ExpiredMinutes {
			t.Fatalf("on use %+v, nightly %+v", a[i], b[i])
		}
	}
	if a[1].ExpiredMinutes != 30*60 || a[0].ExpiredMinutes != 0 {
		t.Fatalf("on use: %+v, want 30 h expired in the first year, none in the second", a)
	}
	for _, p := range []*repo.Permit{onUse, nightly} {
		if exp := w.expiries(p); len(exp) != 1 || exp[0].Minutes != -30*60 || w.reload(p).BalanceMinutes != 50*60 {
			t.Fatalf("permit %d: expire entries %+v", p.ID, exp)
		}
	}
	w.checkLedger()
}

// A permit whose capped year expired minutes can still end: the end writes off
// the rest with an expire entry of its own (ledger_one_end_expiry_per_permit),
// beside the year's (ledger_one_expiry_per_permit_year), and deletes the
// permit's favourites in the same transaction. A second write-off of either
// kind is refused by the schema.
func cappedExpiryThenPermitEnd(t *testing.T) {
	w := newWorld(t)
	w.cappedZone("HAG", hours(50))
	p := w.permit("HAG", time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC), 80*60)
	now := time.Date(2027, time.January, 1, 3, 0, 0, 0, time.UTC)
	if _, err := repo.RollOver(w.ctx, w.store.DB, now, 10); err != nil {
		t.Fatal(err)
	}
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, err := repo.LockPermit(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		if _, err := repo.SaveFavourite(ctx, tx, p.ID, domain.Favourite{Plate: "AB12CD", Name: "Oma"}, now); err != nil {
			return err
		}
		return repo.EndPermit(ctx, tx, locked, domain.EndPlan{At: now, Reason: "moved"}, "end-1", now)
	})
	if err != nil {
		t.Fatal(err)
	}
	exp := w.expiries(p)
	if len(exp) != 2 || exp[0].Minutes != -50*60 || exp[1].Minutes != -30*60 || w.reload(p).BalanceMinutes != 0 {
		t.Fatalf("expire entries %+v, want -30 h at the rollover and -50 h at the end", exp)
	}
	if favs, err := repo.PermitFavourites(w.ctx, w.store.DB, p.ID); err != nil || len(favs) != 0 {
		t.Fatalf("the ended permit keeps favourites %+v (%v)", favs, err)
	}
	w.checkLedger()
	for _, q := range []string{
		"INSERT INTO ledger (permit_id, kind, minutes, at) VALUES (?, 'expire', 0, now())",
		"INSERT INTO ledger (permit_id, kind, minutes, at, year_starts_at) SELECT permit_id, 'expire', 0, now(), year_starts_at FROM permit_years WHERE permit_id = ?",
	} {
		if _, err := w.store.DB.NewRaw(q, p.ID).Exec(w.ctx); err == nil {
			t.Errorf("a second write-off was booked: %s", q)
		}
	}
}
