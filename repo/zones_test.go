package repo_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestPutZoneStoresTheSpec: the zone is stored as its spec, every field of it:
// what Store.Zone reads back compiles to the spec that was put, and a second
// put replaces every field (and the zone's version, so the compiled zone in
// the cache is not served stale).
func TestPutZoneStoresTheSpec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	first := domain.ZoneSpec{Name: "Centrum", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210,
		PaidHours:       []domain.PaidWindow{{Days: []string{"mon", "sat"}, From: "09:00", To: "21:00"}},
		InvalidWeekdays: []string{"sat"}, MaxSessionMinutes: 180, MaxPlanAheadDays: 7,
		AnnualPurchaseLimitHours: 500, AnnualUsageLimitHours: 400, YearStarts: "01-01",
		MaxConcurrentSessions: ptr(2), DefaultEnd: domain.DefaultEndPaidRegimeEnd, CarryOverMaxHours: ptr(50),
		EndingNoticeMinutes: 15, Registration: &domain.ZoneRegistration{AreaManagerID: "361", AreaID: "ALK01", UsageID: "BEZOEKP"}}
	second := domain.ZoneSpec{Name: "Oost", TimeZone: "America/Santiago", TariffCentsPerHour: 90,
		PaidHours:       []domain.PaidWindow{{Days: []string{"sun"}, From: "00:00", To: "24:00"}},
		InvalidWeekdays: []string{}, MaxSessionMinutes: 1440, MaxPlanAheadDays: 366,
		AnnualPurchaseLimitHours: 8784, AnnualUsageLimitHours: 1, YearStarts: "09-07",
		DefaultEnd: domain.DefaultEndMaxDuration, EndingNoticeMinutes: 10}
	a, b := reflect.ValueOf(first), reflect.ValueOf(second)
	for i := range a.NumField() {
		if reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			t.Fatalf("the two specs share %s: the test could not see it left unchanged", a.Type().Field(i).Name)
		}
	}
	var version *domain.Zone
	for _, spec := range []domain.ZoneSpec{first, second} {
		z, err := domain.CompileZone("GOLD", spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.PutZone(ctx, st.DB, z); err != nil {
			t.Fatal(err)
		}
		got, err := st.Zone(ctx, st.DB, "GOLD")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Spec, spec) {
			t.Fatalf("stored\n%+v\nread back\n%+v", spec, got.Spec)
		}
		if got == version {
			t.Fatal("the second put served the first's compiled zone from the cache")
		}
		version = got
	}
}

func ptr[T any](v T) *T { return &v }
