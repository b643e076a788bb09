package repo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
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
		go func() { errs <- co.DoPipelined(context.Background(), finishApplied("p1"), repo.Prelock{}) }()
		waitQueued(t, co, 1)
		go func() { errs <- co.DoPipelined(context.Background(), finishApplied("p2"), repo.Prelock{}) }()
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
			go func() { errs[i] = co.DoPipelined(context.Background(), u, repo.Prelock{}); done <- i }()
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

// A shared transaction gives its connection back before its units run again
// alone (after a failure, or busy): with a pool of one connection they would
// otherwise wait for it until the batch's timeout.
func TestUnitsRunAgainAloneOnTheirOwnConnection(t *testing.T) {
	t.Parallel()
	_, dsn := repotest.NewDB(t)
	st, err := repo.Open(dsn, repo.PoolConfig{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.DB.ExecContext(context.Background(), "CREATE TABLE scratch (k text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for _, fail := range []error{repo.ErrBusy, errors.New("boom")} {
		co := repo.NewCoalescer(st.DB, repo.CoalescerConfig{Committers: 1, Timeout: 3 * time.Second})
		release := hold(t, co)
		failing := func(context.Context, repo.Tx) error { return fail }
		errs := make(chan error, 2)
		go func() { errs <- co.Do(context.Background(), insertKey("k-"+fail.Error())) }()
		waitQueued(t, co, 1)
		go func() { errs <- co.Do(context.Background(), failing) }()
		waitQueued(t, co, 2)
		close(release)
		for range 2 {
			if err := <-errs; err != nil && !errors.Is(err, fail) {
				t.Errorf("a unit beside one that says %v: %v", fail, err)
			}
		}
		co.Close()
		if !keys(t, st)["k-"+fail.Error()] {
			t.Errorf("beside one that says %v: the healthy unit's key is missing", fail)
		}
		if _, err := st.DB.ExecContext(context.Background(), "DELETE FROM scratch WHERE k = 'first'"); err != nil {
			t.Fatal(err) // hold's, for the next round
		}
	}
}
