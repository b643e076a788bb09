package repo_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// listening gives a database of its own and a connected Listener on it, done
// waking everyone for its connection (so that a wake-up is a notification).
func listening(t *testing.T) (*repo.Store, *repo.Listener) {
	t.Helper()
	st, dsn := repotest.NewDB(t)
	l := repo.NewListener(dsn, slog.New(slog.DiscardHandler))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-l.Up():
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect within 10s")
	}
	// The listener relays notifications one after the other, after the
	// wake-up of its connection: once a probe's has arrived, that is done.
	probe := l.Subscribe("probe")
	defer probe.Close()
	notify(t, st, `{"request_id":"probe","status":"applied","error":null,"result":null}`)
	for deadline := time.After(5 * time.Second); probe.Outcome() == nil; {
		select {
		case <-probe.C:
		case <-deadline:
			t.Fatal("the probe's notification did not arrive within 5s")
		}
	}
	return st, l
}

func notify(t *testing.T, st *repo.Store, payload string) {
	t.Helper()
	if _, err := st.DB.ExecContext(context.Background(), "SELECT pg_notify(?, ?)", repo.RequestChannel, payload); err != nil {
		t.Fatal(err)
	}
}

func woken(t *testing.T, c <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(within):
		t.Fatalf("%s: not woken within %s", what, within)
	}
}

func TestNotify(t *testing.T) {
	t.Parallel()

	// A finished request is announced with its outcome, so that a waiting
	// intake answers without reading it back; an outcome too big for NOTIFY
	// is announced by its ID alone. Either way the announcement matches what
	// the table holds.
	t.Run("FinishRequest announces the outcome", func(t *testing.T) {
		t.Parallel()
		st, l := listening(t)
		ctx := context.Background()
		cases := []struct {
			name, id, status string
			rejection        *jobs.Rejection
			result           any
			outbox           []*repo.OutboxTask
			carried          bool
		}{
			{"applied", "n-applied", repo.RequestApplied, nil, map[string]string{"id": "7", "plate": "AB12CD"}, nil, true},
			{"applied with an outbox task", "n-outbox", repo.RequestApplied, nil, map[string]string{"id": "8"},
				[]*repo.OutboxTask{{TaskType: "session:autostop", TaskID: "autostop:8:1", Queue: "critical", Payload: json.RawMessage(`{"session_id":"8"}`), ProcessAt: time.Now()}}, true},
			{"rejected", "n-rejected", repo.RequestRejected, &jobs.Rejection{Code: "insufficient_balance", Message: "no minutes left"}, nil, nil, true},
			{"too big to carry", "n-big", repo.RequestApplied, nil, map[string]string{"notes": strings.Repeat("x", 9000)}, nil, false},
		}
		subject := "resident:r1"
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sub := l.Subscribe(c.id)
				defer sub.Close()
				if err := st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
					if _, err := repo.ClaimRequest(ctx, tx, c.id, "session:start", "fp", &subject); err != nil {
						return err
					}
					return repo.FinishRequest(ctx, tx, c.id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: c.status, Rejection: c.rejection, Result: c.result, Outbox: c.outbox})
				}); err != nil {
					t.Fatal(err)
				}
				woken(t, sub.C, 5*time.Second, c.id)
				got := sub.Outcome()
				if !c.carried {
					if got != nil {
						t.Fatalf("an outcome of over 8000 bytes was carried: %+v", got)
					}
					return
				}
				if got == nil {
					t.Fatal("the notification carried no outcome")
				}
				stored, err := repo.GetRequest(ctx, st.DB, c.id)
				if err != nil {
					t.Fatal(err)
				}
				// Whose request it was comes along: a waiting intake has no
				// record of its own to compare the outcome with.
				if got.Type != "session:start" || got.BodyHash != "fp" || got.Subject == nil || *got.Subject != subject {
					t.Fatalf("announced type %q, fingerprint %q, subject %v; want session:start, fp, %s", got.Type, got.BodyHash, got.Subject, subject)
				}
				if got.RequestID != c.id || got.Status != stored.Status || !sameJSON(t, got.Result, stored.Result) || !sameJSON(t, got.Error, stored.Error) {
					t.Fatalf("announced %s %s %s %s, stored %s %s %s", got.RequestID, got.Status, got.Result, got.Error, stored.Status, stored.Result, stored.Error)
				}
				for _, o := range c.outbox {
					if o.ID == 0 {
						t.Fatalf("outbox task %s has no ID after the statement that wrote it", o.TaskID)
					}
				}
			})
		}
	})

	// A NOTIFY on the request channel wakes exactly the waiters of that
	// request ID, promptly, and waiters clean up after themselves.
	t.Run("the Listener wakes only the request's waiters", func(t *testing.T) {
		t.Parallel()
		st, l := listening(t)
		a, b := l.Subscribe("req-a"), l.Subscribe("req-b")
		notify(t, st, "req-a")
		woken(t, a.C, 2*time.Second, "waiter of req-a")
		select {
		case <-b.C:
			t.Fatal("waiter of req-b woken by req-a's notification")
		case <-time.After(100 * time.Millisecond):
		}
		a.Close()
		b.Close()
		if n := l.Waiting(); n != 0 {
			t.Fatalf("%d request IDs still have waiters after Close", n)
		}
	})

	// When the listening connection is killed, the listener reconnects, and
	// waiters are woken on the way down and up so none is stranded.
	t.Run("the Listener reconnects", func(t *testing.T) {
		t.Parallel()
		st, l := listening(t)
		w := l.Subscribe("req-x")
		defer w.Close()
		if _, err := st.DB.ExecContext(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
		woken(t, w.C, 10*time.Second, "waiter, when the listener lost its connection")
		deadline := time.Now().Add(10 * time.Second)
		for !l.Connected() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !l.Connected() {
			t.Fatal("listener did not reconnect within 10s")
		}
		for len(w.C) > 0 { // drain the reconnect's wake-up
			<-w.C
		}
		notify(t, st, "req-x")
		woken(t, w.C, 2*time.Second, "waiter, after the reconnect")
	})
}

func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}

func TestParseRequestNotice(t *testing.T) {
	t.Parallel()
	cases := []struct {
		payload, id string
		outcome     bool
	}{
		{"req-1", "req-1", false},
		{`{"request_id":"req-2","status":"applied","error":null,"result":{"id":"1"}}`, "req-2", true},
		{`{"request_id":"req-3","status":"rejected","error":{"code":"x","message":"y"},"result":null}`, "req-3", true},
		{`{not json`, `{not json`, false},
		{`{"status":"applied"}`, `{"status":"applied"}`, false},
	}
	for _, c := range cases {
		id, r := repo.ParseRequestNotice(c.payload)
		if id != c.id || (r != nil) != c.outcome {
			t.Errorf("%q: id %q outcome %v, want %q %v", c.payload, id, r != nil, c.id, c.outcome)
		}
		if r != nil && r.Status == "applied" && r.Error != nil {
			t.Errorf("%q: a JSON null error became %q, want none", c.payload, r.Error)
		}
	}
}
