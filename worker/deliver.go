package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/sony/gobreaker/v2"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Delivering events to webhooks (README "Events and webhooks: how an upstream
// app subscribes"): one event:deliver task per event and webhook, on the
// webhooks queue, which an asynq server of its own serves
// (NewOutboundServer), so that a slow or dead receiver holds none of the
// slots sessions need. Within that server a receiver holds at most
// MaxInFlight slots, and one that keeps failing is skipped by its circuit
// breaker, so it does not hold up the others either.

// DeliveryConfig tunes webhook delivery; zero values are the defaults.
type DeliveryConfig struct {
	// Timeout bounds one POST, the answer's headers included (default
	// DefaultDeliveryTimeout, the contract's 10 s).
	Timeout time.Duration
	// MaxInFlight is how many calls one webhook may have at once in this
	// process (default DefaultMaxInFlight); a task beyond it does not try
	// (ErrNotTried) and is run again shortly.
	MaxInFlight int
	// BreakerFailures is how many attempts in a row must fail to open a
	// webhook's circuit breaker (default DefaultBreakerFailures); BreakerOpen
	// how long it then skips calls before letting one through to see
	// (default DefaultBreakerOpen).
	BreakerFailures uint32
	BreakerOpen     time.Duration
	// Transport carries the calls; nil is a clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// Defaults of DeliveryConfig.
const (
	DefaultDeliveryTimeout = 10 * time.Second
	// DefaultMaxInFlight is half the webhooks server's default concurrency
	// (32, NewOutboundServer): one receiver that hangs holds at most half the
	// slots until its breaker opens.
	DefaultMaxInFlight     = 16
	DefaultBreakerFailures = 5
	// DefaultBreakerOpen is how long an open breaker skips a receiver's
	// calls before one goes through to see whether it is back. It saves a
	// dead receiver's retries from each holding a slot for up to the 10 s
	// timeout; it is short because it also delays a receiver that came
	// back: by up to this long, beside the retry schedule's own wait.
	DefaultBreakerOpen = 10 * time.Second
)

// maxErrorText bounds the last error a delivery records (never the
// receiver's body, which is not read past what reusing the connection needs).
const maxErrorText = 200

// Delivery outcomes told to a DeliveryObserver: delivered (a 2xx), retried
// (an attempt failed; the task will retry), failed (the last retry failed:
// archived), dropped (the webhook was deleted or is inactive).
const (
	DeliveryDelivered = "delivered"
	DeliveryRetried   = "retried"
	DeliveryFailed    = "failed"
	DeliveryDropped   = "dropped"
)

// DeliveryObserver is told how each webhook delivery went. Handlers tell
// their Observer when it implements it (package metrics does).
type DeliveryObserver interface {
	WebhookDelivery(webhook, outcome string)
}

func (h *Handlers) observeDelivery(webhook, outcome string) {
	if o, ok := h.Observer.(DeliveryObserver); ok {
		o.WebhookDelivery(webhook, outcome)
	}
}

// WebhookBackoff bounds the delay before retry n (0: the first) of a
// delivery: 10 s doubling to a cap of an hour, never less than four fifths of
// that. The first retry comes within 30 s (README "Events and webhooks: how
// an upstream app subscribes"); with jobs.DeliverMaxRetry retries a delivery
// is tried for more than 24 hours (at least 24.3, at most 30.4) before it is
// archived.
func WebhookBackoff(n int) (lo, hi time.Duration) {
	hi = min(10*time.Second<<min(max(n, 0), 10), time.Hour)
	return hi * 4 / 5, hi
}

// WebhookRetryDelay is the webhooks queue's asynq.RetryDelayFunc: a delay
// within WebhookBackoff(n), at random, so that deliveries failed by one
// outage do not all come back in the same second.
func WebhookRetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	lo, hi := WebhookBackoff(n)
	return lo + rand.N(hi-lo+1)
}

// deliverer is the handlers' HTTP client and each webhook's receiver state.
type deliverer struct {
	cfg    DeliveryConfig
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	byName map[string]*receiver
}

// receiver is what this process knows of one webhook's receiver: its circuit
// breaker and its in-flight slots. A new URL is a new receiver.
type receiver struct {
	url     string
	breaker *gobreaker.CircuitBreaker[struct{}]
	slots   chan struct{}
}

// errStopping is a call cut short because the worker is stopping: the
// receiver is not to blame, and its breaker does not count it.
var errStopping = errors.New("the worker is stopping")

func (h *Handlers) deliverer() *deliverer {
	h.deliverOnce.Do(func() {
		cfg := h.Delivery
		if cfg.Timeout <= 0 {
			cfg.Timeout = DefaultDeliveryTimeout
		}
		if cfg.MaxInFlight <= 0 {
			cfg.MaxInFlight = DefaultMaxInFlight
		}
		if cfg.BreakerFailures == 0 {
			cfg.BreakerFailures = DefaultBreakerFailures
		}
		if cfg.BreakerOpen <= 0 {
			cfg.BreakerOpen = DefaultBreakerOpen
		}
		tr := cfg.Transport
		if tr == nil {
			// A webhook has up to MaxInFlight calls at once, and its host
			// keeps twice that many connections (two webhooks on one host,
			// or a last try beyond the slots): the default transport keeps
			// two per host, so every call beyond two dialled a new one and
			// left it to close (issue 16: dials were 2 % of a worker's CPU,
			// beside the receiver's accepts and the sockets in TIME_WAIT).
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 2 * cfg.MaxInFlight
			t.MaxIdleConns = max(t.MaxIdleConns, 2*cfg.MaxInFlight)
			tr = t
		}
		log := h.Log
		if log == nil {
			log = slog.Default()
		}
		h.deliver = &deliverer{cfg: cfg, log: log, byName: map[string]*receiver{}, client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A redirect is an answer that is not a 2xx: the webhook's URL is
			// where an operator said events go, and nowhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	})
	return h.deliver
}

// receiver is the webhook's receiver at url.
func (d *deliverer) receiver(name, url string) *receiver {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.byName[name]; r != nil && r.url == url {
		return r
	}
	failures := d.cfg.BreakerFailures
	r := &receiver{url: url, slots: make(chan struct{}, d.cfg.MaxInFlight),
		breaker: gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1, // half-open: one call to see whether it is back
			Timeout:     d.cfg.BreakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			IsExcluded:  func(err error) bool { return errors.Is(err, errStopping) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				breakerChanged(d.log, name, from, to)
			},
		})}
	d.byName[name] = r
	return r
}

// breakerChanged logs a receiver's breaker changing state: opening after
// calls that succeeded (closed to open) is the one WARN of an outage and
// closing again is INFO; the back and forth of a receiver still down (open
// to half-open to open, every BreakerOpen) is DEBUG, so that a receiver
// down for hours does not fill the log.
func breakerChanged(log *slog.Logger, name string, from, to gobreaker.State) {
	level := slog.LevelDebug
	switch {
	case from == gobreaker.StateClosed && to == gobreaker.StateOpen:
		level = slog.LevelWarn
	case to == gobreaker.StateClosed:
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "webhook receiver circuit breaker", "webhook", name, "from", from.String(), "to", to.String())
}

// ErrReceiverDown marks a delivery that failed while its receiver's circuit
// breaker is open: skipped without a call (ErrReceiverSkipped), or the call
// that opened it again (its trial call, once it half-opened, or the call
// that opened it). The worker logs such a task's failure at DEBUG: the
// breaker's opening is the WARN that tells an operator, once an outage, not
// once every BreakerOpen for as long as the receiver stays down.
var ErrReceiverDown = errors.New("the receiver failed repeatedly and its circuit breaker is open")

// ErrReceiverSkipped is a delivery not tried because its receiver's circuit
// breaker is open, or half-open with its one trial call out; it wraps
// ErrReceiverDown.
var ErrReceiverSkipped = fmt.Errorf("not called: %w", ErrReceiverDown)

// acquire takes one of the receiver's in-flight slots: at once or not at all,
// or, for a task's last try (which must not be lost to a busy receiver),
// waiting for one.
func (r *receiver) acquire(ctx context.Context, wait bool) (release func(), ok bool) {
	release = func() { <-r.slots }
	select {
	case r.slots <- struct{}{}:
		return release, true
	default:
	}
	if !wait {
		return nil, false
	}
	select {
	case r.slots <- struct{}{}:
		return release, true
	case <-ctx.Done():
		return nil, false
	}
}

// post sends one signed event (Standard Webhooks: webhook-id, -timestamp and
// -signature over id.timestamp.body with the secret's decoded key) and says
// whether the receiver answered 2xx.
func (d *deliverer) post(ctx context.Context, url, secret, id string, body []byte, at time.Time) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("the webhook's secret: %w", err)
	}
	sig, err := wh.Sign(id, at, body)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "parkd")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	res, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return errStopping
		}
		return err
	}
	defer res.Body.Close()
	// Read a little, so that the connection can be reused; never kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}

// EventDeliver handles event:deliver: it POSTs the event (jobs.Event, with its
// sequence) to the webhook and records how that went on the delivery's row.
// A delivery already made or dropped does nothing; a webhook deleted or
// inactive drops it. A 2xx within the timeout delivers it; anything else is
// an error asynq retries (WebhookRetryDelay), and when the last retry fails
// the row is marked failed and asynq archives the task, where an operator can
// run it again. While the receiver's circuit breaker is open the task fails
// at once, without a call.
func (h *Handlers) EventDeliver(ctx context.Context, t *asynq.Task) error {
	var p jobs.EventDeliver
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.EventID == "" || p.Webhook == "" {
		return fmt.Errorf("event:deliver payload without event and webhook (%v): %w", err, asynq.SkipRetry)
	}
	db := h.Store.DB
	// The delivery, its webhook and its event, in one statement (with the
	// other deliveries' of the moment when Reads is set).
	work, err := h.deliveryWork(ctx, p.Webhook, p.EventID)
	if errors.Is(err, repo.ErrNotFound) {
		h.logger(ctx).Warn("event:deliver for a delivery nobody owes: nothing to do", "webhook", p.Webhook, "event_id", p.EventID)
		return nil
	}
	if err != nil {
		return err
	}
	if d := work.Delivery; d.Status == repo.DeliveryDelivered || d.Status == repo.DeliveryDropped {
		return nil // a task enqueued twice (the relay after a lost clean-up)
	}
	wh := work.Webhook
	if wh == nil || !wh.Active {
		if err := repo.DropDelivery(ctx, db, p.Webhook, p.EventID); err != nil {
			return err
		}
		h.observeDelivery(p.Webhook, DeliveryDropped)
		return nil
	}
	ev := &work.Event
	body, err := json.Marshal(ev.View())
	if err != nil {
		return fmt.Errorf("event %s: %w: %w", ev.ID, err, asynq.SkipRetry)
	}

	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, inTask := asynq.GetMaxRetry(ctx)
	last := inTask && retried >= maxRetry
	dl := h.deliverer()
	rc := dl.receiver(wh.Name, wh.URL)
	release, ok := rc.acquire(ctx, last)
	if !ok {
		return fmt.Errorf("deliver event %s to webhook %s: %w", ev.ID, wh.Name, ErrNotTried)
	}
	_, err = rc.breaker.Execute(func() (struct{}, error) {
		return struct{}{}, dl.post(ctx, wh.URL, wh.Secret, ev.ID, body, h.now())
	})
	release()

	// What the call did is recorded even when the task's context has just
	// ended (the worker stopping).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err == nil {
		if err := h.recordDelivered(rctx, wh.Name, ev.ID, h.now()); err != nil {
			return fmt.Errorf("event %s delivered to webhook %s, not recorded (it will be sent again): %w", ev.ID, wh.Name, err)
		}
		h.observeDelivery(wh.Name, DeliveryDelivered)
		return nil
	}
	skipped := errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
	if skipped {
		// gobreaker's own words ("too many requests" when half-open) read
		// like a receiver's 429.
		err = ErrReceiverSkipped
	}
	attempted := !skipped && !errors.Is(err, errStopping)
	recorded := errorText(err)
	if attempted && rc.breaker.State() != gobreaker.StateClosed {
		err = fmt.Errorf("%w; %w", err, ErrReceiverDown)
	}
	if attempted || last {
		if rerr := repo.RecordDeliveryFailure(rctx, db, wh.Name, ev.ID, recorded, attempted, last); rerr != nil {
			h.logger(ctx).Warn("webhook delivery failure not recorded", "webhook", wh.Name, "event_id", ev.ID, "err", rerr)
		}
	}
	switch {
	case last:
		h.observeDelivery(wh.Name, DeliveryFailed)
		h.logger(ctx).Error("webhook delivery failed after its last retry: archived (run it again from the console once the receiver is back)",
			"webhook", wh.Name, "event_id", ev.ID, "err", err)
	case attempted:
		h.observeDelivery(wh.Name, DeliveryRetried)
	}
	return fmt.Errorf("deliver event %s to webhook %s: %w", ev.ID, wh.Name, err)
}

// errorText is what a delivery records of a failure: the status, or the
// transport's error without the URL (which an operator knows), at most
// maxErrorText bytes of UTF-8.
func errorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) <= maxErrorText {
		return s
	}
	s = s[:maxErrorText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// requeueDeliveries queues again the event:deliver task of every delivery
// still pending to an active webhook, when Redis lost its data: a delivery
// waiting for its retry lives only in Redis, and without its task it would
// never be tried again (README "Events and webhooks: how an upstream app
// subscribes": at least once). The task ID is per webhook and event, so a
// task still in Redis refuses the copy. The requeued task is due at once; a
// receiver still down makes it back off again.
func (h *Handlers) requeueDeliveries(ctx context.Context) (int, error) {
	n := 0
	var afterWebhook, afterEvent string
	for {
		rows, err := repo.PendingDeliveries(ctx, h.Store.DB, afterWebhook, afterEvent, 1000)
		if err != nil {
			return n, err
		}
		for _, d := range rows {
			afterWebhook, afterEvent = d.Webhook, d.EventID
			queued, err := enqueueNew(ctx, h.Client, jobs.NewEventDeliver(d.EventID, d.Webhook))
			if err != nil {
				return n, fmt.Errorf("requeue delivery of event %s to webhook %s: %w", d.EventID, d.Webhook, err)
			}
			if queued {
				n++
			}
		}
		if len(rows) < 1000 {
			return n, nil
		}
	}
}
