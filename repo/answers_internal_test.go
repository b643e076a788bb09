package repo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A call racing Close must not be stranded in the channel after the loop has
// drained it and returned: it must come back (errBatcherClosed, so the caller
// writes it alone) rather than wait for its context.
func TestBatcherCallRacingCloseIsNotStranded(t *testing.T) {
	var stranded atomic.Int64
	for i := 0; i < 200; i++ {
		b := newBatcher(8, time.Second, func(ctx context.Context, calls []int) ([]int, []error, error) {
			return make([]int, len(calls)), make([]error, len(calls)), nil
		})
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
					_, err := b.do(ctx, 1)
					cancel()
					if errors.Is(err, context.DeadlineExceeded) {
						stranded.Add(1)
						return
					}
					if errors.Is(err, errBatcherClosed) {
						return
					}
				}
			})
		}
		time.Sleep(time.Millisecond)
		b.close()
		wg.Wait()
	}
	if n := stranded.Load(); n > 0 {
		t.Fatalf("%d calls racing Close waited for their context (never answered, never written)", n)
	}
}

// A batch that fails as a whole (an error of its statement, a panic) hands
// each of its calls back to be written alone (errBatchSkipped), not the
// batch's error: one call's fault is not its batch-mates'.
func TestBatcherFailedBatchLeavesEachCallAlone(t *testing.T) {
	for name, run := range map[string]func(context.Context, []int) ([]int, []error, error){
		"error": func(context.Context, []int) ([]int, []error, error) {
			return nil, nil, errors.New("a statement refused")
		},
		"panic": func(context.Context, []int) ([]int, []error, error) { panic("a bug") },
	} {
		b := newBatcher(8, time.Second, run)
		if _, err := b.do(context.Background(), 1); !errors.Is(err, errBatchSkipped) {
			t.Errorf("%s: %v, want errBatchSkipped", name, err)
		}
		b.close()
	}
}
