package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// Zone is a row of zones.
type Zone struct {
	bun.BaseModel `bun:"table:zones"`

	Code                     string              `bun:"code,pk"`
	Name                     string              `bun:"name"`
	TimeZone                 string              `bun:"time_zone"`
	TariffCentsPerHour       int64               `bun:"tariff_cents_per_hour"`
	PaidHours                []domain.PaidWindow `bun:"paid_hours,type:jsonb"`
	InvalidWeekdays          []string            `bun:"invalid_weekdays,type:jsonb"`
	MaxSessionMinutes        int                 `bun:"max_session_minutes"`
	MaxPlanAheadDays         int                 `bun:"max_plan_ahead_days"`
	AnnualPurchaseLimitHours int                 `bun:"annual_purchase_limit_hours"`
	AnnualUsageLimitHours    int                 `bun:"annual_usage_limit_hours"`
	YearStarts               string              `bun:"year_starts"`
	UpdatedAt                time.Time           `bun:"updated_at"`
}

// Spec returns the zone as its operator wrote it.
func (z *Zone) Spec() domain.ZoneSpec {
	return domain.ZoneSpec{
		Name: z.Name, TimeZone: z.TimeZone, TariffCentsPerHour: z.TariffCentsPerHour,
		PaidHours: z.PaidHours, InvalidWeekdays: z.InvalidWeekdays,
		MaxSessionMinutes: z.MaxSessionMinutes, MaxPlanAheadDays: z.MaxPlanAheadDays,
		AnnualPurchaseLimitHours: z.AnnualPurchaseLimitHours, AnnualUsageLimitHours: z.AnnualUsageLimitHours,
		YearStarts: z.YearStarts,
	}
}

// PutZone creates or replaces a zone. The change applies forward (DOMAIN.md):
// sessions keep the intervals they were granted, settled ones what they were
// settled with, permits the year they are in; nothing is recomputed.
func PutZone(ctx context.Context, db bun.IDB, z *domain.Zone) error {
	s := z.Spec
	row := &Zone{
		Code: z.Code, Name: s.Name, TimeZone: s.TimeZone, TariffCentsPerHour: s.TariffCentsPerHour,
		PaidHours: s.PaidHours, InvalidWeekdays: s.InvalidWeekdays,
		MaxSessionMinutes: s.MaxSessionMinutes, MaxPlanAheadDays: s.MaxPlanAheadDays,
		AnnualPurchaseLimitHours: s.AnnualPurchaseLimitHours, AnnualUsageLimitHours: s.AnnualUsageLimitHours,
		YearStarts: s.YearStarts,
	}
	_, err := db.NewInsert().Model(row).ExcludeColumn("updated_at").
		On("CONFLICT (code) DO UPDATE").
		Set("name = EXCLUDED.name, time_zone = EXCLUDED.time_zone").
		Set("tariff_cents_per_hour = EXCLUDED.tariff_cents_per_hour, paid_hours = EXCLUDED.paid_hours").
		Set("invalid_weekdays = EXCLUDED.invalid_weekdays, max_session_minutes = EXCLUDED.max_session_minutes").
		Set("max_plan_ahead_days = EXCLUDED.max_plan_ahead_days").
		Set("annual_purchase_limit_hours = EXCLUDED.annual_purchase_limit_hours").
		Set("annual_usage_limit_hours = EXCLUDED.annual_usage_limit_hours, year_starts = EXCLUDED.year_starts").
		Set("updated_at = clock_timestamp()").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("put zone %s: %w", z.Code, err)
	}
	return nil
}

// Zone loads a zone and compiles it. Compiled zones are cached by their
// updated_at, so a hot path pays one primary-key lookup and no time-zone parsing.
func (s *Store) Zone(ctx context.Context, db bun.IDB, code string) (*domain.Zone, error) {
	row := new(Zone)
	if err := db.NewSelect().Model(row).Where("code = ?", code).Scan(ctx); err != nil {
		return nil, notFound(err, "zone "+code)
	}
	s.zoneMu.Lock()
	c, ok := s.zones[code]
	s.zoneMu.Unlock()
	if ok && c.updatedAt.Equal(row.UpdatedAt) {
		return c.zone, nil
	}
	z, err := domain.CompileZone(row.Code, row.Spec())
	if err != nil {
		return nil, fmt.Errorf("zone %s as stored: %w", code, err)
	}
	s.zoneMu.Lock()
	s.zones[code] = cachedZone{updatedAt: row.UpdatedAt, zone: z}
	s.zoneMu.Unlock()
	return z, nil
}

// ZoneOf returns the compiled zone of a permit read by LockPermit, without a
// query when the cached zone has the version read with the permit.
func (s *Store) ZoneOf(ctx context.Context, db bun.IDB, p *Permit) (*domain.Zone, error) {
	if !p.ZoneUpdatedAt.IsZero() {
		s.zoneMu.Lock()
		c, ok := s.zones[p.Zone]
		s.zoneMu.Unlock()
		if ok && c.updatedAt.Equal(p.ZoneUpdatedAt) {
			return c.zone, nil
		}
	}
	return s.Zone(ctx, db, p.Zone)
}
