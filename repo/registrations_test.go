package repo_test

import (
	"fmt"
	"testing"

	"github.com/parkd/parkd/repo"
)

func TestLoadRegistrations(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.zone("AMS", "Europe/Amsterdam", "01-01")
	zone := "AMS"
	for _, a := range []string{"A1", "A2"} {
		if err := repo.PutAddress(w.ctx, w.store.DB, &repo.Address{ID: a, Zone: &zone}); err != nil {
			t.Fatal(err)
		}
	}
	rows := []repo.Registration{{ResidentID: "R1", AddressID: "A1"}, {ResidentID: "R2", AddressID: "NOPE"}, {ResidentID: "R2", AddressID: "A2"}}
	got, err := repo.LoadRegistrations(w.ctx, w.store.DB, rows)
	want := []repo.RegistrationOutcome{repo.RegistrationNew, repo.RegistrationUnknownAddress, repo.RegistrationNew}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first load: %v %v, want %v", got, err, want)
	}
	got, err = repo.LoadRegistrations(w.ctx, w.store.DB, append(rows, repo.Registration{ResidentID: "R3", AddressID: "A1"}))
	want = []repo.RegistrationOutcome{repo.RegistrationExisting, repo.RegistrationUnknownAddress, repo.RegistrationExisting, repo.RegistrationNew}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second load: %v %v, want %v", got, err, want)
	}
	n, err := w.store.DB.NewSelect().Model((*repo.Registration)(nil)).Count(w.ctx)
	if err != nil || n != 3 {
		t.Fatalf("%d registrations (%v), want 3", n, err)
	}
}
