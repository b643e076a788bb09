package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestRegisterForgetAdopt: the intake's bookkeeping on the requests table.
func TestRegisterForgetAdopt(t *testing.T) {
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
		return repo.FinishRequest(ctx, tx, "k2", repo.RequestApplied, nil, map[string]string{"id": "1"})
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

// `parkd check` reports a request pending longer than PendingRequestLimit (its
// task archived, lost or never queued: nothing will ever finish it), and not
// one pending for a moment; the pending count and the oldest age say the same.
func TestAuditFindsRequestsPendingTooLong(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	for _, q := range []string{
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('fresh', 'session:start', 'h', 'pending')",
		"INSERT INTO requests (request_id, type, body_hash, status, result) VALUES ('done', 'permit:topup', 'h', 'applied', '{}')",
		"INSERT INTO requests (request_id, type, body_hash, status, error, created_at) VALUES ('old-done', 'permit:topup', 'h', 'rejected', '{}', now() - interval '1 day')",
	} {
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	stuck := func() []repo.Finding {
		t.Helper()
		_, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		return findings
	}
	if f := stuck(); len(f) != 0 {
		t.Fatalf("nothing stuck yet: %v", f)
	}
	if _, err := st.DB.ExecContext(ctx, "INSERT INTO requests (request_id, type, body_hash, status, created_at) VALUES ('field-arch-1', 'session:start', 'h', 'pending', now() - interval '6 minutes')"); err != nil {
		t.Fatal(err)
	}
	f := stuck()
	if len(f) != 1 || f[0].Check != "no request pending longer than "+repo.PendingRequestLimit.String() ||
		!strings.Contains(f[0].Detail, "request field-arch-1 (session:start): pending since") {
		t.Fatalf("findings %v, want field-arch-1 pending too long", f)
	}
	ps, err := repo.PendingRequests(ctx, st.DB)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Count != 2 || ps.Oldest < 6*time.Minute || ps.Oldest > 7*time.Minute {
		t.Fatalf("pending %+v, want 2 with the oldest 6 minutes old", ps)
	}
}
