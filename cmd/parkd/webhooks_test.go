package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// `parkd worker` numbers the events its handlers write (its sequencer,
// kicked after each commit) and delivers them to a webhook on the webhooks
// queue's own server: the receiver gets the session's start, signed; the
// delivery is recorded and counted; nothing is left unnumbered.
func TestWorkerDeliversEventsToWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a parkd process")
	}
	w := newWorld(t, 1, 5)
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []jobs.Event
	app := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := wh.Verify(b, r.Header); err != nil {
			t.Errorf("signature: %v", err)
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev jobs.Event
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	defer app.Close()
	if _, err := repo.PutWebhook(w.ctx, w.store.DB, &repo.Webhook{Name: "app", URL: app.URL, Secret: secret,
		Types: []string{jobs.EventSessionStarted}, Active: true}); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	startParkd(t, append(w.env, fmt.Sprintf("PARKD_METRICS_ADDR=127.0.0.1:%d", port)), "worker")
	start, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: "hook-start", PermitID: w.permits[0], Plate: "WH-11-KK"})
	if err != nil {
		t.Fatal(err)
	}
	w.enqueue(start)
	w.waitOutcomes(jobs.TypeSessionStart, 1, 30*time.Second)
	waitUntil(t, 30*time.Second, "the session.started delivered", func() bool {
		return w.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == 1
	})
	mu.Lock()
	if len(got) != 1 || got[0].Type != jobs.EventSessionStarted || got[0].Sequence < 1 {
		t.Errorf("the app got %+v", got)
	}
	mu.Unlock()
	if n := scrape(t, port, "parkd_webhook_deliveries_total", `outcome="delivered"`, `webhook="app"`); n != 1 {
		t.Errorf("parkd_webhook_deliveries_total{webhook=app,outcome=delivered} = %d, want 1", n)
	}
	waitUntil(t, 10*time.Second, "every event numbered", func() bool {
		return w.count("SELECT count(*) FROM events WHERE sequence IS NULL") == 0
	})
	if n := scrape(t, port, "parkd_events_unsequenced "); n != 0 {
		t.Errorf("parkd_events_unsequenced = %d, want 0", n)
	}
}
