package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// Zone is a row of zones: a zone's code and its spec as the operator wrote it
// (with the defaults CompileZone filled in), one column per field of
// domain.ZoneSpec named as bun names a field (TimeZone in time_zone), the
// lists as JSON. A field added to the spec needs its column, nothing more.
type Zone struct {
	bun.BaseModel `bun:"table:zones"`

	Code string `bun:"code,pk"`
	domain.ZoneSpec
	// UpdatedAt is the zone's version: the compiled zones are cached by it.
	UpdatedAt time.Time `bun:"updated_at"`
}

// PutZone creates or replaces a zone. The change applies forward (DOMAIN.md):
// sessions keep the intervals they were granted, settled ones what they were
// settled with, permits the year they are in; nothing is recomputed.
func PutZone(ctx context.Context, db bun.IDB, z *domain.Zone) error {
	// DO UPDATE without a SET list: bun sets every column to the new row's,
	// the version included. clock_timestamp(), not now(): two puts in one
	// transaction are two versions.
	_, err := db.NewInsert().Model(&Zone{Code: z.Code, ZoneSpec: z.Spec}).
		Value("updated_at", "clock_timestamp()").
		On("CONFLICT (code) DO UPDATE").
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
	z, err := domain.CompileZone(row.Code, row.ZoneSpec)
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
