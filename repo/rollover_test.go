package repo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// The nightly rollover (RollOver) and its form on use (RollPermitYears): each
// case on a database of its own.
func TestRollover(t *testing.T) {
	parallel(t,
		subtest{"its years are the domain's across time zones", rolloverSQLMatchesDomainAcrossTimeZones},
		subtest{"in Santiago years end at the day's first instant", rolloverInSantiagoEndsYearsAtTheDaysFirstInstant},
		subtest{"after a zone change the running year stays", rolloverAfterAZoneChangeKeepsTheRunningYear},
		subtest{"batches skip locked permits and run again", rolloverBatchesSkipLockedAndRunsAgain},
		subtest{"on use it writes the nightly statement", rollPermitYearsIsTheRolloversStatement},
	)
}

// The rollover's years are the domain's: every year of every zone ends at the
// start of the local day of the anniversary (domain.DayStart), in summer and
// winter time, in zones east and west of UTC and south of the equator (where DST
// runs the other way), and where clocks change at midnight.
func rolloverSQLMatchesDomainAcrossTimeZones(t *testing.T) {
	w := newWorld(t)
	issued := time.Date(2026, time.February, 10, 12, 0, 0, 0, time.UTC)
	var ps []*repo.Permit
	for i, z := range []struct{ code, tz, starts string }{
		{"AMS", "Europe/Amsterdam", "01-01"},
		{"AMS_APR", "Europe/Amsterdam", "04-01"},
		{"AMS_MAR", "Europe/Amsterdam", "03-29"}, // on or next to the DST change some years
		{"NYC", "America/New_York", "03-13"},     // EST one year, EDT the next
		{"AKL", "Pacific/Auckland", "10-01"},
		{"KOL", "Asia/Kolkata", "07-01"}, // half-hour offset
		{"UTC", "UTC", "12-31"},
		// Clocks change at midnight: the day starts at 01:00 on a jump, at the
		// first of two midnights on a fall-back.
		{"SCL", "America/Santiago", "09-05"}, // 2027 and 2032: the jump
		{"HAV", "America/Havana", "11-01"},   // 2026: the fall-back
		{"BEI", "Asia/Beirut", "03-29"},      // 2026: the jump
		{"AZO", "Atlantic/Azores", "10-25"},  // 2026: the fall-back
	} {
		w.zone(z.code, z.tz, z.starts)
		ps = append(ps, w.permit(z.code, issued, 60*(i+1)))
	}
	now := time.Date(2034, time.June, 1, 0, 0, 0, 0, time.UTC)
	res, err := repo.RollOver(w.ctx, w.store.DB, now, 3)
	if err != nil || res.Left != 0 {
		t.Fatalf("rollover: %+v %v", res, err)
	}
	total := 0
	for _, p := range ps {
		z := w.zones[p.Zone]
		st := w.statements(p)
		if want := domain.YearsDue(z, p.YearEndsAt, now); len(st) != want {
			t.Fatalf("zone %s: %d statements, want %d", p.Zone, len(st), want)
		}
		total += len(st)
		// Oldest first, each year the domain's roll of the one before.
		y := domain.YearState{StartsAt: p.YearStartsAt, EndsAt: p.YearEndsAt, BalanceMinutes: p.BalanceMinutes, PurchasedMinutes: p.PurchasedMinutes}
		for i := len(st) - 1; i >= 0; i-- {
			want, next := domain.RollYear(z, y)
			got := st[i]
			if !got.YearStartsAt.Equal(want.YearStartsAt) || !got.YearEndsAt.Equal(want.YearEndsAt) ||
				got.PurchasedMinutes != want.PurchasedMinutes || got.UsedMinutes != want.UsedMinutes || got.CarriedOverMinutes != want.CarriedOverMinutes {
				t.Fatalf("zone %s year %d: %+v, want %+v", p.Zone, len(st)-i, got, want)
			}
			if lt := got.YearEndsAt.In(z.Location); !got.YearEndsAt.Equal(domain.DayStart(z.Location, lt.Year(), z.YearStarts.Month, z.YearStarts.Day)) {
				t.Fatalf("zone %s: a year ends at %s local, not at the start of %s", p.Zone, lt, z.YearStarts)
			}
			y = next
		}
		a := w.reload(p)
		if !a.YearStartsAt.Equal(y.StartsAt) || !a.YearEndsAt.Equal(y.EndsAt) || a.PurchasedMinutes != 0 || a.BalanceMinutes != p.BalanceMinutes {
			t.Fatalf("zone %s current year [%s, %s) bought %d, want [%s, %s)", p.Zone, a.YearStartsAt, a.YearEndsAt, a.PurchasedMinutes, y.StartsAt, y.EndsAt)
		}
		if !a.YearEndsAt.After(now) || a.YearStartsAt.After(now) {
			t.Fatalf("zone %s: current year [%s, %s) does not contain %s", p.Zone, a.YearStartsAt, a.YearEndsAt, now)
		}
	}
	if res.Years != total {
		t.Fatalf("reported %d years closed, %d statements written", res.Years, total)
	}
	w.checkLedger()
}

// The rollover of a zone whose clocks jump over midnight on the anniversary: the
// year that ends at 01:00 -03 on 5 September 2027 in Santiago is followed by one
// ending at 00:00 -03 on 5 September 2028, not at 01:00 (the old end's wall
// clock a year on, which is what Postgres's AT TIME ZONE + interval '1 year'
// gives), and the permit issued there ends its first year at 01:00, not at 23:00
// the evening before.
func rolloverInSantiagoEndsYearsAtTheDaysFirstInstant(t *testing.T) {
	w := newWorld(t)
	w.zone("SCL", "America/Santiago", "09-05")
	jump := time.Date(2027, time.September, 5, 4, 0, 0, 0, time.UTC) // 01:00 -03
	issued := w.permit("SCL", time.Date(2027, time.June, 1, 12, 0, 0, 0, time.UTC), 60)
	if !issued.YearEndsAt.Equal(jump) {
		t.Errorf("issued: year ends %s, want %s (01:00 -03)", issued.YearEndsAt.UTC(), jump)
	}
	// The rollover on its own, from a year with the right bounds.
	p := w.permit("SCL", time.Date(2027, time.June, 1, 12, 0, 0, 0, time.UTC), 60)
	if _, err := w.store.DB.NewRaw("UPDATE permits SET year_starts_at = ?, year_ends_at = ? WHERE id = ?",
		time.Date(2026, time.September, 5, 4, 0, 0, 0, time.UTC), jump, p.ID).Exec(w.ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2028, time.June, 1, 0, 0, 0, 0, time.UTC)
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 10); err != nil || res.Years != 2 {
		t.Fatalf("rollover: %+v %v", res, err)
	}
	want := time.Date(2028, time.September, 5, 3, 0, 0, 0, time.UTC) // 00:00 -03
	if got := w.reload(p); !got.YearStartsAt.Equal(jump) || !got.YearEndsAt.Equal(want) {
		t.Fatalf("rolled to [%s, %s), want [%s, %s)", got.YearStartsAt.UTC(), got.YearEndsAt.UTC(), jump, want)
	}
}

// Zone changes apply forward: the permit year running when an operator changes
// the zone's year_starts or time_zone keeps its start and end (the statement
// closes it as it was), and the year that follows runs to an anniversary the
// zone now has, on the nightly rollover and on use alike.
func rolloverAfterAZoneChangeKeepsTheRunningYear(t *testing.T) {
	w := newWorld(t)
	w.zone("AMS", "Europe/Amsterdam", "01-01")
	w.zone("TZC", "Europe/Amsterdam", "01-01")
	issued := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	p, onUse := w.permit("AMS", issued, 60), w.permit("AMS", issued, 60)
	q := w.permit("TZC", issued, 60)
	yearEnd := time.Date(2026, time.December, 31, 23, 0, 0, 0, time.UTC) // 2027-01-01 00:00 CET
	for _, x := range []*repo.Permit{p, onUse, q} {
		if !x.YearEndsAt.Equal(yearEnd) {
			t.Fatalf("issued: year ends %s, want %s", x.YearEndsAt, yearEnd)
		}
	}
	// In June the operator moves AMS's anniversary to 5 September and TZC to New York.
	w.zone("AMS", "Europe/Amsterdam", "09-05")
	w.zone("TZC", "America/New_York", "01-01")
	for _, x := range []*repo.Permit{p, q} {
		if got := w.reload(x); !got.YearStartsAt.Equal(x.YearStartsAt) || !got.YearEndsAt.Equal(yearEnd) {
			t.Fatalf("the zone change moved the running year to [%s, %s)", got.YearStartsAt, got.YearEndsAt)
		}
	}

	now := yearEnd.Add(5 * time.Minute)
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, err := repo.LockPermit(ctx, tx, onUse.ID)
		if err != nil {
			return err
		}
		z, err := w.store.ZoneOf(ctx, tx, locked)
		if err != nil {
			return err
		}
		_, err = repo.RollPermitYears(ctx, tx, z, locked, now)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 10); err != nil || res.Years != 2 {
		t.Fatalf("rollover: %+v %v, want 2 years", res, err)
	}
	for _, c := range []struct {
		p    *repo.Permit
		want time.Time
	}{
		// To the first 5 September after the old end: a year of eight months.
		{p, time.Date(2027, time.September, 4, 22, 0, 0, 0, time.UTC)},
		{onUse, time.Date(2027, time.September, 4, 22, 0, 0, 0, time.UTC)},
		// New York's new year nearest to a year on: 2028-01-01 00:00 EST, not
		// 18:00 New York time (Amsterdam's old midnight carried over).
		{q, time.Date(2028, time.January, 1, 5, 0, 0, 0, time.UTC)},
	} {
		st := w.statements(c.p)
		if len(st) != 1 || !st[0].YearStartsAt.Equal(c.p.YearStartsAt) || !st[0].YearEndsAt.Equal(yearEnd) {
			t.Fatalf("permit %d: statements %+v, want the year [%s, %s) as it was", c.p.ID, st, c.p.YearStartsAt, yearEnd)
		}
		got := w.reload(c.p)
		if !got.YearStartsAt.Equal(yearEnd) || !got.YearEndsAt.Equal(c.want) {
			t.Fatalf("permit %d (%s): new year [%s, %s), want [%s, %s)", c.p.ID, c.p.Zone,
				got.YearStartsAt.UTC(), got.YearEndsAt.UTC(), yearEnd, c.want)
		}
	}
	w.checkLedger()
}

// Batches: a small batch still closes every missed year of every permit, each
// once; a second run does nothing; a permit locked by another transaction is
// skipped (never waited for) and reported, and rolled by the next run.
func rolloverBatchesSkipLockedAndRunsAgain(t *testing.T) {
	w := newWorld(t)
	z := w.zone("AMS", "Europe/Amsterdam", "01-01")
	issued := time.Date(2026, time.March, 1, 12, 0, 0, 0, z.Location)
	var ps []*repo.Permit
	for i := range 11 {
		ps = append(ps, w.permit("AMS", issued, i*10))
	}
	// One permit lies a year ahead of the others (issued a year later).
	ahead := w.permit("AMS", issued.AddDate(1, 0, 0), 5)
	now := time.Date(2029, time.January, 1, 0, 5, 0, 0, z.Location) // 2027, 2028 and 2029 ended

	// Hold one permit's lock, as a request on it would.
	tx, err := w.store.DB.BeginTx(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.LockPermit(w.ctx, repo.Tx{Tx: tx}, ps[4].ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := repo.RollOver(w.ctx, w.store.DB, now, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Years != 10*3+2 || res.Left != 1 {
		t.Fatalf("with one permit locked: %+v, want 32 years closed and 1 left", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("rollover waited %s for a locked permit", d)
	}
	if st := w.statements(ps[4]); len(st) != 0 {
		t.Fatalf("the locked permit was rolled: %+v", st)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	res, err = repo.RollOver(w.ctx, w.store.DB, now, 4)
	if err != nil || res.Years != 3 || res.Left != 0 {
		t.Fatalf("next run: %+v %v, want the 3 years of the permit that was locked", res, err)
	}
	for i, p := range ps {
		if st := w.statements(p); len(st) != 3 || st[0].CarriedOverMinutes != i*10 || st[2].PurchasedMinutes != i*10 || st[0].PurchasedMinutes != 0 {
			t.Fatalf("permit %d statements %+v", i, st)
		}
	}
	if st := w.statements(ahead); len(st) != 2 {
		t.Fatalf("permit issued a year later: %d statements, want 2", len(st))
	}
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 4); err != nil || res.Years != 0 || res.Statements != 1 {
		t.Fatalf("third run: %+v %v, want one statement that finds nothing", res, err)
	}
	w.checkLedger()
}

// Rolling one permit on use (a request that locked it) writes the statement the
// nightly rollover would, and the nightly rollover then finds nothing to do.
func rollPermitYearsIsTheRolloversStatement(t *testing.T) {
	w := newWorld(t)
	z := w.zone("AMS", "Europe/Amsterdam", "01-01")
	p := w.permit("AMS", time.Date(2026, time.May, 1, 0, 0, 0, 0, z.Location), 90)
	q := w.permit("AMS", time.Date(2026, time.May, 1, 0, 0, 0, 0, z.Location), 90)
	now := time.Date(2028, time.January, 1, 0, 0, 0, 0, z.Location) // exactly at the end of 2027
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, err := repo.LockPermit(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		n, err := repo.RollPermitYears(ctx, tx, z, locked, now)
		if err == nil && (n != 2 || !locked.YearStartsAt.Equal(now)) {
			err = fmt.Errorf("rolled %d years to [%s, %s), want 2 to a year starting %s", n, locked.YearStartsAt, locked.YearEndsAt, now)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := repo.RollOver(w.ctx, w.store.DB, now, 10)
	if err != nil || res.Years != 2 {
		t.Fatalf("nightly run: %+v %v, want only the other permit's 2 years", res, err)
	}
	a, b := w.statements(p), w.statements(q)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("statements %d and %d, want 2 each", len(a), len(b))
	}
	for i := range a {
		if !a[i].YearStartsAt.Equal(b[i].YearStartsAt) || !a[i].YearEndsAt.Equal(b[i].YearEndsAt) ||
			a[i].PurchasedMinutes != b[i].PurchasedMinutes || a[i].CarriedOverMinutes != b[i].CarriedOverMinutes {
			t.Fatalf("on use %+v, nightly %+v", a[i], b[i])
		}
	}
	w.checkLedger()
}
