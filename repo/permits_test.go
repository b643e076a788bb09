package repo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
)

// The unique index on one active permit per address is a rejection, not a failed
// transaction: two inserts that both passed their checks (had the address lock
// not serialised them) give one permit, and the loser's transaction can still
// record its outcome.
func TestInsertPermitUniqueIndexIsARejection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	z := w.zone("AMS", "Europe/Amsterdam", "01-01")
	zone := "AMS"
	if err := repo.PutAddress(w.ctx, w.store.DB, &repo.Address{ID: "ADDR", Zone: &zone}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, time.June, 1, 12, 0, 0, 0, time.UTC)
	first, err := w.store.DB.BeginTx(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback() //nolint:errcheck // committed below
	if _, err := repo.InsertPermit(w.ctx, first, z, "R1", "ADDR", "r1", now); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
			_, err := repo.InsertPermit(ctx, tx, z, "R2", "ADDR", "r2", now)
			if !errors.Is(err, repo.ErrPermitExists) {
				return fmt.Errorf("second insert: %v, want ErrPermitExists", err)
			}
			// The transaction is still usable.
			_, err = repo.ClaimRequest(ctx, tx, "r2", "permit:issue", "h", nil)
			return err
		})
	}()
	time.Sleep(200 * time.Millisecond) // the second insert waits on the first's index entry
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n, err := w.store.DB.NewSelect().Model((*repo.Permit)(nil)).Where("address_id = 'ADDR'").Count(w.ctx)
	if err != nil || n != 1 {
		t.Fatalf("%d permits (%v), want 1", n, err)
	}
	if _, err := repo.GetRequest(w.ctx, w.store.DB, "r2"); err != nil {
		t.Fatalf("the loser's transaction did not commit: %v", err)
	}
}
