package repo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestRegisterForgetAdopt: the intake's bookkeeping on the requests table.
func TestRegisterForgetAdopt(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	r, created, err := repo.RegisterRequest(ctx, st.DB, "k1", "session:start", "fp", "resident:a")
	if err != nil || !created || r.Status != repo.RequestPending || r.Subject == nil || *r.Subject != "resident:a" {
		t.Fatalf("first register: %+v %v %v", r, created, err)
	}
	r, created, err = repo.RegisterRequest(ctx, st.DB, "k1", "session:stop", "other", "resident:b")
	if err != nil || created || r.Type != "session:start" || r.BodyHash != "fp" || *r.Subject != "resident:a" {
		t.Fatalf("second register must return the first row unchanged: %+v %v %v", r, created, err)
	}
	// Forget removes only a pending row of the same subject.
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k1", "resident:b"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k1"); err != nil {
		t.Fatalf("another subject's forget removed the row: %v", err)
	}
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k1", "resident:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k1"); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("forgotten row still there: %v", err)
	}
	// A finished request is never forgotten.
	if err := st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		if _, err := repo.ClaimRequest(ctx, tx, "k2", "session:start", "fp", nil); err != nil {
			return err
		}
		return repo.FinishRequest(ctx, tx, "k2", repo.Finish{Status: repo.RequestApplied, Result: map[string]string{"id": "1"}})
	}); err != nil {
		t.Fatal(err)
	}
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k2", "resident:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k2"); err != nil {
		t.Fatalf("finished row forgotten: %v", err)
	}
	// k2 has no subject (the worker made it): the same request adopts it, another does not.
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "different", "resident:a"); err != nil || ok {
		t.Fatalf("adopt with another fingerprint: %v %v", ok, err)
	}
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "fp", "resident:a"); err != nil || !ok {
		t.Fatalf("adopt: %v %v", ok, err)
	}
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "fp", "resident:b"); err != nil || ok {
		t.Fatalf("adopt of an adopted request: %v %v", ok, err)
	}
}
