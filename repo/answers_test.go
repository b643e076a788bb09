package repo_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// Acknowledgements recorded through Answers come out as alone: many at
// once, in any order and with repeats, leave each session at its highest
// version, acknowledged when that version was; the one call that moved a
// session to its newest version says so, with when that version was made.
func TestAnswersAcknowledgeAsAloneDoes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := repo.NewAnswers(w.store.DB, repo.AnswersConfig{MaxBatch: 8})
	t.Cleanup(a.Close)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const newest = 4
	var ids []int64
	for i := range 6 {
		id := rightSession(w, fmt.Sprintf("KH%02dAB", i))
		for range newest {
			repotest.MarkRightChanged(t, w.store, id, codes, t0)
		}
		ids = append(ids, id)
	}
	type result struct {
		session int64
		version int
		ack     repo.RightAcknowledgement
		err     error
	}
	results := make(chan result, len(ids)*newest*3)
	var wg sync.WaitGroup
	for _, id := range ids {
		for v := 1; v <= newest; v++ {
			for range 3 { // each version answered three times
				wg.Go(func() {
					ack, err := a.AcknowledgeRight(w.ctx, id, v, t0.Add(time.Duration(v)*time.Second))
					results <- result{id, v, ack, err}
				})
			}
		}
	}
	wg.Wait()
	close(results)
	advancedToNewest := map[int64]int{}
	for r := range results {
		if r.err != nil {
			t.Fatalf("session %d version %d: %v", r.session, r.version, r.err)
		}
		if r.ack.ChangedAt != nil && (r.version != newest || !r.ack.Advanced || !r.ack.ChangedAt.Equal(t0)) {
			t.Errorf("session %d version %d: %+v; only the newest version's advance has its change instant", r.session, r.version, r.ack)
		}
		if r.version == newest && r.ack.Advanced {
			advancedToNewest[r.session]++
			if r.ack.ChangedAt == nil {
				t.Errorf("session %d: the advance to the newest version without its change instant", r.session)
			}
		}
	}
	for _, id := range ids {
		if advancedToNewest[id] != 1 {
			t.Errorf("session %d: %d calls advanced it to version %d, want exactly 1", id, advancedToNewest[id], newest)
		}
		s, err := repo.GetSession(w.ctx, w.store.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		r := s.RegistrationView()
		if r.Status != jobs.RegistrationRegistered || s.RightRegisteredVersion != newest || r.RegisteredAt == nil ||
			!r.RegisteredAt.Equal(t0.Add(newest*time.Second)) {
			t.Errorf("session %d: registered version %d, %+v; want version %d registered at its answer", id, s.RightRegisteredVersion, r, newest)
		}
	}
}

// A batch never waits for a session another transaction holds (a stop's
// settlement): the others of the batch are written at once, and the held
// one is left to its call, which waits its turn alone and is then written.
func TestAnswersBatchDoesNotWaitForALockedSession(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := repo.NewAnswers(w.store.DB, repo.AnswersConfig{})
	t.Cleanup(a.Close)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	held, free := rightSession(w, "KH01AB"), rightSession(w, "KH02AB")
	for _, id := range []int64{held, free} {
		repotest.MarkRightChanged(t, w.store, id, codes, t0)
	}
	tx, err := w.store.DB.BeginTx(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(w.ctx, "SELECT 1 FROM sessions WHERE id = ? FOR UPDATE", held); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	res, skipped, err := a.AcknowledgeRightsBatch(ctx, []int64{held, free}, []int{1, 1}, t0)
	if err != nil {
		t.Fatalf("a batch with a locked session: %v (it waited for the lock)", err)
	}
	if !skipped[0] || skipped[1] || !res[1].Advanced {
		t.Fatalf("skipped %v, results %+v; want the held session left out and the other acknowledged", skipped, res)
	}

	done := make(chan repo.RightAcknowledgement, 1)
	go func() {
		ack, err := a.AcknowledgeRight(w.ctx, held, 1, t0)
		if err != nil {
			t.Error(err)
		}
		done <- ack
	}()
	select {
	case ack := <-done:
		t.Fatalf("acknowledged %+v while another transaction held the session", ack)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case ack := <-done:
		if !ack.Advanced {
			t.Fatalf("after the lock was released: %+v, want advanced", ack)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held session's acknowledgement never came")
	}
}

// Deliveries recorded through Answers come out as alone: each delivered
// with one attempt, a delivery recorded twice with two, and a delivery
// nobody owes is no error and writes nothing.
func TestAnswersRecordDeliveredAsAloneDoes(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	a := repo.NewAnswers(st.DB, repo.AnswersConfig{MaxBatch: 4})
	t.Cleanup(a.Close)
	for _, name := range []string{"one", "two"} {
		if _, err := repo.PutWebhook(ctx, st.DB, &repo.Webhook{Name: name, URL: "http://" + name + ".example/hook", Secret: "s", Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := repo.AddEvents(ctx, st.DB, newEvent(jobs.EventSessionStarted, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := repo.SequenceEvents(ctx, st.DB, 100); err != nil {
		t.Fatal(err)
	}
	evs, err := repo.EventsAfter(ctx, st.DB, 0, nil, 100)
	if err != nil || len(evs) != 10 {
		t.Fatal(evs, err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	twice := evs[3].ID
	var wg sync.WaitGroup
	record := func(webhook, eventID string) {
		wg.Go(func() {
			if err := a.RecordDelivered(ctx, webhook, eventID, at); err != nil {
				t.Errorf("%s/%s: %v", webhook, eventID, err)
			}
		})
	}
	for _, ev := range evs {
		record("one", ev.ID)
		record("two", ev.ID)
	}
	record("one", twice)
	record("one", uuid.NewString())
	wg.Wait()
	for _, ev := range evs {
		for _, hook := range []string{"one", "two"} {
			d, err := repo.GetDelivery(ctx, st.DB, hook, ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if hook == "one" && ev.ID == twice {
				want = 2
			}
			if d.Status != repo.DeliveryDelivered || d.Attempts != want || d.DeliveredAt == nil || !d.DeliveredAt.Equal(at) {
				t.Errorf("%s/%s: %+v, want delivered at %s after %d attempts", hook, ev.ID, d, at, want)
			}
		}
	}
}

// deliveriesOwed makes n events owed to webhook "w" and returns their IDs in
// the order a batch sorts them.
func deliveriesOwed(t *testing.T, n int) (*repo.Store, []string) {
	t.Helper()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	if _, err := repo.PutWebhook(ctx, st.DB, &repo.Webhook{Name: "w", URL: "http://w.example/hook", Secret: "s", Active: true}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := repo.AddEvents(ctx, st.DB, newEvent(jobs.EventSessionStarted, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := repo.SequenceEvents(ctx, st.DB, 100); err != nil {
		t.Fatal(err)
	}
	evs, err := repo.EventsAfter(ctx, st.DB, 0, nil, 100)
	if err != nil || len(evs) != n {
		t.Fatal(evs, err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return st, ids
}

func attempts(t *testing.T, st *repo.Store, eventID string) int {
	t.Helper()
	d, err := repo.GetDelivery(context.Background(), st.DB, "w", eventID)
	if err != nil {
		t.Fatal(err)
	}
	return d.Attempts
}

// A delivery batch never waits for a row another transaction holds: a
// writer of many deliveries at once (DeleteWebhook drops a webhook's in one
// statement) would otherwise deadlock with it, row against row. The held
// row is left to its call; the others are written.
func TestAnswersDeliveryBatchDoesNotWaitForALockedRow(t *testing.T) {
	t.Parallel()
	st, ids := deliveriesOwed(t, 2)
	ctx := context.Background()
	a := repo.NewAnswers(st.DB, repo.AnswersConfig{})
	t.Cleanup(a.Close)
	tx, err := st.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'dropped' WHERE webhook = 'w' AND event_id = ?::uuid`, ids[1]); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	skipped, err := a.RecordDeliveredBatch(bctx, []string{"w", "w"}, ids, time.Now())
	if err != nil {
		t.Fatalf("a batch with a held row: %v (it waited for the lock)", err)
	}
	if skipped[0] || !skipped[1] || attempts(t, st, ids[0]) != 1 {
		t.Fatalf("skipped %v; want the held row left to its call and the other written", skipped)
	}
}

// A delivery is matched to its row by its place in the batch, not by the
// text of its event ID: one spelled otherwise than Postgres spells it (upper
// case) is written once, not written by the batch and again alone.
func TestAnswersDeliveryOfAnyUUIDSpellingCountsOnce(t *testing.T) {
	t.Parallel()
	st, ids := deliveriesOwed(t, 1)
	a := repo.NewAnswers(st.DB, repo.AnswersConfig{})
	t.Cleanup(a.Close)
	if err := a.RecordDelivered(context.Background(), "w", strings.ToUpper(ids[0]), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := attempts(t, st, ids[0]); n != 1 {
		t.Fatalf("one delivery recorded with %d attempts", n)
	}
}

// A call the statement cannot take (an event ID that is no UUID) fails the
// batch, not its batch-mates: each call of a failed batch is written alone,
// and meets its own outcome.
func TestAnswersOneBadCallFailsOnlyItself(t *testing.T) {
	t.Parallel()
	st, ids := deliveriesOwed(t, 1)
	a := repo.NewAnswers(st.DB, repo.AnswersConfig{})
	t.Cleanup(a.Close)
	skipped, err := a.RecordDeliveredBatch(context.Background(), []string{"w", "w"}, []string{ids[0], "not-a-uuid"}, time.Now())
	if err == nil {
		t.Fatalf("a batch with an event ID that is no UUID: skipped %v, no error", skipped)
	}
	// Through Answers, the good call is recorded and the bad one is refused.
	var wg sync.WaitGroup
	var good, bad error
	wg.Go(func() { good = a.RecordDelivered(context.Background(), "w", ids[0], time.Now()) })
	wg.Go(func() { bad = a.RecordDelivered(context.Background(), "w", "not-a-uuid", time.Now()) })
	wg.Wait()
	if good != nil || bad == nil || attempts(t, st, ids[0]) != 1 {
		t.Fatalf("good call: %v, bad call: %v, attempts %d; want the good one recorded once, the bad one refused", good, bad, attempts(t, st, ids[0]))
	}
}

// The same delivery twice in one batch (its task run twice at once) counts
// two attempts, as two calls alone do: the batch writes the first, and
// leaves the second to be written alone.
func TestAnswersDeliveryTwiceInOneBatch(t *testing.T) {
	t.Parallel()
	st, ids := deliveriesOwed(t, 2)
	a := repo.NewAnswers(st.DB, repo.AnswersConfig{})
	t.Cleanup(a.Close)
	skipped, err := a.RecordDeliveredBatch(context.Background(), []string{"w", "w", "w"}, []string{ids[0], ids[1], ids[0]}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(skipped, []bool{false, false, true}) || attempts(t, st, ids[0]) != 1 || attempts(t, st, ids[1]) != 1 {
		t.Fatalf("skipped %v; want only the repeat left to be written alone", skipped)
	}
}

// parkd's connections keep the generic plan of every statement they
// prepare: Postgres chose a custom plan, made afresh at every run, for
// statements over arrays (planning was a quarter of its time in these
// batches). Those generic plans, made on empty tables never analyzed, are
// lookups by key for each element, whatever the tables come to hold.
func TestAnswersStatementsAreGenericLookups(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	var mode string
	if err := st.DB.NewRaw("SHOW plan_cache_mode").Scan(context.Background(), &mode); err != nil || mode != "force_generic_plan" {
		t.Fatalf("the pool's plan_cache_mode %q (%v), want force_generic_plan", mode, err)
	}
	lock, ack, delivered := repo.AnswersQueries()
	for _, c := range []struct {
		name, q, index string
		types          []string
		args           string
	}{
		{"lock", lock, "sessions_pkey", []string{"int8[]"}, "'{1,2}'"},
		{"acknowledge", ack, "sessions_pkey", []string{"int8[]", "int[]", "timestamptz[]"}, "'{1,2}', '{1,1}', '{2026-11-30T00:00:00Z,2026-11-30T00:00:00Z}'"},
		{"delivered", delivered, "webhook_deliveries_pkey", []string{"text[]", "uuid[]", "timestamptz[]", "text"},
			"'{a,b}', '{" + uuid.NewString() + "," + uuid.NewString() + "}', '{2026-11-30T00:00:00Z,2026-11-30T00:00:00Z}', 'delivered'"},
	} {
		text := genericPlan(t, st, c.q, c.types, c.args)
		if strings.Contains(text, "Seq Scan") || !strings.Contains(text, "Index Scan using "+c.index) {
			t.Errorf("%s: not a lookup by key per element:\n%s", c.name, text)
		}
	}
}

// A plan_cache_mode the database URL gives, as a parameter or in its
// options, is the one the pool's connections keep.
func TestPoolKeepsThePlanCacheModeTheURLGives(t *testing.T) {
	t.Parallel()
	_, url := repotest.NewDB(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	for _, suffix := range []string{"plan_cache_mode=auto", "options=-c%20plan_cache_mode%3Dforce_custom_plan"} {
		st, err := repo.Open(url+sep+suffix, repo.PoolConfig{MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		var mode string
		if err := st.DB.NewRaw("SHOW plan_cache_mode").Scan(context.Background(), &mode); err != nil {
			t.Fatal(err)
		}
		st.Close()
		if want := map[bool]string{true: "auto", false: "force_custom_plan"}[strings.HasPrefix(suffix, "plan")]; mode != want {
			t.Errorf("URL with %s: plan_cache_mode %s, want %s", suffix, mode, want)
		}
	}
}
