package repo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
)

// waitQueued waits until n units wait for co's committer.
func waitQueued(t *testing.T, co *repo.Coalescer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for co.Waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d units queued", co.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func finishApplied(id string) func(ctx context.Context, tx repo.Tx) error {
	return func(ctx context.Context, tx repo.Tx) error {
		return repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp-" + id,
			Status: repo.RequestApplied, Result: map[string]string{"id": id}})
	}
}

// A pipelined unit's outcome is held and sent with its batch's others before
// the commit (pipeline.go). A unit that is not pipelined may read anything,
// so the held outcomes go to Postgres before it runs; a held outcome that
// Postgres refuses (here a request ID two units decide) fails the batch, and
// every unit runs again alone, where the refusal is the refused unit's own.
func TestPipelinedOutcomes(t *testing.T) {
	t.Parallel()

	t.Run("held, then sent before a unit that reads them", func(t *testing.T) {
		t.Parallel()
		st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
		release := hold(t, co)
		var seen []string
		read := func(ctx context.Context, tx repo.Tx) error {
			return tx.NewRaw("SELECT request_id FROM requests ORDER BY request_id").Scan(ctx, &seen)
		}
		errs := make(chan error, 3)
		go func() { errs <- co.DoPipelined(context.Background(), finishApplied("p1")) }()
		waitQueued(t, co, 1)
		go func() { errs <- co.DoPipelined(context.Background(), finishApplied("p2")) }()
		waitQueued(t, co, 2)
		go func() { errs <- co.Do(context.Background(), read) }()
		waitQueued(t, co, 3)
		batches := co.Batches.Load()
		close(release)
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if got := co.Batches.Load() - batches; got != 1 || co.Fallbacks.Load() != 0 {
			t.Fatalf("%d batches, %d fallbacks: want the three units in one transaction", got, co.Fallbacks.Load())
		}
		if len(seen) != 2 || seen[0] != "p1" || seen[1] != "p2" {
			t.Fatalf("the unit after two held outcomes read %v, want both", seen)
		}
		for _, id := range []string{"p1", "p2"} {
			if r, err := repo.GetRequest(context.Background(), st.DB, id); err != nil || r.Status != repo.RequestApplied {
				t.Fatalf("request %s: %+v %v", id, r, err)
			}
		}
	})

	t.Run("refused at the flush: every unit again alone", func(t *testing.T) {
		t.Parallel()
		st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
		release := hold(t, co)
		// The same request ID decided by two units of one batch: the second
		// held outcome finds the first's row.
		errs := make([]error, 3)
		done := make(chan int, 3)
		units := []func(context.Context, repo.Tx) error{finishApplied("twice"), finishApplied("twice"), insertKey("bystander")}
		for i, u := range units {
			go func() { errs[i] = co.DoPipelined(context.Background(), u); done <- i }()
			waitQueued(t, co, i+1)
		}
		close(release)
		for range units {
			<-done
		}
		if co.Fallbacks.Load() != 1 {
			t.Fatalf("fallbacks %d, want the batch run again unit by unit", co.Fallbacks.Load())
		}
		if errs[0] != nil || errs[2] != nil {
			t.Fatalf("the first decision and the bystander: %v, %v", errs[0], errs[2])
		}
		if !errors.Is(errs[1], repo.ErrRequestKnown) {
			t.Fatalf("the second decision of one request: %v, want ErrRequestKnown", errs[1])
		}
		if !keys(t, st)["bystander"] {
			t.Fatal("the bystander's write was lost with the batch")
		}
	})
}
