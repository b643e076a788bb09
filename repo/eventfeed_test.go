package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

func TestSequenceEvents(t *testing.T) {
	parallel(t,
		subtest{"a later commit gets the later number, a rollback none", sequenceFollowsCommitOrder},
		subtest{"concurrent writers: a poller misses nothing and sees nothing twice", sequenceUnderConcurrentWriters},
		subtest{"owes each event to the active webhooks of its type", sequenceOwesDeliveries},
		subtest{"numbers at most limit a pass", sequenceInBatches},
	)
}

// newEvent is an event of typ about permit 1, as a writer adds it.
func newEvent(typ, note string) *repo.Event {
	permit := int64(1)
	return &repo.Event{Type: typ, OccurredAt: time.Now(), PermitID: &permit, Data: json.RawMessage(fmt.Sprintf(`{"note":%q}`, note))}
}

// begin opens a writer's transaction and adds an event in it.
func begin(t *testing.T, db *bun.DB, note string) bun.Tx {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.AddEvents(context.Background(), tx, newEvent(jobs.EventSessionStarted, note)); err != nil {
		t.Fatal(err)
	}
	return tx
}

func sequence(t *testing.T, db bun.IDB) int {
	t.Helper()
	n, _, err := repo.SequenceEvents(context.Background(), db, 100)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// poller reads the feed as a consumer does: after the last sequence it saw.
type poller struct {
	after int64
	seen  []repo.Event
}

func (p *poller) poll(t testing.TB, db bun.IDB) []repo.Event {
	t.Helper()
	page, err := repo.EventsAfter(context.Background(), db, p.after, nil, 500)
	if err != nil {
		t.Error(err)
		return nil
	}
	for _, e := range page {
		if *e.Sequence != p.after+1 {
			t.Errorf("after %d the feed gave %d: a number skipped or reused", p.after, *e.Sequence)
		}
		p.after = *e.Sequence
	}
	p.seen = append(p.seen, page...)
	return page
}

func notes(evs []repo.Event) []string {
	var out []string
	for _, e := range evs {
		var d struct{ Note string }
		_ = json.Unmarshal(e.Data, &d)
		out = append(out, d.Note)
	}
	return out
}

// tx1 writes first and commits last: numbered after tx2's event, which a
// consumer has already read by then; a rolled-back event is never numbered.
func sequenceFollowsCommitOrder(t *testing.T) {
	st, _ := repotest.NewDB(t)
	var p poller
	tx1 := begin(t, st.DB, "tx1")
	tx2 := begin(t, st.DB, "tx2")
	tx3 := begin(t, st.DB, "rolled back")
	if err := tx2.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := sequence(t, st.DB); n != 1 {
		t.Fatalf("first pass numbered %d, want tx2's 1 (tx1 and tx3 are not committed)", n)
	}
	if got := notes(p.poll(t, st.DB)); !slices.Equal(got, []string{"tx2"}) {
		t.Fatalf("after 0: %v, want [tx2]", got)
	}
	if err := tx1.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx3.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := sequence(t, st.DB); n != 1 {
		t.Fatalf("second pass numbered %d, want tx1's 1", n)
	}
	if got := notes(p.poll(t, st.DB)); !slices.Equal(got, []string{"tx1"}) {
		t.Fatalf("after 1: %v, want [tx1]", got)
	}
	if *p.seen[0].Sequence != 1 || *p.seen[1].Sequence != 2 || p.seen[0].PK < p.seen[1].PK {
		t.Fatalf("tx2's event (written second) = sequence %d, tx1's = %d; want 1 and 2", *p.seen[0].Sequence, *p.seen[1].Sequence)
	}
	if n := sequence(t, st.DB); n != 0 || len(p.poll(t, st.DB)) != 0 {
		t.Fatalf("a third pass numbered %d; the rolled-back event must never appear", n)
	}
	if n, err := repo.UnsequencedEvents(context.Background(), st.DB); err != nil || n != 0 {
		t.Fatalf("unnumbered: %d %v", n, err)
	}
}

// Writers commit and roll back in every order while sequencer passes run
// (two at once, as two worker processes would) and a consumer polls: the
// consumer reads 1, 2, 3… with no gap and no repeat, every committed event
// exactly once, no rolled-back one.
func sequenceUnderConcurrentWriters(t *testing.T) {
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	const writers, each = 6, 20
	var committed sync.Map
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				note := fmt.Sprintf("w%d-%d", w, i)
				err := st.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					if err := repo.AddEvents(ctx, tx, newEvent(jobs.EventPermitToppedUp, note)); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // commit out of insertion order
					if i%5 == 4 {
						return errRollback
					}
					return nil
				})
				switch {
				case err == nil:
					committed.Store(note, true)
				case !errors.Is(err, errRollback):
					t.Error(err)
				}
			}
		})
	}
	done := make(chan struct{})
	var seq sync.WaitGroup
	for range 2 {
		seq.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, _, err := repo.SequenceEvents(ctx, st.DB, 7); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var p poller
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	for running := true; running; {
		select {
		case <-writersDone:
			running = false
		default:
			p.poll(t, st.DB)
		}
	}
	close(done)
	seq.Wait()
	sequence(t, st.DB)
	p.poll(t, st.DB)

	want := 0
	committed.Range(func(_, _ any) bool { want++; return true })
	if want != writers*each*4/5 || len(p.seen) != want {
		t.Fatalf("the consumer read %d events; %d were committed (of %d)", len(p.seen), want, writers*each)
	}
	for _, note := range notes(p.seen) {
		if _, ok := committed.LoadAndDelete(note); !ok {
			t.Fatalf("event %s read twice, or never committed", note)
		}
	}
}

var errRollback = errors.New("roll back")

// Each event is owed to every active webhook whose types include it (NULL:
// all), as a pending delivery and its event:deliver outbox row; an inactive
// webhook and one of other types are owed nothing.
func sequenceOwesDeliveries(t *testing.T) {
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	for _, w := range []*repo.Webhook{
		{Name: "starts", URL: "http://a.example/hook", Secret: "s", Types: []string{jobs.EventSessionStarted}, Active: true},
		{Name: "all", URL: "http://b.example/hook", Secret: "s", Active: true},
		{Name: "off", URL: "http://c.example/hook", Secret: "s", Active: false},
		{Name: "ends", URL: "http://d.example/hook", Secret: "s", Types: []string{jobs.EventPermitEnded}, Active: true},
	} {
		if _, err := repo.PutWebhook(ctx, st.DB, w); err != nil {
			t.Fatal(err)
		}
	}
	if w, err := repo.GetWebhook(ctx, st.DB, "all"); err != nil || w.Types != nil {
		t.Fatalf("a webhook of every type: %+v %v; want types NULL", w, err)
	}
	if err := repo.AddEvents(ctx, st.DB, newEvent(jobs.EventSessionStarted, "s"), newEvent(jobs.EventPermitIssued, "p")); err != nil {
		t.Fatal(err)
	}
	n, tasks, err := repo.SequenceEvents(ctx, st.DB, 100)
	if err != nil || n != 2 {
		t.Fatalf("numbered %d: %v", n, err)
	}
	evs, err := repo.EventsAfter(ctx, st.DB, 0, nil, 10)
	if err != nil || len(evs) != 2 {
		t.Fatal(evs, err)
	}
	started, issued := evs[0].ID, evs[1].ID
	var got []string
	for _, task := range tasks {
		var p jobs.EventDeliver
		if err := json.Unmarshal(task.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if task.TaskType != jobs.TypeEventDeliver || task.Queue != jobs.QueueWebhooks || task.TaskID != jobs.DeliverTaskID(p.Webhook, p.EventID) || task.ID == 0 {
			t.Errorf("outbox row %+v", task)
		}
		d, err := repo.GetDelivery(ctx, st.DB, p.Webhook, p.EventID)
		if err != nil || d.Status != repo.DeliveryPending || d.Attempts != 0 {
			t.Errorf("delivery %s/%s: %+v %v", p.Webhook, p.EventID, d, err)
		}
		got = append(got, p.Webhook+":"+p.EventID)
	}
	want := []string{"all:" + started, "starts:" + started, "all:" + issued}
	if !slices.Equal(got, want) {
		t.Fatalf("owed %v, want %v", got, want)
	}
	if n, err := repo.OutboxBacklog(ctx, st.DB); err != nil || n != 3 {
		t.Fatalf("outbox %d %v, want 3 rows", n, err)
	}

	// Filtered by type, from a sequence.
	if evs, err := repo.EventsAfter(ctx, st.DB, 0, []string{jobs.EventPermitIssued, jobs.EventPermitEnded}, 10); err != nil || len(evs) != 1 || evs[0].ID != issued {
		t.Fatalf("permit events: %v %v", evs, err)
	}
	if evs, err := repo.EventsAfter(ctx, st.DB, 1, nil, 10); err != nil || len(evs) != 1 || evs[0].ID != issued {
		t.Fatalf("after 1: %v %v", evs, err)
	}
	v := evs[1].View()
	if v.Sequence != 2 || v.PermitID == nil || *v.PermitID != "1" || v.SessionID != nil || v.Type != jobs.EventPermitIssued {
		t.Fatalf("view %+v", v)
	}

	// What an event:deliver task reads, in one statement: the delivery, its
	// webhook and its event; a delivery nobody owes is ErrNotFound, and a
	// webhook gone (no foreign key keeps it) is nil.
	w, err := repo.GetDeliveryWork(ctx, st.DB, "starts", started)
	if err != nil || w.Delivery.Status != repo.DeliveryPending || w.Webhook == nil || w.Webhook.Name != "starts" ||
		w.Event.ID != started || w.Event.Sequence == nil || *w.Event.Sequence != 1 {
		t.Fatalf("delivery work %+v %v", w, err)
	}
	if _, err := repo.GetDeliveryWork(ctx, st.DB, "starts", issued); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("delivery work of an event not owed: %v, want ErrNotFound", err)
	}
	if _, err := st.DB.ExecContext(ctx, "DELETE FROM webhooks WHERE name = 'starts'"); err != nil {
		t.Fatal(err)
	}
	if w, err := repo.GetDeliveryWork(ctx, st.DB, "starts", started); err != nil || w.Webhook != nil || w.Event.ID != started {
		t.Fatalf("delivery work of a webhook gone: %+v %v", w, err)
	}
}

func sequenceInBatches(t *testing.T) {
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	for i := range 5 {
		if err := repo.AddEvents(ctx, st.DB, newEvent(jobs.EventPermitToppedUp, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var passes []int
	for {
		n, _, err := repo.SequenceEvents(ctx, st.DB, 2)
		if err != nil {
			t.Fatal(err)
		}
		passes = append(passes, n)
		if n < 2 {
			break
		}
	}
	if !slices.Equal(passes, []int{2, 2, 1}) {
		t.Fatalf("passes numbered %v, want [2 2 1]", passes)
	}
	evs, err := repo.EventsAfter(ctx, st.DB, 0, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(notes(evs), ","); got != "0,1,2,3,4" {
		t.Fatalf("numbered in the order %s, want the order written", got)
	}
}

// `parkd check` lists an event unnumbered for more than EventDeliveryLimit,
// and a delivery owed to an active webhook for longer, with its status,
// attempts and last error; not a fresh one, a delivered or dropped one, nor
// one owed to a webhook since made inactive.
func auditFindsEventsUnnumberedOrUndelivered(t *testing.T) {
	w := newWorld(t)
	ctx, st := w.ctx, w.store
	w.zone("EZ", "", "")
	permit := w.permit("EZ", time.Now(), 0) // an event names a permit that exists
	event := func(typ, note string) *repo.Event {
		e := newEvent(typ, note)
		e.PermitID = &permit.ID
		return e
	}
	for _, wh := range []*repo.Webhook{
		{Name: "on", URL: "http://a.example/", Secret: "s", Active: true},
		{Name: "later-off", URL: "http://b.example/", Secret: "s", Active: true},
	} {
		if _, err := repo.PutWebhook(ctx, st.DB, wh); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		if err := repo.AddEvents(ctx, st.DB, event(jobs.EventSessionStopped, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := sequence(t, st.DB); n != 4 {
		t.Fatalf("numbered %d", n)
	}
	evs, err := repo.EventsAfter(ctx, st.DB, 0, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.RecordDelivered(ctx, st.DB, "on", evs[1].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := repo.RecordDeliveryFailure(ctx, st.DB, "on", evs[2].ID, "status 503", true, true); err != nil {
		t.Fatal(err)
	}
	if err := repo.DropDelivery(ctx, st.DB, "on", evs[3].ID); err != nil {
		t.Fatal(err)
	}
	if _, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10); err != nil || len(findings) != 0 {
		t.Fatalf("fresh: %v %v", findings, err)
	}
	if _, err := repo.PutWebhook(ctx, st.DB, &repo.Webhook{Name: "later-off", URL: "http://b.example/", Secret: "s", Active: false}); err != nil {
		t.Fatal(err)
	}
	if err := repo.AddEvents(ctx, st.DB, event(jobs.EventSessionStarted, "stuck")); err != nil {
		t.Fatal(err)
	}
	findings, got := w.plantAndAudit([]string{
		"UPDATE webhook_deliveries SET created_at = now() - interval '6 minutes'",
		"UPDATE events SET created_at = now() - interval '6 minutes' WHERE sequence IS NULL",
	})
	unnumbered := "no event unnumbered longer than " + repo.EventDeliveryLimit.String()
	undelivered := "every event numbered more than " + repo.EventDeliveryLimit.String() + " ago delivered to every active webhook it is owed to"
	if got[unnumbered] != 1 || got[undelivered] != 2 || len(findings) != 3 {
		t.Fatalf("findings %v", findings)
	}
	var details []string
	for _, f := range findings {
		details = append(details, f.Detail)
	}
	all := strings.Join(details, "\n")
	for _, want := range []string{
		fmt.Sprintf("(session.started, permit %d, session -): unnumbered for 00:06:", permit.ID),
		fmt.Sprintf("event %s (sequence 1, session.stopped) to webhook on: pending for 00:06:", evs[0].ID),
		fmt.Sprintf("event %s (sequence 3, session.stopped) to webhook on: failed for 00:06:", evs[2].ID),
		"1 attempts, last error: status 503",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
}
