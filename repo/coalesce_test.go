package repo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// coalesceSetup gives a database of its own with a scratch table and a
// Coalescer over it.
func coalesceSetup(t *testing.T, cfg repo.CoalescerConfig) (*repo.Store, *repo.Coalescer) {
	t.Helper()
	st, _ := repotest.NewDB(t)
	if _, err := st.DB.ExecContext(context.Background(), "CREATE TABLE scratch (k text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	c := repo.NewCoalescer(st.DB, cfg)
	t.Cleanup(c.Close)
	return st, c
}

func insertKey(k string) func(ctx context.Context, tx repo.Tx) error {
	return func(ctx context.Context, tx repo.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO scratch (k) VALUES (?)", k)
		return err
	}
}

func keys(t *testing.T, st *repo.Store) map[string]bool {
	t.Helper()
	var ks []string
	if err := st.DB.NewRaw("SELECT k FROM scratch").Scan(context.Background(), &ks); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range ks {
		out[k] = true
	}
	return out
}

// hold occupies a one-committer Coalescer with a unit that waits for the
// returned channel to close.
func hold(t *testing.T, co *repo.Coalescer) chan struct{} {
	release := make(chan struct{})
	go func() {
		if err := co.Do(context.Background(), func(ctx context.Context, tx repo.Tx) error {
			<-release
			return insertKey("first")(ctx, tx)
		}); err != nil {
			t.Error(err)
		}
	}()
	for co.Units.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	return release
}

// doAll hands every unit to co at once, each from a goroutine of its own, and
// returns a function that waits for their outcomes.
func doAll(co *repo.Coalescer, units ...func(context.Context, repo.Tx) error) (wait func() []error) {
	errs := make([]error, len(units))
	var wg sync.WaitGroup
	for i, u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = co.Do(context.Background(), u)
		}()
	}
	return func() []error { wg.Wait(); return errs }
}

// The batching engine: units that arrive together share one transaction, and
// whatever one unit does, the others get their own outcome. The lock policy
// the units get is locks_test.go's.
func TestCoalescer(t *testing.T) {
	t.Parallel()

	// Units that fail, in every way a unit can, never take the others' work
	// down with them, and leave nothing of their own behind.
	t.Run("unit outcomes", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		cases := []struct {
			name    string
			fn      func(k string) func(ctx context.Context, tx repo.Tx) error
			wantErr bool
		}{
			{"succeeds", insertKey, false},
			{"returns an error after writing", func(k string) func(context.Context, repo.Tx) error {
				return func(ctx context.Context, tx repo.Tx) error {
					if err := insertKey(k)(ctx, tx); err != nil {
						return err
					}
					return boom
				}
			}, true},
			{"breaks the transaction with bad SQL", func(k string) func(context.Context, repo.Tx) error {
				return func(ctx context.Context, tx repo.Tx) error {
					if err := insertKey(k)(ctx, tx); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "SELECT no_such_column FROM scratch")
					return err
				}
			}, true},
			{"panics after writing", func(k string) func(context.Context, repo.Tx) error {
				return func(ctx context.Context, tx repo.Tx) error {
					if err := insertKey(k)(ctx, tx); err != nil {
						return err
					}
					panic("unit panicked")
				}
			}, true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
				// Forty healthy units around the one under test, queued up
				// behind a unit that holds the only committer, so that they
				// all share the next transaction with it.
				release := hold(t, co)
				units := make([]func(context.Context, repo.Tx) error, 41)
				for i := range units {
					units[i] = insertKey(fmt.Sprintf("k%d", i))
				}
				units[20] = c.fn("subject")
				wait := doAll(co, units...)
				time.Sleep(100 * time.Millisecond)
				close(release)
				errs := wait()
				got := keys(t, st)
				for i, err := range errs {
					if i == 20 {
						continue
					}
					if err != nil || !got[fmt.Sprintf("k%d", i)] {
						t.Errorf("healthy unit %d: err %v, written %v", i, err, got[fmt.Sprintf("k%d", i)])
					}
				}
				if c.wantErr {
					if errs[20] == nil || got["subject"] {
						t.Errorf("failing unit: err %v, its write kept %v; want an error and nothing kept", errs[20], got["subject"])
					}
				} else if errs[20] != nil || !got["subject"] {
					t.Errorf("unit: err %v, written %v", errs[20], got["subject"])
				}
				if c.wantErr && co.Fallbacks.Load() != 1 {
					t.Errorf("%d fallbacks, want the one shared transaction to have fallen back", co.Fallbacks.Load())
				}
			})
		}
	})

	// Under concurrent load the units really do share transactions.
	t.Run("batches", func(t *testing.T) {
		t.Parallel()
		st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
		release := hold(t, co)
		var units []func(context.Context, repo.Tx) error
		for i := range 50 {
			units = append(units, insertKey(fmt.Sprint(i)))
		}
		wait := doAll(co, units...)
		time.Sleep(100 * time.Millisecond)
		close(release)
		for _, err := range wait() {
			if err != nil {
				t.Error(err)
			}
		}
		if n := len(keys(t, st)); n != 51 {
			t.Fatalf("%d rows, want 51", n)
		}
		if b := co.Batches.Load(); b != 2 {
			t.Errorf("51 units in %d transactions, want 2 (the held one, then the other 50 together)", b)
		}
	})

	// A caller that gives up before its unit is taken is told so, and its unit
	// never runs; after Close, nothing runs.
	t.Run("abandon and close", func(t *testing.T) {
		t.Parallel()
		st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 4, Committers: 1})
		release := hold(t, co)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := co.Do(ctx, insertKey("late")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("abandoned unit: %v, want the deadline", err)
		}
		close(release)
		// The committer is free again: the abandoned unit must not have run.
		if err := co.Do(context.Background(), insertKey("next")); err != nil {
			t.Fatal(err)
		}
		if got := keys(t, st); got["late"] || !got["next"] {
			t.Fatalf("rows %v: the abandoned unit ran, or the next did not", got)
		}
		co.Close()
		if err := co.Do(context.Background(), insertKey("after")); !errors.Is(err, repo.ErrCoalescerClosed) {
			t.Fatalf("after Close: %v", err)
		}
	})

	// The units of a shared transaction get locks that fail if busy, a unit
	// alone locks that wait; a unit that says ErrBusy in a shared transaction
	// does not fail it: the others commit at once, and it runs again alone
	// once the batch is done.
	t.Run("a busy unit runs again alone", func(t *testing.T) {
		t.Parallel()
		st, co := coalesceSetup(t, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
		release := hold(t, co)
		var policies []repo.LockPolicy
		busyDone := make(chan error, 1)
		go func() {
			busyDone <- co.Do(context.Background(), func(ctx context.Context, tx repo.Tx) error {
				policies = append(policies, tx.Locks) // the runs are one after the other
				if tx.Locks == repo.FailIfBusy {
					return repo.ErrBusy
				}
				// Alone, after the batch's commit: its rows are there to see.
				if n, err := st.DB.NewSelect().Table("scratch").Count(ctx); err != nil || n != 6 {
					return fmt.Errorf("ran alone with %d rows committed (%v), want the first and the batch's 5", n, err)
				}
				return insertKey("busy")(ctx, tx)
			})
		}()
		var units []func(context.Context, repo.Tx) error
		for i := range 5 {
			units = append(units, func(ctx context.Context, tx repo.Tx) error {
				if tx.Locks != repo.FailIfBusy {
					return fmt.Errorf("a unit of a shared transaction got %s", tx.Locks)
				}
				return insertKey(fmt.Sprint(i))(ctx, tx)
			})
		}
		wait := doAll(co, units...)
		time.Sleep(100 * time.Millisecond)
		close(release)
		for _, err := range wait() {
			if err != nil {
				t.Error(err)
			}
		}
		if err := <-busyDone; err != nil {
			t.Fatalf("busy unit: %v", err)
		}
		if got := keys(t, st); len(got) != 7 || !got["busy"] {
			t.Fatalf("rows %v: want the first, the 5 others and the busy unit", got)
		}
		if fmt.Sprint(policies) != "[fail if busy wait for locks]" || co.Deferred.Load() != 1 || co.Fallbacks.Load() != 0 {
			t.Fatalf("busy unit ran under %v; deferred %d, fallbacks %d; want once shared and once alone, 1, 0",
				policies, co.Deferred.Load(), co.Fallbacks.Load())
		}
		// A unit on an idle Coalescer runs alone, at once.
		if err := co.Do(context.Background(), func(ctx context.Context, tx repo.Tx) error {
			if tx.Locks != repo.WaitForLocks {
				return fmt.Errorf("a unit alone got %s", tx.Locks)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}
