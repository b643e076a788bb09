package repo_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// A finished request is announced with its outcome, so that a waiting intake
// answers without reading it back; an outcome too big for NOTIFY is announced
// by its ID alone. Either way the announcement matches what the table holds.
func TestFinishRequestAnnouncesOutcome(t *testing.T) {
	ctx := context.Background()
	st, dsn := repotest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+repo.RequestChannel); err != nil {
		t.Fatal(err)
	}
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
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := st.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
				if _, err := repo.ClaimRequest(ctx, tx, c.id, "session:start", "fp", nil); err != nil {
					return err
				}
				return repo.FinishRequest(ctx, tx, c.id, c.status, c.rejection, c.result, c.outbox...)
			}); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			n, err := conn.WaitForNotification(wctx)
			if err != nil {
				t.Fatal(err)
			}
			id, got := repo.ParseRequestNotice(n.Payload)
			if id != c.id {
				t.Fatalf("announced %q, want %q", id, c.id)
			}
			if !c.carried {
				if got != nil {
					t.Fatalf("payload of %d bytes carried the outcome", len(n.Payload))
				}
				return
			}
			if got == nil {
				t.Fatalf("payload %q carries no outcome", n.Payload)
			}
			stored, err := repo.GetRequest(ctx, st.DB, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != stored.Status || !sameJSON(t, got.Result, stored.Result) || !sameJSON(t, got.Error, stored.Error) {
				t.Fatalf("announced %s %s %s, stored %s %s %s", got.Status, got.Result, got.Error, stored.Status, stored.Result, stored.Error)
			}
			for _, o := range c.outbox {
				if o.ID == 0 {
					t.Fatalf("outbox task %s has no ID after the statement that wrote it", o.TaskID)
				}
			}
		})
	}
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
