package load

import (
	"slices"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/receiver"
)

// A version's lag runs from its commit to the first instant the register
// stored it or a newer one: version 1 from created_at, the newest from
// right_changed_at; a version never stored is counted missing.
func TestRegistrationLags(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	changed := at(10)
	sessions := []repo.Session{
		{ID: 1, CreatedAt: t0, RightVersion: 2, RightChangedAt: &changed}, // 1 stored at 0.5, 2 at 11
		{ID: 2, CreatedAt: t0, RightVersion: 2, RightChangedAt: &changed}, // 1 never: 2 at 12 stands for it
		{ID: 3, CreatedAt: t0, RightVersion: 1, RightChangedAt: &t0},      // 1 at 3
		{ID: 4, CreatedAt: t0, RightVersion: 2, RightChangedAt: &changed}, // 1 at 1, 2 never
		{ID: 5, CreatedAt: t0, RightVersion: 1, RightChangedAt: &t0},      // never
	}
	stored := map[string]map[int]time.Time{
		"parkd-1": {1: at(0.5), 2: at(11)},
		"parkd-2": {2: at(12)},
		"parkd-3": {1: at(3)},
		"parkd-4": {1: at(1)},
		"other-5": {1: at(1)},
	}
	first, last, missing := RegistrationLags("parkd", sessions, stored)
	slices.Sort(first)
	slices.Sort(last)
	if want := []float64{0.5, 1, 3, 12}; !slices.Equal(first, want) {
		t.Errorf("version 1 lags %v, want %v", first, want)
	}
	if want := []float64{1, 2}; !slices.Equal(last, want) {
		t.Errorf("newest version lags %v, want %v", last, want)
	}
	if missing != 2 {
		t.Errorf("missing %d, want 2 (session 4's version 2, session 5's version 1)", missing)
	}
}

// A webhook's lag is first receipt − occurred_at, by type too.
func TestWebhookLags(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)
	got := map[string]receiver.Receipt{
		"a": {Event: receiver.Event{Type: "session.started", OccurredAt: t0}, FirstAt: t0.Add(time.Second)},
		"b": {Event: receiver.Event{Type: "session.started", OccurredAt: t0}, FirstAt: t0.Add(3 * time.Second)},
		"c": {Event: receiver.Event{Type: "session.stopped", OccurredAt: t0}, FirstAt: t0.Add(2 * time.Second)},
	}
	all, byType := WebhookLags(got)
	slices.Sort(all)
	if !slices.Equal(all, []float64{1, 2, 3}) || len(byType["session.started"]) != 2 || byType["session.stopped"][0] != 2 {
		t.Fatalf("lags %v, by type %v", all, byType)
	}
	if s := SpreadsByType(byType); len(s) != 2 || s[0].Type != "session.started" || s[0].Spread.Max != 3 {
		t.Fatalf("spreads %+v", s)
	}
}
