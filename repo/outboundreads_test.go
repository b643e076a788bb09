package repo_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// Sessions read through OutboundReads are the sessions GetSession reads
// alone: a batch of IDs in any order, with repeats and an ID that names no
// session (left to its call alone, which gives GetSession's ErrNotFound),
// maps each row back to its own call; and many calls at once, changed
// between them, each read what was committed before it.
func TestOutboundReadsSessionsAsAloneDoes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := repo.NewOutboundReads(w.store.DB, repo.AnswersConfig{MaxBatch: 4})
	t.Cleanup(r.Close)
	var ids []int64
	for i := range 5 {
		ids = append(ids, rightSession(w, fmt.Sprintf("RD%02dAB", i)))
	}
	alone := func(id int64) *repo.Session {
		t.Helper()
		s, err := repo.GetSession(w.ctx, w.store.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	missing := ids[len(ids)-1] + 1000
	batch := []int64{ids[3], ids[0], missing, ids[3], ids[4], ids[1]}
	got, skipped, err := r.ReadSessionsBatch(w.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range batch {
		switch {
		case id == missing:
			if got[i] != nil || !skipped[i] {
				t.Errorf("call %d (no session %d): %+v, skipped %v; want nothing, left to its call", i, id, got[i], skipped[i])
			}
		case skipped[i] || got[i] == nil || !reflect.DeepEqual(got[i], alone(id)):
			t.Errorf("call %d (session %d): %+v (skipped %v), want %+v", i, id, got[i], skipped[i], alone(id))
		}
	}
	if _, err := r.GetSession(w.ctx, missing); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("session %d that does not exist: %v, want ErrNotFound", missing, err)
	}

	// Concurrent calls, each after a change of its session's right: every
	// call reads its own session at a version at least the one it changed
	// it to.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for k := range 8 {
		for _, id := range ids {
			wg.Go(func() {
				v := repotest.MarkRightChanged(t, w.store, id, codes, time.Now())
				s, err := r.GetSession(w.ctx, id)
				switch {
				case err != nil:
					errs <- err
				case s.ID != id || s.RightVersion < v:
					errs <- fmt.Errorf("round %d: read session %d at right version %d after it reached %d", k, s.ID, s.RightVersion, v)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Deliveries read through OutboundReads are what GetDeliveryWork reads
// alone, event, webhook and all, mapped back to their calls by place (an
// upper-case spelling of an event ID too); one nobody owes is left to its
// call (ErrNotFound alone), and an event ID that is no UUID fails the batch
// (each call is then read alone, and that one meets its own error).
func TestOutboundReadsDeliveriesAsAloneDoes(t *testing.T) {
	t.Parallel()
	st, ids := deliveriesOwed(t, 4)
	ctx := context.Background()
	r := repo.NewOutboundReads(st.DB, repo.AnswersConfig{})
	t.Cleanup(r.Close)
	alone := func(hook, id string) *repo.DeliveryWork {
		t.Helper()
		d, err := repo.GetDeliveryWork(ctx, st.DB, hook, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	unknown := uuid.NewString()
	hooks := []string{"w", "w", "w", "nobody", "w", "w"}
	events := []string{ids[2], ids[0], unknown, ids[1], strings.ToUpper(ids[3]), ids[2]}
	got, skipped, err := r.ReadDeliveriesBatch(ctx, hooks, events)
	if err != nil {
		t.Fatal(err)
	}
	for i := range hooks {
		if hooks[i] != "w" || events[i] == unknown {
			if got[i] != nil || !skipped[i] {
				t.Errorf("call %d (%s/%s, owed to nobody): %+v, skipped %v; want nothing, left to its call", i, hooks[i], events[i], got[i], skipped[i])
			}
			continue
		}
		want := alone(hooks[i], events[i])
		if skipped[i] || got[i] == nil || !reflect.DeepEqual(got[i], want) {
			t.Errorf("call %d (%s): %+v (skipped %v), want %+v", i, events[i], got[i], skipped[i], want)
		}
		if got[i] != nil && (got[i].Webhook == nil || got[i].Webhook.Name != "w" || !strings.EqualFold(got[i].Event.ID, events[i])) {
			t.Errorf("call %d: webhook %+v, event %s; want w's delivery of %s", i, got[i].Webhook, got[i].Event.ID, events[i])
		}
	}
	if _, err := r.GetDeliveryWork(ctx, "w", unknown); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("a delivery nobody owes: %v, want ErrNotFound", err)
	}
	if _, _, err := r.ReadDeliveriesBatch(ctx, []string{"w", "w"}, []string{ids[0], "not-a-uuid"}); err == nil {
		t.Error("a batch with an event ID that is no UUID: no error")
	}
	_, errAlone := repo.GetDeliveryWork(ctx, st.DB, "w", "not-a-uuid")
	var wg sync.WaitGroup
	var good, bad error
	wg.Go(func() { _, good = r.GetDeliveryWork(ctx, "w", ids[0]) })
	wg.Go(func() { _, bad = r.GetDeliveryWork(ctx, "w", "not-a-uuid") })
	wg.Wait()
	if good != nil || bad == nil || errAlone == nil || bad.Error() != errAlone.Error() {
		t.Errorf("beside an ID that is no UUID: %v; that one: %v, want %v (as alone)", good, bad, errAlone)
	}
}

// Each of OutboundReads' statements, as its generic plan made on empty
// tables, looks each element up by key: a plan made from the tables'
// statistics when first prepared would read them whole as they grow.
func TestOutboundReadsStatementsAreGenericLookups(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	sessions, deliveries := repo.OutboundReadsQueries(st.DB)
	for _, c := range []struct {
		name, q string
		indexes []string
		types   []string
		args    string
	}{
		{"sessions", sessions, []string{"sessions_pkey"}, []string{"int8[]"}, "'{1,2}'"},
		{"deliveries", deliveries, []string{"webhook_deliveries_pkey", "events_id_key", "webhooks_pkey"}, []string{"text[]", "uuid[]"},
			"'{a,b}', '{" + uuid.NewString() + "," + uuid.NewString() + "}'"},
	} {
		text := genericPlan(t, st, c.q, c.types, c.args)
		if strings.Contains(text, "Seq Scan") {
			t.Errorf("%s: reads a table whole:\n%s", c.name, text)
		}
		for _, ix := range c.indexes {
			if !strings.Contains(text, "Index Scan using "+ix) {
				t.Errorf("%s: no lookup by %s:\n%s", c.name, ix, text)
			}
		}
	}
}
