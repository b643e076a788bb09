package repo_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// lockWorld is a database of its own with a zone, a permit with an open
// session on it, and a scratch table.
type lockWorld struct {
	st      *repo.Store
	permit  int64
	session int64
}

func newLockWorld(t *testing.T) lockWorld {
	t.Helper()
	w := newWorld(t)
	w.zone("LZ", "", "")
	now := time.Now()
	p := w.permit("LZ", now, 60)
	plan := domain.SessionPlan{Plate: "LOCK1", Country: "NL", StartAt: now, PlannedEndAt: now.Add(10 * time.Minute), ReservedMinutes: 10}
	s, err := repo.ApplyStart(w.ctx, w.store.DB, p, plan, nil, "req-s", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.DB.ExecContext(w.ctx, "CREATE TABLE scratch (k text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	return lockWorld{st: w.store, permit: p.ID, session: s.ID}
}

// hold begins a transaction that takes lock and keeps it until the returned
// function rolls it back.
func (w lockWorld) hold(t *testing.T, lock func(context.Context, repo.Tx) error) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := w.st.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock(ctx, repo.Tx{Tx: tx, Locks: repo.WaitForLocks}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// TestLockPolicy: what each lock does when another transaction holds it, under
// each policy: WaitForLocks waits for the holder and then has the lock,
// FailIfBusy says ErrBusy at once; and a row that does not exist is not found
// under both, never busy.
func TestLockPolicy(t *testing.T) {
	t.Parallel()
	locks := []struct {
		name    string
		lock    func(w lockWorld) func(context.Context, repo.Tx) error
		missing func(context.Context, repo.Tx) error // nil: every key exists
	}{
		{"LockPermit", func(w lockWorld) func(context.Context, repo.Tx) error {
			return func(ctx context.Context, tx repo.Tx) error { _, err := repo.LockPermit(ctx, tx, w.permit); return err }
		}, func(ctx context.Context, tx repo.Tx) error { _, err := repo.LockPermit(ctx, tx, 999999); return err }},
		{"LockSessionAndPermit", func(w lockWorld) func(context.Context, repo.Tx) error {
			return func(ctx context.Context, tx repo.Tx) error {
				_, _, err := repo.LockSessionAndPermit(ctx, tx, w.session)
				return err
			}
		}, func(ctx context.Context, tx repo.Tx) error {
			_, _, err := repo.LockSessionAndPermit(ctx, tx, 999999)
			return err
		}},
		{"LockPaymentRef", func(lockWorld) func(context.Context, repo.Tx) error {
			return func(ctx context.Context, tx repo.Tx) error { return repo.LockPaymentRef(ctx, tx, "pay-1") }
		}, nil},
	}
	for _, l := range locks {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			w := newLockWorld(t)
			ctx := context.Background()
			lock := l.lock(w)

			release := w.hold(t, lock)
			t0 := time.Now()
			bounded, cancel := context.WithTimeout(ctx, 3*time.Second) // a lock that waits fails the test, not hangs it
			defer cancel()
			err := w.st.InTx(bounded, func(ctx context.Context, tx repo.Tx) error {
				tx.Locks = repo.FailIfBusy
				return lock(ctx, tx)
			})
			if !errors.Is(err, repo.ErrBusy) || time.Since(t0) > 2*time.Second {
				t.Fatalf("FailIfBusy on a held lock: %v after %s, want ErrBusy at once", err, time.Since(t0))
			}

			got := make(chan error, 1)
			go func() { got <- w.st.InTx(ctx, lock) }() // WaitForLocks
			select {
			case err := <-got:
				t.Fatalf("WaitForLocks did not wait for the holder: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			release()
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("WaitForLocks, once the holder let go: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("WaitForLocks still waiting 5s after the holder let go")
			}

			if err := w.st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
				tx.Locks = repo.FailIfBusy
				return lock(ctx, tx)
			}); err != nil {
				t.Fatalf("FailIfBusy on a free lock: %v", err)
			}
			if l.missing == nil {
				return
			}
			for _, p := range []repo.LockPolicy{repo.WaitForLocks, repo.FailIfBusy} {
				err := w.st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
					tx.Locks = p
					return l.missing(ctx, tx)
				})
				if !errors.Is(err, repo.ErrNotFound) {
					t.Errorf("%s on a row that does not exist: %v, want ErrNotFound", p, err)
				}
			}
		})
	}

	// Through a Coalescer: a unit whose permit another transaction holds does
	// not hold up its batch (the others commit at once), and waits its turn
	// alone once the holder lets go.
	t.Run("a Coalescer's unit on a held permit waits its turn alone", func(t *testing.T) {
		t.Parallel()
		w := newLockWorld(t)
		ctx := context.Background()
		co := repo.NewCoalescer(w.st.DB, repo.CoalescerConfig{MaxBatch: 64, Committers: 1})
		t.Cleanup(co.Close)
		release := w.hold(t, func(ctx context.Context, tx repo.Tx) error { _, err := repo.LockPermit(ctx, tx, w.permit); return err })

		first := hold(t, co)
		busyDone := make(chan error, 1)
		go func() {
			busyDone <- co.Do(ctx, func(ctx context.Context, tx repo.Tx) error {
				if _, err := repo.LockPermit(ctx, tx, w.permit); err != nil {
					return err
				}
				return insertKey("busy")(ctx, tx)
			})
		}()
		wait := doAll(co, insertKey("0"), insertKey("1"), insertKey("2"), insertKey("3"), insertKey("4"))
		time.Sleep(100 * time.Millisecond)
		close(first)
		for _, err := range wait() { // the healthy units commit while the permit is still held
			if err != nil {
				t.Error(err)
			}
		}
		if got := keys(t, w.st); len(got) != 6 || got["busy"] {
			t.Fatalf("rows %v while the permit is held: want the 5 healthy units and the first, not the busy one", got)
		}
		select {
		case err := <-busyDone:
			t.Fatalf("the busy unit finished while its permit was held: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		release()
		if err := <-busyDone; err != nil {
			t.Fatalf("busy unit, run alone after the release: %v", err)
		}
		if !keys(t, w.st)["busy"] || co.Deferred.Load() != 1 || co.Fallbacks.Load() != 0 {
			t.Fatalf("busy unit written %v, deferred %d, fallbacks %d; want written, 1, 0",
				keys(t, w.st)["busy"], co.Deferred.Load(), co.Fallbacks.Load())
		}
	})
}

// TestLockSessionAndPermitReadsWhatItWaitedFor: a LockSessionAndPermit that
// waits for another transaction reads the session and the permit as that
// transaction left them once it commits, never as they were when the wait
// began; whether the other held the permit (every writer's way) or only the
// session's row (a registrar's acknowledgement).
func TestLockSessionAndPermitReadsWhatItWaitedFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(ctx context.Context, tx repo.Tx, w lockWorld) error
	}{
		{"the other held the permit and changed both", func(ctx context.Context, tx repo.Tx, w lockWorld) error {
			if _, err := repo.LockPermit(ctx, tx, w.permit); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE sessions SET planned_end_at = planned_end_at + interval '7 minutes' WHERE id = ?", w.session); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "UPDATE permits SET balance_minutes = balance_minutes - 7 WHERE id = ?", w.permit)
			return err
		}},
		{"the other held only the session's row", func(ctx context.Context, tx repo.Tx, w lockWorld) error {
			_, err := tx.ExecContext(ctx, "UPDATE sessions SET planned_end_at = planned_end_at + interval '7 minutes' WHERE id = ?", w.session)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newLockWorld(t)
			ctx := context.Background()
			var before *repo.Session
			var permitBefore *repo.Permit
			if err := w.st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
				var err error
				before, permitBefore, err = repo.LockSessionAndPermit(ctx, tx, w.session)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			tx, err := w.st.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if err := c.change(ctx, repo.Tx{Tx: tx, Locks: repo.WaitForLocks}, w); err != nil {
				t.Fatal(err)
			}
			type read struct {
				s   *repo.Session
				p   *repo.Permit
				err error
			}
			got := make(chan read, 1)
			go func() {
				var r read
				r.err = w.st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
					var err error
					r.s, r.p, err = repo.LockSessionAndPermit(ctx, tx, w.session)
					return err
				})
				got <- r
			}()
			select {
			case r := <-got:
				t.Fatalf("did not wait for the other transaction: %+v", r)
			case <-time.After(200 * time.Millisecond):
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.err != nil {
				t.Fatal(r.err)
			}
			if want := before.PlannedEndAt.Add(7 * time.Minute); !r.s.PlannedEndAt.Equal(want) {
				t.Errorf("session read after the wait: planned end %s, want %s (the committed change)", r.s.PlannedEndAt, want)
			}
			fresh, err := repo.GetPermit(ctx, w.st.DB, w.permit)
			if err != nil {
				t.Fatal(err)
			}
			if r.p.BalanceMinutes != fresh.BalanceMinutes {
				t.Errorf("permit read after the wait: balance %d, want %d (was %d)", r.p.BalanceMinutes, fresh.BalanceMinutes, permitBefore.BalanceMinutes)
			}
		})
	}
}
