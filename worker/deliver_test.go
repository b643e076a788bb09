package worker_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// The Standard Webhooks specification's test vector, signed by the library
// parkd signs with.
func TestStandardWebhooksTestVector(t *testing.T) {
	wh, err := standardwebhooks.NewWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; sig != want {
		t.Fatalf("signature %s, want %s", sig, want)
	}
}

// README "Events and webhooks: how an upstream app subscribes": the first
// retry within 30 s, backing off to a cap of an hour, for at least 24 hours
// before the task is archived.
func TestWebhookRetryScheduleLastsADay(t *testing.T) {
	var least, most time.Duration
	for n := range jobs.DeliverMaxRetry {
		lo, hi := worker.WebhookBackoff(n)
		if lo <= 0 || lo > hi || hi > time.Hour {
			t.Fatalf("retry %d: between %s and %s; want 0 < lo <= hi <= 1h", n, lo, hi)
		}
		if n > 0 {
			if plo, phi := worker.WebhookBackoff(n - 1); lo < plo || hi < phi {
				t.Fatalf("retry %d waits less than retry %d", n, n-1)
			}
		}
		for range 20 {
			if d := worker.WebhookRetryDelay(n, errors.New("status 500"), nil); d < lo || d > hi {
				t.Fatalf("retry %d: delay %s outside [%s, %s]", n, d, lo, hi)
			}
		}
		least, most = least+lo, most+hi
	}
	if _, hi := worker.WebhookBackoff(0); hi > 30*time.Second {
		t.Errorf("first retry after up to %s, want within 30s", hi)
	}
	if _, hi := worker.WebhookBackoff(jobs.DeliverMaxRetry); hi != time.Hour {
		t.Errorf("the backoff reaches %s, want the 1h cap", hi)
	}
	if least < 24*time.Hour {
		t.Errorf("%d retries last at least %s, want 24h or more", jobs.DeliverMaxRetry, least)
	}
	t.Logf("%d retries: from the first attempt to the last, %s to %s", jobs.DeliverMaxRetry, least, most)
}

// receiver is an upstream app's webhook endpoint: it verifies every call's
// signature with the Standard Webhooks library (and by hand, per the
// contract), keeps the events, and answers what status says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	status func(call int64) int // the answer to the n-th call (1-based); nil: 204
	calls  atomic.Int64

	mu       sync.Mutex
	received []jobs.Event // every call's event, delivered or not
}

func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func newReceiver(t *testing.T, status func(call int64) int) *receiver {
	r := &receiver{t: t, secret: newSecret(t), status: status}
	wh, err := standardwebhooks.NewWebhook(r.secret)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.secret, "whsec_"))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := r.calls.Add(1)
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Error(err)
			return
		}
		if err := wh.Verify(body, req.Header); err != nil {
			t.Errorf("call %d: %v", n, err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(req.Header.Get("webhook-id") + "." + req.Header.Get("webhook-timestamp") + "." + string(body)))
		if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); req.Header.Get("webhook-signature") != want {
			t.Errorf("call %d: webhook-signature %s, want %s", n, req.Header.Get("webhook-signature"), want)
		}
		var ev jobs.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("call %d: body %s: %v", n, body, err)
		}
		if ev.ID != req.Header.Get("webhook-id") || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("call %d: %s with webhook-id %s, content type %s, for event %s", n, req.Method, req.Header.Get("webhook-id"), req.Header.Get("Content-Type"), ev.ID)
		}
		r.mu.Lock()
		r.received = append(r.received, ev)
		r.mu.Unlock()
		code := http.StatusNoContent
		if r.status != nil {
			code = r.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() []jobs.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]jobs.Event(nil), r.received...)
}

// putWebhook subscribes url to types (nil: all) and returns the secret.
func (e *harness) putWebhook(name, url string, types []string, active bool) string {
	e.t.Helper()
	secret := newSecret(e.t)
	if _, err := repo.PutWebhook(e.ctx, e.store.DB, &repo.Webhook{Name: name, URL: url, Secret: secret, Types: types, Active: active}); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// subscribe subscribes a receiver under its own secret.
func (e *harness) subscribe(name string, r *receiver, types []string) {
	e.t.Helper()
	if _, err := repo.PutWebhook(e.ctx, e.store.DB, &repo.Webhook{Name: name, URL: r.srv.URL + "/hooks/parkd", Secret: r.secret, Types: types, Active: true}); err != nil {
		e.t.Fatal(err)
	}
}

func uniqueName(prefix string) string { return rid(prefix) }

// startOutbound runs the webhooks queue's own asynq server, as parkd's worker
// does, retrying after 50 ms unless cfg says otherwise.
func (e *harness) startOutbound(cfg worker.OutboundConfig) {
	e.t.Helper()
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = func(int, error, *asynq.Task) time.Duration { return 50 * time.Millisecond }
	}
	cfg.TaskCheckInterval, cfg.DelayedTaskCheckInterval, cfg.ShutdownTimeout = 10*time.Millisecond, 100*time.Millisecond, 2*time.Second
	srv := worker.NewOutboundServer(e.redisOpt, jobs.QueueWebhooks, cfg, quietLog())
	if err := srv.Start(e.h.Mux()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(srv.Shutdown)
}

func (e *harness) delivery(webhook, eventID string) *repo.WebhookDelivery {
	e.t.Helper()
	d, err := repo.GetDelivery(e.ctx, e.store.DB, webhook, eventID)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// awaitDelivered waits until every delivery of these events to webhook is delivered.
func (e *harness) awaitDelivered(webhook string, evs []repo.Event, limit time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for _, ev := range evs {
		for {
			d := e.delivery(webhook, ev.ID)
			if d.Status == repo.DeliveryDelivered {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("event %s to %s not delivered after %s: %+v", ev.ID, webhook, limit, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// deliveryCounts is an Observer that keeps only deliveries (nothing else is
// told to it in these tests).
type deliveryCounts struct {
	worker.Observer
	mu sync.Mutex
	n  map[string]int // webhook + " " + outcome
}

func (d *deliveryCounts) WebhookDelivery(webhook, outcome string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[webhook+" "+outcome]++
}

func (d *deliveryCounts) get(webhook, outcome string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[webhook+" "+outcome]
}

// Each event reaches each webhook subscribed to its type, once, signed, as
// the feed shows it (with its sequence); the delivery is recorded.
func TestWebhookDelivery(t *testing.T) {
	e := setup(t)
	obs := &deliveryCounts{}
	e.h.Observer = obs
	all, permits := newReceiver(t, nil), newReceiver(t, func(int64) int { return http.StatusOK })
	e.subscribe("all", all, nil)
	e.subscribe("permits", permits, []string{jobs.EventPermitIssued, jobs.EventPermitEnded})
	e.addEvents(2, jobs.EventSessionStarted)
	e.addEvents(1, jobs.EventPermitIssued)
	if n, err := e.sequencer().RunOnce(e.ctx); err != nil || n != 3 {
		t.Fatalf("sequencer: %d %v", n, err)
	}
	e.startOutbound(worker.OutboundConfig{})
	feed := e.feed()
	e.awaitDelivered("all", feed, 10*time.Second)
	e.awaitDelivered("permits", feed[2:], 10*time.Second)

	got := all.events()
	if len(got) != 3 || all.calls.Load() != 3 {
		t.Fatalf("all: %d calls, events %+v", all.calls.Load(), got)
	}
	bySeq := map[int64]jobs.Event{}
	for _, ev := range got {
		bySeq[ev.Sequence] = ev
	}
	for _, ev := range feed {
		want, _ := json.Marshal(ev.View())
		have, _ := json.Marshal(bySeq[*ev.Sequence])
		if string(want) != string(have) {
			t.Errorf("delivered %s, want the feed's %s", have, want)
		}
		d := e.delivery("all", ev.ID)
		if d.Attempts != 1 || d.DeliveredAt == nil || d.LastError != nil {
			t.Errorf("delivery %+v, want delivered at the first attempt", d)
		}
	}
	if p := permits.events(); len(p) != 1 || p[0].Type != jobs.EventPermitIssued || p[0].Sequence != 3 {
		t.Fatalf("permits received %+v, want only the permit.issued (sequence 3)", p)
	}
	if obs.get("all", worker.DeliveryDelivered) != 3 || obs.get("permits", worker.DeliveryDelivered) != 1 {
		t.Fatalf("observed %v", obs.n)
	}
	e.awaitQueueEmpty(jobs.QueueWebhooks)
}

// A receiver that answers 500 once gets the event again, and the delivery
// records both attempts and the error.
func TestWebhookDeliveryRetriedUntilDelivered(t *testing.T) {
	e := setup(t)
	obs := &deliveryCounts{}
	e.h.Observer = obs
	r := newReceiver(t, func(n int64) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusAccepted
	})
	e.subscribe("flaky", r, nil)
	e.addEvents(1, jobs.EventSessionStopped)
	if _, err := e.sequencer().RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.startOutbound(worker.OutboundConfig{})
	ev := e.feed()[0]
	e.awaitDelivered("flaky", e.feed(), 10*time.Second)
	d := e.delivery("flaky", ev.ID)
	if d.Attempts != 2 || d.LastError == nil || *d.LastError != "status 500" || r.calls.Load() != 2 {
		t.Fatalf("delivery %+v (%d calls), want 2 attempts, the first's status 500", d, r.calls.Load())
	}
	if obs.get("flaky", worker.DeliveryRetried) != 1 || obs.get("flaky", worker.DeliveryDelivered) != 1 {
		t.Fatalf("observed %v", obs.n)
	}
}

// A receiver that never answers 2xx: after the task's last retry it is
// archived (an operator sees it in asynqmon and may run it again) and the
// delivery is failed, with its attempts and last error. A small MaxRetry
// stands in for jobs.DeliverMaxRetry.
func TestWebhookDeliveryArchivedAfterItsLastRetry(t *testing.T) {
	e := setup(t)
	obs := &deliveryCounts{}
	e.h.Observer = obs
	r := newReceiver(t, func(int64) int { return http.StatusServiceUnavailable })
	e.subscribe("dead", r, nil)
	e.addEvents(1, jobs.EventPermitEnded)
	e.numberOnly() // the task is enqueued below, with a small MaxRetry
	ev := e.feed()[0]
	id := jobs.DeliverTaskID("dead", ev.ID)
	e.enqueue(asynq.NewTask(jobs.TypeEventDeliver, jobs.EventDeliverPayload(ev.ID, "dead"),
		asynq.Queue(jobs.QueueWebhooks), asynq.TaskID(id), asynq.MaxRetry(2)))
	e.startOutbound(worker.OutboundConfig{})
	info := e.awaitArchived(jobs.QueueWebhooks, id)
	d := e.delivery("dead", ev.ID)
	if d.Status != repo.DeliveryFailed || d.Attempts != 3 || d.LastError == nil || *d.LastError != "status 503" || d.DeliveredAt != nil {
		t.Fatalf("delivery %+v, want failed after 3 attempts with status 503", d)
	}
	if info.Retried != 2 || r.calls.Load() != 3 {
		t.Fatalf("archived after %d retries and %d calls, want 2 and 3", info.Retried, r.calls.Load())
	}
	if obs.get("dead", worker.DeliveryRetried) != 2 || obs.get("dead", worker.DeliveryFailed) != 1 {
		t.Fatalf("observed %v", obs.n)
	}
}

// An event owed to a webhook made inactive, or deleted, before its delivery
// is dropped, without a call.
func TestWebhookDeliveryDroppedForInactiveOrDeletedWebhook(t *testing.T) {
	e := setupParallel(t)
	obs := &deliveryCounts{}
	e.h.Observer = obs
	r := newReceiver(t, nil)
	for _, name := range []string{"paused", "gone", "deleted"} {
		e.subscribe(name, r, nil)
	}
	e.addEvents(1, jobs.EventSessionCancelled)
	e.numberOnly()
	ev := e.feed()[0]
	if _, err := repo.PutWebhook(e.ctx, e.store.DB, &repo.Webhook{Name: "paused", URL: r.srv.URL, Secret: r.secret, Active: false}); err != nil {
		t.Fatal(err)
	}
	// Gone behind the API's back: the task finds no webhook.
	if _, err := e.store.DB.ExecContext(e.ctx, "DELETE FROM webhooks WHERE name = 'gone'"); err != nil {
		t.Fatal(err)
	}
	// Deleted through the API: its deliveries are dropped at once.
	if ok, err := repo.DeleteWebhook(e.ctx, e.store.DB, "deleted"); err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if d := e.delivery("deleted", ev.ID); d.Status != repo.DeliveryDropped {
		t.Fatalf("delivery to a deleted webhook %+v, want dropped at once", d)
	}
	for _, name := range []string{"paused", "gone", "deleted"} {
		if err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(ev.ID, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := e.delivery(name, ev.ID); d.Status != repo.DeliveryDropped || d.Attempts != 0 {
			t.Fatalf("%s: delivery %+v, want dropped", name, d)
		}
	}
	if r.calls.Load() != 0 {
		t.Fatalf("the receiver was called %d times", r.calls.Load())
	}
	if obs.get("paused", worker.DeliveryDropped) != 1 || obs.get("gone", worker.DeliveryDropped) != 1 {
		t.Fatalf("observed %v", obs.n)
	}
}

// A receiver that fails BreakerFailures times in a row opens its circuit
// breaker: its next deliveries fail at once without a call (and count no
// attempt), while another webhook's are made as usual. A transport error is
// recorded without the URL.
func TestWebhookCircuitBreakerSkipsAFailingReceiver(t *testing.T) {
	e := setupParallel(t)
	e.h.Delivery = worker.DeliveryConfig{BreakerFailures: 3, BreakerOpen: time.Hour}
	failing, healthy := newReceiver(t, func(int64) int { return http.StatusBadGateway }), newReceiver(t, nil)
	e.subscribe("failing", failing, nil)
	e.subscribe("healthy", healthy, nil)
	e.addEvents(6, jobs.EventSessionChanged)
	e.numberOnly()
	for i, ev := range e.feed() {
		err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(ev.ID, "failing"))
		d := e.delivery("failing", ev.ID)
		switch {
		case i < 3:
			if err == nil || errors.Is(err, worker.ErrReceiverSkipped) || d.Attempts != 1 || *d.LastError != "status 502" {
				t.Fatalf("event %d: %v, delivery %+v; want a failed attempt", i, err, d)
			}
		default:
			if !errors.Is(err, worker.ErrReceiverSkipped) || d.Attempts != 0 || d.Status != repo.DeliveryPending {
				t.Fatalf("event %d: %v, delivery %+v; want skipped while the breaker is open", i, err, d)
			}
		}
		if err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(ev.ID, "healthy")); err != nil {
			t.Fatalf("healthy, event %d: %v", i, err)
		}
	}
	if failing.calls.Load() != 3 || healthy.calls.Load() != 6 {
		t.Fatalf("calls: failing %d, healthy %d; want 3 and 6", failing.calls.Load(), healthy.calls.Load())
	}

	// A receiver nobody listens on.
	e.putWebhook("nowhere", closedURL(t), nil, true)
	e.addEvents(1, jobs.EventSessionChanged)
	e.numberOnly()
	last := e.feed()[6]
	if err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(last.ID, "nowhere")); err == nil {
		t.Fatal("delivered to a closed port")
	}
	d := e.delivery("nowhere", last.ID)
	if d.LastError == nil || strings.Contains(*d.LastError, "http://") || !strings.Contains(*d.LastError, "refused") || len(*d.LastError) > 200 {
		t.Fatalf("last error %v, want the transport's error without the URL", d.LastError)
	}
}

// A receiver down for a long time is one WARN of the breaker's opening,
// after the task's WARN for each failure before it: through the worker's
// own mux (its logging frame, as asynq runs it), the breaker's back and forth
// while the receiver stays down (a trial call every BreakerOpen, failing)
// and every delivery it skips meanwhile are DEBUG, in parkd's words
// (gobreaker's "too many requests", for a call skipped while the trial is
// out, read like the receiver's 429). Its recovery is INFO.
func TestDeadReceiverLogsOneWarning(t *testing.T) {
	e := setupParallel(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	e.h.Log = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const failures = 3
	e.h.Delivery = worker.DeliveryConfig{BreakerFailures: failures, BreakerOpen: 30 * time.Millisecond}
	r, down := downReceiver(t)
	e.subscribe("dead", r, nil)
	e.addEvents(1, jobs.EventSessionChanged)
	e.numberOnly()
	ev := e.feed()[0]
	mux := e.h.Mux()
	skips, downs := 0, 0
	for cycle := range 6 {
		for range failures + 2 {
			err := mux.ProcessTask(e.ctx, jobs.NewEventDeliver(ev.ID, "dead"))
			if err == nil {
				t.Fatal("delivered to a receiver that is down")
			}
			if errors.Is(err, worker.ErrReceiverSkipped) {
				skips++
			}
			if errors.Is(err, worker.ErrReceiverDown) {
				downs++
			}
			if strings.Contains(err.Error(), "too many requests") {
				t.Fatalf("cycle %d: %v; want parkd's own words for a skipped call", cycle, err)
			}
		}
		time.Sleep(40 * time.Millisecond) // the breaker half-opens
	}
	if d := e.delivery("dead", ev.ID); d.LastError == nil || *d.LastError != "status 503" {
		t.Errorf("last error recorded %v, want the receiver's status alone", d.LastError)
	}
	down.Store(false)
	time.Sleep(40 * time.Millisecond)
	if err := mux.ProcessTask(e.ctx, jobs.NewEventDeliver(ev.ID, "dead")); err != nil {
		t.Fatalf("after the receiver came back: %v", err)
	}
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	warns, breakerWarns, breakerDebugs, breakerInfos := 0, 0, 0, 0
	for _, line := range strings.Split(text, "\n") {
		breaker := strings.Contains(line, "circuit breaker\"")
		switch {
		case strings.Contains(line, "level=WARN"):
			warns++
			if breaker {
				breakerWarns++
			}
		case breaker && strings.Contains(line, "level=DEBUG"):
			breakerDebugs++
		case breaker && strings.Contains(line, "level=INFO"):
			breakerInfos++
		}
	}
	// failures-1 tasks failed before the breaker opened (WARN each); the one
	// that opened it is the breaker's WARN.
	if skips == 0 || downs <= skips || warns != failures || breakerWarns != 1 || breakerDebugs < 4 || breakerInfos != 1 {
		t.Fatalf("%d calls skipped, %d failed with the breaker open; %d WARN lines (want %d), the breaker's: %d WARN (want 1), %d DEBUG (want its back and forth), %d INFO (want 1):\n%s",
			skips, downs, warns, failures, breakerWarns, breakerDebugs, breakerInfos, text)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// The breaker does not hold back a receiver that came back for long: with the
// defaults (5 failures in a row open it for worker.DefaultBreakerOpen, 10 s),
// a delivery tried after the receiver is back is skipped at first, and made
// within about 10 s of the breaker opening, not 30.
func TestWebhookCircuitBreakerLetsAReceiverBackWithinTenSeconds(t *testing.T) {
	e := setupParallel(t)
	r, down := downReceiver(t)
	e.subscribe("flaky", r, nil)
	e.addEvents(worker.DefaultBreakerFailures+1, jobs.EventSessionChanged)
	e.numberOnly()
	feed := e.feed()
	for _, ev := range feed[:worker.DefaultBreakerFailures] {
		if err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(ev.ID, "flaky")); err == nil || errors.Is(err, worker.ErrReceiverSkipped) {
			t.Fatalf("while down: %v, want a failed call", err)
		}
	}
	opened := time.Now()
	down.Store(false) // back at once
	last := feed[worker.DefaultBreakerFailures]
	if err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(last.ID, "flaky")); !errors.Is(err, worker.ErrReceiverSkipped) {
		t.Fatalf("just after %d failures: %v, want skipped by the open breaker", worker.DefaultBreakerFailures, err)
	}
	for {
		err := e.h.EventDeliver(e.ctx, jobs.NewEventDeliver(last.ID, "flaky"))
		if err == nil {
			break
		}
		if !errors.Is(err, worker.ErrReceiverSkipped) {
			t.Fatalf("%v, want skipped or delivered", err)
		}
		if waited := time.Since(opened); waited > 14*time.Second {
			t.Fatalf("the receiver is back but still skipped %s after the breaker opened", waited.Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if waited := time.Since(opened); waited < 9*time.Second {
		t.Fatalf("delivered %s after the breaker opened, want it open about 10 s", waited.Round(100*time.Millisecond))
	}
	if d := e.delivery("flaky", last.ID); d.Status != repo.DeliveryDelivered {
		t.Fatalf("delivery %+v", d)
	}
}

// downReceiver is a receiver that answers 503 while down holds (as it
// does at first), 200 once it is cleared.
func downReceiver(t *testing.T) (*receiver, *atomic.Bool) {
	down := new(atomic.Bool)
	down.Store(true)
	return newReceiver(t, func(int64) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}), down
}

func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// A receiver that hangs holds at most MaxInFlight of the webhooks server's
// slots: another receiver's deliveries, queued behind the hanging one's, are
// all made while every call to the hanging one is still waiting.
func TestHangingReceiverDoesNotDelayOthers(t *testing.T) {
	e := setup(t)
	e.h.Delivery = worker.DeliveryConfig{MaxInFlight: 2, Timeout: time.Minute}
	release := make(chan struct{})
	var inFlight, most, ended atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inFlight.Add(-1)
		ended.Add(1)
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // before hang.Close, which waits for its handlers
	ok := newReceiver(t, nil)
	e.putWebhook("a-hang", hang.URL, nil, true) // its task of each event is queued first
	e.subscribe("b-ok", ok, nil)
	e.addEvents(10, jobs.EventSessionStarted)
	if _, err := e.sequencer().RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.startOutbound(worker.OutboundConfig{Concurrency: 4})
	// Without the cap, the hanging receiver's tasks would take all 4 slots
	// until the task timeout (30 s) cut them.
	e.awaitDelivered("b-ok", e.feed(), 20*time.Second)
	if n := ended.Load(); n != 0 {
		t.Fatalf("%d calls to the hanging receiver ended first: the others waited for them", n)
	}
	if m := most.Load(); m > 2 {
		t.Fatalf("the hanging receiver had %d calls at once, want at most MaxInFlight (2)", m)
	}
}

// Events written by real changes (a start, a stop) are numbered when their
// transaction's commit kicks the sequencer (its tick is an hour here) and
// reach the webhook subscribed to their types, plate masked, in sequence
// order; the permit's own events are not its types and are not sent.
func TestEventsOfRealChangesReachTheirWebhook(t *testing.T) {
	e := setup(t)
	r := newReceiver(t, nil)
	e.subscribe("app", r, []string{jobs.EventSessionStarted, jobs.EventSessionStopped})
	seq := e.sequencer()
	seq.Interval = time.Hour
	e.h.EventsWritten = seq.Kick
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); seq.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	e.startOutbound(worker.OutboundConfig{})

	permit := e.permit(5)
	task, _ := e.startTask(permit, "AB-12-CD", nil, nil)
	var s jobs.Session
	if out := e.run(task, e.h.SessionStart, &s); out.Status != repo.RequestApplied {
		t.Fatalf("start: %s %s", out.Status, out.Error)
	}
	stopTask, _ := e.stopTask(s.ID, nil)
	if out := e.run(stopTask, e.h.SessionStop, nil); out.Status != repo.RequestApplied {
		t.Fatalf("stop: %s %s", out.Status, out.Error)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.events()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the receiver has %+v", r.events())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := r.events()
	slices.SortFunc(got, func(a, b jobs.Event) int { return int(a.Sequence - b.Sequence) })
	if len(got) != 2 || got[0].Type != jobs.EventSessionStarted || got[1].Type != jobs.EventSessionStopped || got[0].Sequence >= got[1].Sequence {
		t.Fatalf("received %+v", got)
	}
	for _, ev := range got {
		if ev.SessionID == nil || *ev.SessionID != s.ID || ev.PermitID == nil || *ev.PermitID != permit {
			t.Errorf("event %s names session %v, permit %v", ev.Type, ev.SessionID, ev.PermitID)
		}
		if strings.Contains(string(ev.Data), "AB12CD") {
			t.Errorf("event %s carries the plate unmasked: %s", ev.Type, ev.Data)
		}
	}
	var stopped struct{ Reason string }
	if err := json.Unmarshal(got[1].Data, &stopped); err != nil || stopped.Reason != jobs.StopReasonManual {
		t.Fatalf("session.stopped data %s: reason %q, want manual", got[1].Data, stopped.Reason)
	}
	if n := len(e.feed()); n < 4 { // permit.issued and permit.topped_up too, numbered but not sent
		t.Fatalf("%d events numbered, want the permit's and the session's", n)
	}
	for _, ev := range e.feed() {
		if owed := e.deliveries(ev.ID); (len(owed) == 1) != (ev.Type == jobs.EventSessionStarted || ev.Type == jobs.EventSessionStopped) {
			t.Errorf("event %s owed %+v", ev.Type, owed)
		}
	}
}

// A delivery waiting for its retry lives only in Redis: when Redis loses its
// data the reconciler queues again every delivery still pending to an active
// webhook (not one delivered, nor one to an inactive webhook), once, and the
// receiver gets the event.
func TestReconcilerRequeuesPendingDeliveriesAfterRedisFlushed(t *testing.T) {
	e := setup(t)
	r := newReceiver(t, nil)
	e.subscribe("back", r, nil)
	e.addEvents(3, jobs.EventSessionStarted)
	if n, err := e.sequencer().RunOnce(e.ctx); err != nil || n != 3 {
		t.Fatalf("sequencer: %d %v", n, err)
	}
	feed := e.feed()
	pending, done := feed[0], feed[1]
	if err := repo.RecordDelivered(e.ctx, e.store.DB, "back", done.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	off := newReceiver(t, nil)
	e.subscribe("off", off, nil)
	e.addEvents(1, jobs.EventPermitIssued)
	if _, err := e.sequencer().RunOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.PutWebhook(e.ctx, e.store.DB, &repo.Webhook{Name: "off", URL: off.srv.URL, Secret: off.secret, Active: false}); err != nil {
		t.Fatal(err)
	}
	// The third event's delivery failed for good: its archived task is an
	// operator's matter, not the reconciler's.
	if err := repo.RecordDeliveryFailure(e.ctx, e.store.DB, "back", feed[2].ID, "status 503", true, true); err != nil {
		t.Fatal(err)
	}
	repotest.FlushRedis(t, e.rdb)

	rep, err := e.h.Reconcile(e.ctx)
	if err != nil || !rep.RedisEmpty || rep.DeliveriesRequeued != 2 {
		t.Fatalf("reconcile after the loss: %+v %v; want the 2 pending deliveries to back queued again", rep, err)
	}
	for _, ev := range e.feed() {
		want := ev.ID == pending.ID || ev.Type == jobs.EventPermitIssued
		if got := e.taskInRedis(jobs.QueueWebhooks, jobs.DeliverTaskID("back", ev.ID)); got != want {
			t.Errorf("delivery of %s (%s) to back in Redis: %v, want %v", ev.ID, ev.Type, got, want)
		}
		if e.taskInRedis(jobs.QueueWebhooks, jobs.DeliverTaskID("off", ev.ID)) {
			t.Errorf("delivery of %s to the inactive webhook queued again", ev.ID)
		}
	}
	if rep, err := e.h.Reconcile(e.ctx); err != nil || rep.DeliveriesRequeued != 0 {
		t.Fatalf("reconcile with the epoch back: %+v %v; want nothing queued again", rep, err)
	}

	e.startOutbound(worker.OutboundConfig{})
	owed := []repo.Event{pending}
	for _, ev := range e.feed() {
		if ev.Type == jobs.EventPermitIssued {
			owed = append(owed, ev)
		}
	}
	// Both: awaiting only the first and then counting raced the second.
	e.awaitDelivered("back", owed, 10*time.Second)
	if got := r.events(); len(got) != 2 {
		t.Fatalf("received %+v; want the two pending events", got)
	}
}

// A receiver's calls reuse their connections: however many deliveries, it
// sees about as many connections as it may have calls at once
// (DefaultMaxInFlight; Go's transport may finish a dial it no longer needs,
// hence the slack of twice that). The transport used to keep two idle per
// host, and dialled a new connection for nearly every call beyond them (70
// for these 120).
func TestWebhookDeliveriesReuseTheirConnections(t *testing.T) {
	e := setup(t)
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond) // calls overlap, as under load
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	e.putWebhook("pooled", srv.URL+"/hooks", nil, true)
	e.addEvents(120, jobs.EventSessionStarted)
	if n, err := e.sequencer().RunOnce(e.ctx); err != nil || n != 120 {
		t.Fatalf("sequencer: %d %v", n, err)
	}
	e.startOutbound(worker.OutboundConfig{})
	e.awaitDelivered("pooled", e.feed(), 30*time.Second)
	if n := conns.Load(); n > 2*worker.DefaultMaxInFlight {
		t.Fatalf("120 deliveries opened %d connections, want at most %d (about one per call in flight)", n, 2*worker.DefaultMaxInFlight)
	}
	t.Logf("120 deliveries over %d connections", conns.Load())
}
