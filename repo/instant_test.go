package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestInstantIsWhatPostgresKeeps: an instant of any precision, written through
// bun and read back, is repo.Instant of it, whatever its location; so is
// Instant of that again (it changes nothing already stored).
func TestInstantIsWhatPostgresKeeps(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []time.Time{
		time.Date(2026, 3, 29, 1, 59, 59, 999_999_999, time.UTC), // the last nanosecond before a DST change
		time.Date(2026, 6, 10, 14, 0, 0, 500, ams),               // half a microsecond: written off, not rounded
		time.Date(2026, 6, 10, 14, 0, 0, 123_456_000, ams),       // already whole microseconds
		time.Date(2199, 12, 31, 23, 59, 59, 999_999_500, time.UTC),
	} {
		var out time.Time
		if err := st.DB.NewRaw("SELECT ?::timestamptz", in).Scan(context.Background(), &out); err != nil {
			t.Fatal(err)
		}
		got := repo.Instant(in)
		if !got.Equal(out) || got.Location() != time.UTC {
			t.Errorf("Instant(%s) = %s, Postgres keeps %s", in.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano), out.Format(time.RFC3339Nano))
		}
		if again := repo.Instant(out); !again.Equal(out) {
			t.Errorf("Instant of a stored instant %s moved it to %s", out.Format(time.RFC3339Nano), again.Format(time.RFC3339Nano))
		}
	}
}
