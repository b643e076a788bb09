package intake

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parkd/parkd/repo"
)

// fakeHolders is what the holder caches' reads find: permits by ID with their
// holder, sessions by ID with their permit; fail, when set, is every read's
// error. reads counts the reads.
type fakeHolders struct {
	permits  map[int64]string
	sessions map[int64]int64
	fail     error
	reads    atomic.Int64
}

func (f *fakeHolders) cache() *holders {
	return newHolders(
		func(_ context.Context, id int64) (string, error) {
			f.reads.Add(1)
			if f.fail != nil {
				return "", f.fail
			}
			if h, ok := f.permits[id]; ok {
				return h, nil
			}
			return "", repo.ErrNotFound
		},
		func(_ context.Context, id int64) (int64, string, error) {
			f.reads.Add(1)
			if f.fail != nil {
				return 0, "", f.fail
			}
			if p, ok := f.sessions[id]; ok {
				return p, f.permits[p], nil
			}
			return 0, "", repo.ErrNotFound
		})
}

func newFake() *fakeHolders {
	return &fakeHolders{permits: map[int64]string{1: "R1", 2: "R2"}, sessions: map[int64]int64{10: 1, 20: 2}}
}

// TestHolders: a holder found is remembered (a permit's, a session's, and the
// permit's from its session's); what was not found, or could not be read, is
// read again next time; a start's answer is remembered only when it is a
// session on the permit started on; the caches stay within their bounds.
func TestHolders(t *testing.T) {
	ctx := context.Background()
	wantReads := func(t *testing.T, f *fakeHolders, h *holders, want int64) {
		t.Helper()
		if got := f.reads.Load(); got != want {
			t.Fatalf("%d reads, want %d", got, want)
		}
		if got := h.reads.Load(); got != want {
			t.Fatalf("the cache counted %d reads, want %d", got, want)
		}
	}
	// permitIs and sessionIs ask h, n times, and want the answer given.
	permitIs := func(t *testing.T, h *holders, n int, id int64, want string, wantErr error) {
		t.Helper()
		for range n {
			if got, err := h.permit(ctx, id); got != want || !errors.Is(err, wantErr) {
				t.Fatalf("permit %d: %q %v, want %q %v", id, got, err, want, wantErr)
			}
		}
	}
	sessionIs := func(t *testing.T, h *holders, n int, id int64, want sessionHolder, wantErr error) {
		t.Helper()
		for range n {
			if got, err := h.session(ctx, id); got != want || !errors.Is(err, wantErr) {
				t.Fatalf("session %d: %+v %v, want %+v %v", id, got, err, want, wantErr)
			}
		}
	}

	t.Run("a permit's holder is read once", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		permitIs(t, h, 3, 1, "R1", nil)
		wantReads(t, f, h, 1)
	})
	t.Run("a permit not found is read again, and found once issued", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		permitIs(t, h, 2, 3, "", repo.ErrNotFound)
		f.permits[3] = "R3"
		permitIs(t, h, 2, 3, "R3", nil)
		wantReads(t, f, h, 3)
	})
	t.Run("a failed read is read again", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		f.fail = errors.New("postgres is down")
		permitIs(t, h, 1, 1, "", f.fail)
		sessionIs(t, h, 1, 10, sessionHolder{}, f.fail)
		f.fail = nil
		permitIs(t, h, 1, 1, "R1", nil)
		sessionIs(t, h, 1, 10, sessionHolder{1, "R1"}, nil)
		wantReads(t, f, h, 4)
	})
	t.Run("a session's read remembers it and its permit's holder", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		sessionIs(t, h, 2, 20, sessionHolder{2, "R2"}, nil)
		permitIs(t, h, 1, 2, "R2", nil)
		wantReads(t, f, h, 1)
	})
	t.Run("a session not found is read again, and found once started", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		sessionIs(t, h, 1, 30, sessionHolder{}, repo.ErrNotFound)
		f.sessions[30] = 1
		sessionIs(t, h, 2, 30, sessionHolder{1, "R1"}, nil)
		wantReads(t, f, h, 2)
	})

	// A start's answer on permit 1, held by R1, names session 11.
	for _, c := range []struct {
		name       string
		result     string
		holder     string
		remembered bool
	}{
		{"a session on the permit", `{"id":"11","permit_id":"1","plate":"AB12CD","status":"active"}`, "R1", true},
		{"an erased plate", `{"id":"11","permit_id":"1","plate":null}`, "R1", true},
		{"a session on another permit", `{"id":"11","permit_id":"2"}`, "R1", false},
		{"no holder found by reach", `{"id":"11","permit_id":"1"}`, "", false},
		{"no session ID", `{"permit_id":"1"}`, "R1", false},
		{"an ID that is no ID", `{"id":"011","permit_id":"1"}`, "R1", false},
		{"no JSON object", `[]`, "R1", false},
		{"no JSON", `{"id":`, "R1", false},
	} {
		t.Run("a start's answer: "+c.name, func(t *testing.T) {
			f := newFake()
			f.sessions[11] = 1
			h := f.cache()
			h.started([]byte(c.result), 1, c.holder)
			sessionIs(t, h, 1, 11, sessionHolder{1, "R1"}, nil)
			want := int64(1)
			if c.remembered {
				want = 0
			}
			wantReads(t, f, h, want)
		})
	}

	t.Run("bounded", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		for id := int64(1); id <= sessionHolders+10; id++ {
			h.remember(id, id, "R")
		}
		if h.permits.Len() != permitHolders || h.sessions.Len() != sessionHolders {
			t.Fatalf("%d permits and %d sessions remembered, want at most %d and %d",
				h.permits.Len(), h.sessions.Len(), permitHolders, sessionHolders)
		}
		// The latest are the ones kept.
		sessionIs(t, h, 1, sessionHolders+10, sessionHolder{sessionHolders + 10, "R"}, nil)
		wantReads(t, f, h, 0)
	})
	t.Run("concurrent", func(t *testing.T) {
		f := newFake()
		h := f.cache()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 500 {
					id := int64(1 + (g+i)%2)
					if got, err := h.permit(ctx, id); err != nil || got != f.permits[id] {
						t.Errorf("permit %d: %q %v", id, got, err)
					}
					if got, err := h.session(ctx, id*10); err != nil || got.permitID != id {
						t.Errorf("session %d: %+v %v", id*10, got, err)
					}
					h.remember(int64(100+i), id, f.permits[id])
				}
			})
		}
		wg.Wait()
	})
}
